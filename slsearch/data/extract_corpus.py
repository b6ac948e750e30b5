"""`slsearch extract`: turn videos / frame folders / pose files into one .npz pose per clip + a manifest.

The batch never stops on a bad file: each failure is one line naming the file and the reason,
collected into the summary. Videos go through the shared pose cache, so re-running is cheap.
Two clips never share an output file (see `output_names`).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from slsearch.data.extract import ExtractResult, RateTracker, extract_many
from slsearch.data.manifest import POSE_EXTENSIONS, Clip, collect_clips, write_manifest
from slsearch.data.pose_files import DEFAULT_FPS, MAX_FPS, MIN_FPS, read_npz, save_pose_npz
from slsearch.data.poses import load_pose
from slsearch.errors import InputError, SlsearchError
from slsearch.progress import Progress, track

_MAX_PART = 100  # characters of one path part of an output name (file systems allow 255 bytes)


@dataclass
class BatchSummary:
    """What a batch over many clips did: counts, failures (one line each) and timing."""

    total: int = 0
    ok: int = 0
    cached: int = 0
    frames: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "ok": self.ok, "cached": self.cached, "failed": len(self.failures),
                "frames": self.frames, "seconds": round(self.seconds, 3),
                "frames_per_second": round(self.frames / self.seconds, 1) if self.seconds else None,
                "failures": self.failures, **self.extra}


def _safe_name(clip_id: str) -> str:
    """A clip id as a relative file path: keep sub-folders, replace characters file systems dislike."""
    parts = [re.sub(r"[^\w.\-]+", "_", p)[:_MAX_PART] for p in Path(clip_id).parts if p not in ("", ".", "..")]
    return str(Path(*parts)) if parts else "clip"


def output_names(ids: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Clip id -> output name under `out` (without .npz), never the same file for two clips.

    The name is the id made safe for file systems (`_safe_name`). When that changed the id, or two
    ids would still meet in one file (`clip_1` and `Clip_1` on a case-insensitive file system), the
    name gets `-` and the first 8 hex digits of the sha256 of the raw id: `clip 1` -> `clip_1-3f2a9c1b.npz`
    beside `clip_1.npz`. Returns (names, refused): an id whose file would still clash with another
    clip's file or folder (a hash collision, or `a` beside `a.npz/b`) is refused with a reason.
    """
    def hashed(i: str, n: str) -> str:
        return f"{n}-{hashlib.sha256(i.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"

    names = {i: n if n == i else hashed(i, n) for i, n in ((i, _safe_name(i)) for i in ids)}
    clash = Counter(n.casefold() for n in names.values())  # unchanged ids that differ only in case
    names = {i: hashed(i, n) if clash[n.casefold()] > 1 else n for i, n in names.items()}
    files: dict[str, str] = {}
    folders = {str(d).casefold() for n in names.values() for d in Path(n).parents if str(d) != "."}
    refused: dict[str, str] = {}
    for i, n in names.items():
        f = f"{n}.npz".casefold()
        if f in files or f in folders:
            refused[i] = (f"clip id {i!r} would be written to {n}.npz, which clip "
                          f"{files.get(f, 'another clip (as a folder)')!r} uses; rename one of them")
        else:
            files[f] = i
    return names, refused


def extract_corpus(paths: Sequence[str | Path], out: str | Path, workers: int | None = None,
                   fps: float | None = DEFAULT_FPS, cache_dir: str | Path | None = None,
                   progress: Progress | None = None, ray: str | None = None) -> BatchSummary:
    """Write `out/<id>.npz` for every clip found in `paths` and `out/manifest.jsonl` for those that worked.

    The file name is the clip id made safe for file systems, with a short hash when that changed it
    (see `output_names`); the manifest maps ids to files. A clip that cannot be read, and whatever a
    folder scan skipped (special files, symlinks that leave the folder), is one line in the summary's
    `failures` (nothing is printed here: the caller shows them). `progress` hears each clip (None: silent).
    `ray` (an address, or "auto"): videos are extracted by Ray actors (slsearch.distributed_ray).
    """
    out = Path(out)
    t0 = time.perf_counter()
    if fps is not None and not (MIN_FPS <= fps <= MAX_FPS):
        raise SlsearchError(f"frame rate {fps:g} is not sensible (use {MIN_FPS:g} to {MAX_FPS:g} frames per second)")
    skipped: list[InputError] = []
    clips = collect_clips(paths, skipped=skipped)
    if not clips:  # no summary to carry what was skipped: the error names it
        raise InputError(", ".join(map(str, paths)), "no videos, frame folders or pose files found"
                         + (f" ({len(skipped)} skipped: {'; '.join(map(str, skipped))})" if skipped else ""))
    names, refused = output_names([c.id for c in clips])
    summary = BatchSummary(total=len(clips) + len(skipped), failures=[str(e) for e in skipped])
    written: list[Clip] = []
    is_pose_file = [c.path is not None and Path(c.path).suffix.lower() in POSE_EXTENSIONS for c in clips]
    rate = RateTracker()
    advance = track(progress, "extracting poses", len(clips))

    def finish(clip: Clip, seq=None, error: str | None = None, cached: bool = False) -> None:
        if error:
            summary.failures.append(error)
        else:
            target = out / f"{names[clip.id]}.npz"
            save_pose_npz(target, seq.data, seq.fps)
            written.append(Clip(id=clip.id, path=target, text=clip.text, gloss=clip.gloss, split=clip.split,
                                signer=clip.signer, num_frames=seq.frames, extra=dict(clip.extra)))
            summary.ok += 1
            summary.cached += int(cached)
            summary.frames += seq.frames
        advance(1, rate.add(seq.frames if seq is not None else 0))

    for clip in clips:
        if clip.id in refused:
            finish(clip, error=f"{clip.path or clip.id}: {refused[clip.id]}")
    for clip, pose_file in zip(clips, is_pose_file):
        if pose_file and clip.id not in refused:
            try:
                finish(clip, load_pose(clip, fps=fps))
            except SlsearchError as e:
                finish(clip, error=str(e))
            except OSError as e:  # permissions and the like: this file only, the batch goes on
                finish(clip, error=f"{clip.path}: cannot be read ({e.strerror or e})")

    def on_video(r: ExtractResult) -> None:
        if r.error:
            finish(r.clip, error=r.error)
        else:
            finish(r.clip, read_npz(r.cache_file), cached=r.cached)

    videos = [c for c, pf in zip(clips, is_pose_file) if not pf and c.id not in refused]
    if videos:
        extract_many(videos, workers=workers, fps=fps, cache_dir=cache_dir, on_result=on_video, ray=ray)
    order = {c.id: i for i, c in enumerate(clips)}
    if written:
        write_manifest(sorted(written, key=lambda c: order[c.id]), out / "manifest.jsonl")
    summary.seconds = time.perf_counter() - t0
    summary.extra["manifest"] = str(out / "manifest.jsonl") if written else None
    return summary
