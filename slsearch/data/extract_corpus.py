"""`slsearch extract`: turn videos / frame folders / pose files into one .npz pose per clip + a manifest.

The batch never stops on a bad file: each failure is one line naming the file and the reason,
collected into the summary. Videos go through the shared pose cache, so re-running is cheap.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from slsearch.console import err_console, progress_bar
from slsearch.data.extract import ExtractResult, RateTracker, extract_many
from slsearch.data.manifest import POSE_EXTENSIONS, Clip, collect_clips, write_manifest
from slsearch.data.pose_files import DEFAULT_FPS, read_npz, save_pose_npz
from slsearch.data.poses import load_pose
from slsearch.errors import InputError


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
    parts = [re.sub(r"[^\w.\-]+", "_", p) for p in Path(clip_id).parts if p not in ("", ".", "..")]
    return str(Path(*parts)) if parts else "clip"


def extract_corpus(paths: Sequence[str | Path], out: str | Path, workers: int | None = None,
                   fps: float | None = DEFAULT_FPS, cache_dir: str | Path | None = None,
                   progress: bool = True) -> BatchSummary:
    """Write `out/<id>.npz` for every clip found in `paths` and `out/manifest.jsonl` for those that worked."""
    out = Path(out)
    t0 = time.perf_counter()
    clips = collect_clips(paths)
    if not clips:
        raise InputError(", ".join(map(str, paths)), "no videos, frame folders or pose files found")
    summary = BatchSummary(total=len(clips))
    written: list[Clip] = []
    is_pose_file = [c.path is not None and Path(c.path).suffix.lower() in POSE_EXTENSIONS for c in clips]
    rate = RateTracker()
    with progress_bar(transient=not progress) as bar:
        task = bar.add_task("extracting poses", total=len(clips), rate="", visible=progress)

        def finish(clip: Clip, seq=None, error: str | None = None, cached: bool = False) -> None:
            if error:
                summary.failures.append(error)
                err_console.print(f"[yellow]skipped[/yellow] {error}", highlight=False, soft_wrap=True)
            else:
                target = out / f"{_safe_name(clip.id)}.npz"
                save_pose_npz(target, seq.data, seq.fps)
                written.append(Clip(id=clip.id, path=target, text=clip.text, gloss=clip.gloss, split=clip.split,
                                    signer=clip.signer, num_frames=seq.frames, extra=dict(clip.extra)))
                summary.ok += 1
                summary.cached += int(cached)
                summary.frames += seq.frames
            bar.update(task, advance=1, rate=rate.add(seq.frames if seq is not None else 0))

        for clip, pose_file in zip(clips, is_pose_file):
            if pose_file:
                try:
                    finish(clip, load_pose(clip, fps=fps))
                except InputError as e:
                    finish(clip, error=str(e))

        def on_video(r: ExtractResult) -> None:
            if r.error:
                finish(r.clip, error=r.error)
            else:
                finish(r.clip, read_npz(r.cache_file), cached=r.cached)

        videos = [c for c, pf in zip(clips, is_pose_file) if not pf]
        if videos:
            extract_many(videos, workers=workers, fps=fps, cache_dir=cache_dir, on_result=on_video)
    order = {c.id: i for i, c in enumerate(clips)}
    if written:
        write_manifest(sorted(written, key=lambda c: order[c.id]), out / "manifest.jsonl")
    summary.seconds = time.perf_counter() - t0
    summary.extra["manifest"] = str(out / "manifest.jsonl") if written else None
    return summary
