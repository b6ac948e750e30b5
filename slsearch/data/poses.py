"""Pose sequences: load any input (pose file, array, video, frame folder) into the 543 layout.

`load_pose` is the one door: `.npz`/`.npy` arrays in the 543 order, `.pose` files (pose-format,
MediaPipe Holistic or OpenPose layouts mapped onto the 543 order; pose_files.py), and videos / frame
folders (through MediaPipe extraction with an on-disk cache, see extract.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from slsearch.data.crops import cached_crops
from slsearch.data.extract import extract_pose_cached
from slsearch.data.manifest import POSE_EXTENSIONS, VIDEO_EXTENSIONS, Clip, is_frame_folder
from slsearch.data.files import check_regular_file
from slsearch.data.pose_files import (DEFAULT_FPS, MAX_FPS, MIN_FPS, PoseSequence, _read_npy, _read_pose_format,
                                      check_length, check_person, check_pose_array, cut, read_npz, resample)
from slsearch.errors import InputError, SlsearchError


def load_pose(item: Clip | str | Path | np.ndarray, fps: float | None = DEFAULT_FPS,
              cache_dir: str | Path | None = None, crops: bool = False) -> PoseSequence:
    """Any input -> PoseSequence at `fps` (None keeps the source rate).

    A Clip's start/end select part of its file. Videos and frame folders are run through
    MediaPipe Holistic once and cached (see extract.py). With `crops` (a model with an RGB stream), a
    video's sequence also carries its hand and face crops (crops.py, cached beside the pose); other
    inputs have none (`crops` None), which the RGB stream masks.

    Refused with an InputError: a file that is not a regular file (a FIFO, a device), a frame rate
    outside [MIN_FPS, MAX_FPS], a pose with no finite landmark ("no person detected") and a clip of
    more than MAX_FRAMES frames at `fps`.
    """
    if fps is not None and not (MIN_FPS <= fps <= MAX_FPS):
        raise SlsearchError(f"frame rate {fps:g} is not sensible (use {MIN_FPS:g} to {MAX_FPS:g} frames per second)")
    if isinstance(item, np.ndarray):
        return finish_pose(PoseSequence(check_pose_array(item, "<array>"), DEFAULT_FPS), fps, "<array>")
    clip = item if isinstance(item, Clip) else None
    if clip is not None and clip.path is None:
        raise InputError(clip.id, "manifest row has no file path")
    path = Path(clip.path if clip is not None else item)
    start, end = (clip.start, clip.end) if clip is not None else (None, None)
    if not path.exists():
        raise InputError(path, "file not found")
    ext = path.suffix.lower()
    if path.is_dir() or ext in VIDEO_EXTENSIONS:
        if path.is_dir() and not is_frame_folder(path):
            raise InputError(path, "folder is not a frame folder (it must hold only PNG/JPG images)")
        seq = finish_pose(extract_pose_cached(path, fps=fps, start=start, end=end, cache_dir=cache_dir), None, path)
        return replace(seq, crops=cached_crops(path, seq.data, fps, start, end, cache_dir)) if crops else seq
    return finish_pose(cut(read_pose_file(path), start, end, path), fps, path)


def read_pose_file(path: Path) -> PoseSequence:
    """A whole `.npz` / `.npy` / `.pose` file at its own rate (no length limit: callers cut or check)."""
    check_regular_file(path)
    ext = path.suffix.lower()
    if ext == ".npz":
        return read_npz(path)
    if ext == ".npy":
        return _read_npy(path)
    if ext == ".pose":
        return _read_pose_format(path)
    raise InputError(path, f"unsupported file type {ext!r} (videos: {', '.join(sorted(VIDEO_EXTENSIONS))}; "
                           f"poses: {', '.join(sorted(POSE_EXTENSIONS))}; or a frame folder)")


def finish_pose(seq: PoseSequence, fps: float | None, source: str | Path) -> PoseSequence:
    """Resample to `fps` (None: keep), refusing clips too long (checked before resampling allocates) or empty."""
    check_length(seq.frames if fps is None else round(seq.frames * fps / seq.fps), fps or seq.fps, source)
    if fps is not None:
        seq = resample(seq, fps)
    check_person(seq.data, source)  # a cut of a clip can select only frames where nobody is seen
    return seq
