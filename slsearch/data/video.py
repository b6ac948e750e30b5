"""Decoding: video files (PyAV, streamed) and PHOENIX-style frame folders into RGB frames.

Frames are yielded one at a time so a long video never sits in memory whole. A target fps
keeps the frame whose timestamp is nearest each tick of the target clock; `start`/`end`
(seconds) cut a clip out of a longer video.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from slsearch.data.files import check_regular_file
from slsearch.data.manifest import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from slsearch.errors import InputError

FRAME_FOLDER_FPS = 25.0  # PHOENIX-2014T frame folders are 25 fps


@dataclass
class VideoInfo:
    fps: float
    frames: int  # as the container declares it (0 when unknown)
    duration: float  # seconds
    width: int
    height: int


def _open(path: Path):
    import av

    if not path.exists():
        raise InputError(path, "file not found")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise InputError(path, f"unsupported video type {path.suffix!r} (use {', '.join(sorted(VIDEO_EXTENSIONS))})")
    check_regular_file(path)  # a FIFO or /dev/zero would be read forever
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise InputError(path, f"not a readable video ({type(e).__name__}: {e.strerror if hasattr(e, 'strerror') and e.strerror else e})") from None
    if not container.streams.video:
        container.close()
        raise InputError(path, "has no video stream")
    return container


def frame_files(folder: Path) -> list[Path]:
    """The images of a frame folder, in name order. Each must be a regular file; an image that is a symlink
    must stay inside the folder (InputError otherwise: nothing outside the folder is read)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(folder, "frame folder has no PNG/JPG images")
    root = folder.resolve()
    for f in files:
        check_regular_file(f)
        if f.is_symlink() and not f.resolve().is_relative_to(root):
            raise InputError(f, f"symlink leads out of the frame folder (to {f.resolve()})")
    return files


def probe(path: str | Path) -> VideoInfo:
    """Frame rate, frame count, duration and size of a video file or frame folder."""
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        import cv2

        first = cv2.imread(str(files[0]))
        if first is None:
            raise InputError(files[0], "not a readable image")
        return VideoInfo(FRAME_FOLDER_FPS, len(files), len(files) / FRAME_FOLDER_FPS, first.shape[1], first.shape[0])
    container = _open(path)
    try:
        s = container.streams.video[0]
        fps = float(s.average_rate or s.guessed_rate or 25)
        duration = float(s.duration * s.time_base) if s.duration else (container.duration or 0) / 1e6
        return VideoInfo(fps, int(s.frames or 0), duration, s.codec_context.width, s.codec_context.height)
    finally:
        container.close()


def _select(times: Iterator[tuple[float, np.ndarray]], fps: float | None, start: float | None,
            end: float | None) -> Iterator[np.ndarray]:
    """Cut to [start, end) and resample to `fps` by keeping the nearest frame per target tick.

    The target clock starts at `start`, or at the first frame's timestamp (containers often
    begin a little after zero).
    """
    step = (1.0 / fps) if fps else None
    t0: float | None = start
    k = 0  # index of the next target tick: t0 + k * step (no accumulated rounding drift)
    prev: tuple[float, np.ndarray] | None = None
    frame_span = 0.0  # duration of one source frame, from consecutive timestamps
    for t, frame in times:
        if start is not None and t < start - 1e-6:
            continue
        if end is not None and t >= end - 1e-6:
            break
        if step is None:
            yield frame
            continue
        if t0 is None:
            t0 = t
        # Emit a frame for every tick we have passed: the nearer of the previous and current frame.
        while t >= t0 + k * step - 1e-9:
            tick = t0 + k * step
            yield prev[1] if prev is not None and abs(prev[0] - tick) < abs(t - tick) else frame
            k += 1
        if prev is not None:
            frame_span = t - prev[0]
        prev = (t, frame)
    # The last source frame also covers the ticks that fall within its own duration.
    if step is not None and prev is not None and t0 is not None:
        stop = prev[0] + frame_span if end is None else min(prev[0] + frame_span, end)
        while t0 + k * step < stop - 1e-6:
            yield prev[1]
            k += 1


SEEK_AFTER = 2.0  # seconds: a cut starting later than this seeks instead of decoding from the first frame


def _video_frames(path: Path, start: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """(timestamp, RGB frame) from `start` on (all frames when None). A late start seeks to the keyframe
    before it (long programmes are extracted in chunks, and chunk k must not decode chunks 0..k-1);
    frames before `start` are decoded but never converted to RGB."""
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base or Fraction(1, 25)
        rate = float(stream.average_rate or 25)
        if start is not None and start > SEEK_AFTER and stream.time_base:
            try:  # backward to a keyframe; a container that cannot seek is decoded from its start
                container.seek(int((start - 1.0) / stream.time_base), stream=stream, backward=True)
            except av.error.FFmpegError:
                container.seek(0, stream=stream)
        n = 0
        try:
            for frame in container.decode(stream):
                t = float(frame.pts * tb) if frame.pts is not None else n / rate
                n += 1
                if start is not None and t < start - 1e-6:
                    continue
                yield t, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            if n == 0:
                raise InputError(path, f"not a readable video ({e})") from None
            # A truncated file: keep what decoded, as players do.
        if n == 0:
            raise InputError(path, "video has no frames")
    finally:
        container.close()


def _folder_frames(folder: Path) -> Iterator[tuple[float, np.ndarray]]:
    import cv2

    for i, f in enumerate(frame_files(folder)):
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f, "not a readable image")
        yield i / FRAME_FOLDER_FPS, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def iter_frames(path: str | Path, fps: float | None = None, start: float | None = None,
                end: float | None = None) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) uint8 of a video file or frame folder, streamed."""
    path = Path(path)
    if start is not None and end is not None and end <= start:
        raise InputError(path, f"end ({end}) is not after start ({start})")
    source = _folder_frames(path) if path.is_dir() else _video_frames(path, start)
    return _select(source, fps, start, end)


def content_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, or of a frame folder's image names and bytes (in order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = frame_files(path) if path.is_dir() else [check_regular_file(path)]  # never hash a FIFO or a device
    for f in files:
        if path.is_dir():
            h.update(f.name.encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()
