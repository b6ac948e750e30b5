"""Long media at index time: which files to segment, their poses extracted once, their segment clips.

    clips ──find_long_media──► short clips (indexed whole) + LongMedia (videos: chunks to extract)
    LongMedia ──load_long_pose (cached chunks, or the pose file)──► plan_segments ──► segment Clips

A long video is extracted in chunks of CHUNK_SECONDS through the ordinary pose cache: the chunks of one
file run in parallel in the extraction pool, an interrupted extraction keeps its finished chunks, and
every segment is cut from the one extraction (never extracted again per segment). Segment clips are
named `<file id>#<n>` (n = 1, 2, ... in time order) and carry `start`/`end` in the file's seconds.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slsearch.data.manifest import POSE_EXTENSIONS, VIDEO_EXTENSIONS, Clip
from slsearch.data.pose_files import DEFAULT_FPS, PoseSequence, check_length, check_person, cut, resample
from slsearch.data.segments import METHODS, SegmentParams, SegmentPlan, plan_segments
from slsearch.data.subtitles import Cue, find_subtitles, read_subtitles
from slsearch.errors import InputError, SlsearchError

CHUNK_SECONDS = 120.0  # 3,000 frames at 25 fps: well under one clip's frame limit, a few MB per cache entry
MAX_PROGRAMME_HOURS = 4.0  # a longer file is refused: its pose alone would need gigabytes of memory


@dataclass
class SegmentOptions:
    method: str = "auto"  # auto (subtitles when present, else activity), subtitles, activity, windows, off
    shift: float | str = 0.0  # subtitle shift in seconds, or "auto"
    params: SegmentParams = field(default_factory=SegmentParams)

    def __post_init__(self) -> None:
        if self.method not in METHODS + ("off",):
            raise SlsearchError(f"segmenting must be one of {', '.join(METHODS + ('off',))}, not {self.method!r}")
        if self.shift != "auto":
            try:
                self.shift = float(self.shift)
            except (TypeError, ValueError):
                raise SlsearchError(f"subtitle shift must be seconds or 'auto', not {self.shift!r}") from None
            if not np.isfinite(self.shift) or abs(self.shift) > 60:
                raise SlsearchError(f"subtitle shift must be within +-60 seconds, not {self.shift}")


@dataclass
class LongMedia:
    clip: Clip  # the whole file, as the folder scan or manifest named it
    duration: float  # seconds (as the container declares it, for videos)
    file_hash: str
    cues: list[Cue] | None = None  # its subtitles, when it has readable ones
    subtitles: Path | None = None
    chunks: list[Clip] = field(default_factory=list)  # what to extract (videos and frame folders)

    @property
    def is_video(self) -> bool:
        return bool(self.chunks)


def _is_media(clip: Clip) -> bool:
    if clip.path is None or clip.start is not None or clip.end is not None:
        return False  # a manifest cut is already a segment
    if clip.text:
        return False  # a manifest row that gives the file one sentence means it as one clip
    p = Path(clip.path)
    return p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS | POSE_EXTENSIONS


def _duration(path: Path) -> float | None:
    """Seconds of a video (as its container says) or pose file (from the array's header where it has one:
    deciding which files are long must not read every sentence clip twice); None when it cannot be told,
    and the file is then indexed whole, where any damage is reported as for every clip."""
    try:
        if path.is_dir() or path.suffix.lower() in VIDEO_EXTENSIONS:
            from slsearch.data.video import probe

            return probe(path).duration
        if path.suffix.lower() == ".npz":
            return _npz_duration(path)
        if path.suffix.lower() == ".npy":
            return len(np.load(path, mmap_mode="r", allow_pickle=False)) / DEFAULT_FPS  # a bare .npy: 25 fps
        from slsearch.data.poses import read_pose_file

        return read_pose_file(path).duration
    except (InputError, OSError, ValueError, zipfile.BadZipFile, KeyError):
        return None


def _npz_duration(path: Path) -> float:
    """Frames / fps of a pose .npz from the pose array's header, without decompressing it."""
    with zipfile.ZipFile(path) as z:
        with z.open("pose.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape = read_header(f)[0]
        fps = float(np.load(z.open("fps.npy"), allow_pickle=False)) if "fps.npy" in z.namelist() else DEFAULT_FPS
    return shape[0] / fps if fps > 0 else 0.0


def find_long_media(clips: list[Clip], options: SegmentOptions, failures: list[InputError],
                    notes: list[str]) -> tuple[list[Clip], list[LongMedia]]:
    """Split `clips` into those indexed whole and the long media to segment. A file whose length cannot be
    told is indexed whole (its damage is reported there); one too long to segment, or unreadable, goes to
    `failures`; a subtitle file that cannot be read is a note, and its media is segmented by activity
    when it is long (indexed whole when it is not)."""
    from slsearch.data.subtitles import SUBTITLE_EXTENSIONS
    from slsearch.data.video import content_hash

    has_subtitles: dict[Path, bool] = {}  # per folder: a folder of 10,000 clips is listed once, not per clip

    if options.method == "off":
        return clips, []
    whole: list[Clip] = []
    long: list[LongMedia] = []
    for clip in clips:
        if not _is_media(clip):
            whole.append(clip)
            continue
        path = Path(clip.path)
        cues, used = None, None
        if path.parent not in has_subtitles:
            try:
                has_subtitles[path.parent] = any(p.suffix.lower() in SUBTITLE_EXTENSIONS for p in path.parent.iterdir())
            except OSError:
                has_subtitles[path.parent] = False
        if options.method in ("auto", "subtitles") and has_subtitles[path.parent]:
            found = find_subtitles(path)
            if found:
                try:
                    cues, used = read_subtitles(found[0]), found[0]
                except InputError as e:
                    notes.append(f"{e} (segmenting {path.name} by signing activity instead)")
        duration = _duration(path)
        if duration is None or (not cues and duration <= options.params.longer_than):
            whole.append(clip)
            continue
        try:
            if duration > MAX_PROGRAMME_HOURS * 3600:
                raise InputError(path, f"{duration / 3600:.1f} hours long; slsearch segments media of up to "
                                       f"{MAX_PROGRAMME_HOURS:g} hours (cut it into parts first)")
            media = LongMedia(clip, duration, content_hash(path), cues, used)
        except InputError as e:
            failures.append(e)
            continue
        except OSError as e:
            failures.append(InputError(path, f"cannot be read ({e.strerror or e})"))
            continue
        if path.is_dir() or path.suffix.lower() in VIDEO_EXTENSIONS:
            n = max(1, int(np.ceil(duration / CHUNK_SECONDS - 1e-9)))
            media.chunks = [Clip(id=f"{clip.id}\0chunk{k}", path=path, start=k * CHUNK_SECONDS,
                                 end=None if k == n - 1 else (k + 1) * CHUNK_SECONDS) for k in range(n)]
        long.append(media)
    return whole, long


def load_long_pose(media: LongMedia, fps: float = DEFAULT_FPS, cache_dir: str | Path | None = None) -> PoseSequence:
    """The whole file's pose at `fps`: its extracted chunks joined (from the cache, extracted here if
    missing), or the pose file read whole."""
    path = Path(media.clip.path)
    if media.is_video:
        from slsearch.data.extract import cache_key, cache_path, extract_pose_cached
        from slsearch.data.pose_files import read_npz

        parts = []
        for chunk in media.chunks:
            entry = cache_path(cache_key(path, fps, chunk.start, chunk.end, media.file_hash), cache_dir)
            try:
                parts.append(read_npz(entry).data)
            except InputError:  # not cached (or damaged): extract this chunk now
                parts.append(extract_pose_cached(path, fps=fps, start=chunk.start, end=chunk.end,
                                                 cache_dir=cache_dir).data)
        return PoseSequence(np.concatenate(parts), fps)
    from slsearch.data.poses import read_pose_file

    return resample(read_pose_file(path), fps)


def segment_clips(media: LongMedia, seq: PoseSequence, options: SegmentOptions) -> tuple[list[Clip], SegmentPlan]:
    """The segment clips of one long media (ids `<id>#<n>`), and the plan that cut them."""
    plan = plan_segments(seq, media.cues, options.params, "auto" if options.method == "off" else options.method,
                         options.shift)
    parent = media.clip
    clips = [Clip(id=f"{parent.id}#{n}", path=parent.path, text=s.text, split=parent.split, signer=parent.signer,
                  start=s.start, end=s.end, extra={"media": parent.id, "segmented_by": plan.method})
             for n, s in enumerate(plan.segments, 1)]
    return clips, plan


def segment_hash(file_hash: str, start: float | None, end: float | None) -> str:
    """The source hash of a cut of a file (what index/build.py's source_hash gives for a manifest cut)."""
    return hashlib.sha256(f"{file_hash}|{start}|{end}".encode()).hexdigest()


def segment_pose(seq: PoseSequence, clip: Clip) -> PoseSequence:
    """A segment's pose, cut from its media's pose, checked as any clip is."""
    part = cut(seq, clip.start, clip.end, clip.path)
    check_length(part.frames, part.fps, clip.path)
    check_person(part.data, clip.path)
    return part
