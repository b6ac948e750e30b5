"""MediaPipe Holistic pose extraction: frames -> (T, 543, 3), in parallel, cached on disk.

mediapipe 0.10.21 is the last release with bundled models and `mp.solutions.holistic`;
model_complexity=1 is the only complexity whose model ships in the wheel (0 and 2 download).
The cache key is the source's content hash plus start/end, fps and EXTRACTOR_VERSION, so a
second run over the same files extracts nothing, and renaming a file does not matter.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from slsearch.data import layout as L
from slsearch.data.manifest import Clip
from slsearch.data.pose_files import MAX_FRAMES, PoseSequence, check_fps, read_npz, save_pose_npz, too_long
from slsearch.data.video import FRAME_FOLDER_FPS, content_hash, frame_files, iter_frames, probe
from slsearch.errors import InputError, SlsearchError

EXTRACTOR_VERSION = "mediapipe-0.10.21/holistic-c1/v1"  # bump when extraction output changes
MODEL_COMPLEXITY = 1

_holistic = None  # one tracker per process, reset between videos


def _libc_fflush() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


@contextmanager
def _quiet_stderr():
    """Silence MediaPipe's C++ start-up warnings (written straight to fd 2) so progress bars stay readable."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        _libc_fflush()  # C++ logs sit in stdio buffers: flush them into /dev/null, not onto the terminal later
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def default_cache_dir() -> Path:
    return Path(os.environ.get("SLSEARCH_CACHE", Path.home() / ".cache" / "slsearch")) / "poses"


def _tracker():
    global _holistic
    if _holistic is None:
        with _quiet_stderr():
            import mediapipe as mp

            _holistic = mp.solutions.holistic.Holistic(
                static_image_mode=False, model_complexity=MODEL_COMPLEXITY, smooth_landmarks=True,
                refine_face_landmarks=False, min_detection_confidence=0.5, min_tracking_confidence=0.5,
            )
    _holistic.reset()  # tracking state must not leak from one video into the next
    return _holistic


def _landmarks(lm, n: int) -> np.ndarray:
    if lm is None:
        return np.full((n, 3), np.nan, np.float32)
    return np.array([(p.x, p.y, p.z) for p in lm.landmark], np.float32)[:n]


def extract_pose(path: str | Path, fps: float | None = None, start: float | None = None,
                 end: float | None = None, crops: bool = False) -> PoseSequence:
    """Run MediaPipe Holistic on every (resampled) frame of a video file or frame folder; `crops`: cut each
    frame's hand and face crops (slsearch.data.crops) from the same decoded frame, too.

    A clip longer than MAX_FRAMES frames at the output rate is refused with an InputError before
    any extraction when its declared length says so, else at the first frame past the cap.
    """
    path = Path(path)
    if path.is_dir():
        source_fps, duration = FRAME_FOLDER_FPS, len(frame_files(path)) / FRAME_FOLDER_FPS
    else:
        info = probe(path)
        source_fps, duration = info.fps, info.duration
    rate = fps if fps is not None else check_fps(source_fps, path)
    span = (duration if end is None else min(end, duration)) - (start or 0.0)
    if duration > 0 and span * rate > MAX_FRAMES + 1:  # 0: the container does not say; the loop checks
        raise too_long(int(span * rate), rate, path)
    holistic = _tracker()
    rows, cut = [], []
    if crops:
        from slsearch.data.crops import cut_crops
    with _quiet_stderr():  # the graph's threads log warnings each time the tracker restarts
        for frame in iter_frames(path, fps=fps, start=start, end=end):
            if len(rows) == MAX_FRAMES:
                raise too_long(MAX_FRAMES, rate, path, more=True)
            r = holistic.process(np.ascontiguousarray(frame))
            rows.append(np.concatenate([
                _landmarks(r.pose_landmarks, L.N_POSE), _landmarks(r.face_landmarks, L.N_FACE),
                _landmarks(r.left_hand_landmarks, L.N_HAND), _landmarks(r.right_hand_landmarks, L.N_HAND),
            ]))
            if crops:
                cut.append(cut_crops(frame, rows[-1]))
    if not rows:
        raise InputError(path, "no frames in the selected range")
    data = np.stack(rows)
    if not np.isfinite(data[:, L.POSE, 0]).any():
        raise InputError(path, f"no person detected in any of its {len(rows)} frames")
    if crops:
        from slsearch.data.pose_files import Crops

        return PoseSequence(data, float(rate), Crops(np.stack([c[0] for c in cut]), np.stack([c[1] for c in cut])))
    return PoseSequence(data, float(rate))


def cache_key(path: Path, fps: float | None, start: float | None, end: float | None,
              file_hash: str | None = None) -> str:
    """The cache entry's name; `file_hash` (content_hash of `path`) saves hashing a long file per chunk."""
    spec = f"{file_hash or content_hash(path)}|{start}|{end}|{fps}|{EXTRACTOR_VERSION}"
    return hashlib.sha256(spec.encode()).hexdigest()


def cache_path(key: str, cache_dir: str | Path | None = None) -> Path:
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / key[:2] / f"{key}.npz"


def _cached_or_extract(path: Path, fps: float | None, start: float | None, end: float | None,
                       cache_dir: str | Path | None, crops: bool = False) -> tuple[PoseSequence, bool, Path]:
    """Read the cache entry, or extract in this process and write it. Returns (pose, was_cached, entry).
    `crops`: the crops are cached too, cut from the frames MediaPipe sees when it runs, else (a pose cached
    before) from a second decoding."""
    key = cache_key(path, fps, start, end)
    target = cache_path(key, cache_dir)
    seq = None
    if target.exists():
        try:
            seq = read_npz(target)
        except InputError:
            target.unlink(missing_ok=True)  # a damaged cache entry is recomputed, not trusted
    if seq is not None:
        if crops:
            from slsearch.data.crops import cached_crops

            cached_crops(path, seq.data, fps, start, end, cache_dir)
        return seq, True, target
    seq = extract_pose(path, fps=fps, start=start, end=end, crops=crops)
    save_pose_npz(target, seq.data, seq.fps)
    if crops:
        from slsearch.data.crops import crops_path, save_crops

        save_crops(crops_path(key, cache_dir), seq.crops)
    return seq, False, target


def extract_pose_cached(path: str | Path, fps: float | None = None, start: float | None = None,
                        end: float | None = None, cache_dir: str | Path | None = None) -> PoseSequence:
    """The pose of one video from the cache, or extracted in a worker process and cached.

    MediaPipe runs in a worker even for one clip: its C++ side logs to the process's stderr
    and keeps threads alive, neither of which belongs in the caller's process.
    """
    path = Path(path)
    target = cache_path(cache_key(path, fps, start, end), cache_dir)
    if target.exists():
        try:
            return read_npz(target)
        except InputError:
            target.unlink(missing_ok=True)
    clip = Clip(id=path.name, path=path, start=start, end=end)
    result = extract_many([clip], workers=1, fps=fps, cache_dir=cache_dir)[0]
    if result.error:
        raise SlsearchError(result.error)
    return read_npz(result.cache_file)


@dataclass
class ExtractResult:
    clip: Clip
    frames: int = 0
    cached: bool = False  # found in the cache, nothing extracted
    error: str | None = None  # one line, "path: reason"
    cache_file: Path | None = None


def silence_worker() -> None:
    """Pool initializer: a worker reports through its results, so its stderr (C++ logs) can go."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def worker_cores(workers: int) -> list[int] | None:
    """One core per worker, from the cores this process may use, when there are enough (Linux); else None.
    MediaPipe and the decoder each start threads; left free, two workers' threads share both cores and
    interrupt each other: pinned, 30 real How2Sign clips extract 12-17 % faster on 2 cores
    (benchmarks/RESULTS.md, "Extraction workers pinned to cores")."""
    if not hasattr(os, "sched_getaffinity") or os.environ.get("SLSEARCH_PIN_WORKERS", "1") == "0":
        return None
    cores = sorted(os.sched_getaffinity(0))
    return cores[:workers] if 1 < workers <= len(cores) else None


def start_worker(counter, cores: list[int] | None) -> None:
    """Pool initializer: silence the worker and, with `cores`, pin it to the next one (`counter`: a shared
    multiprocessing.Value, so each worker of a pool takes its own)."""
    silence_worker()
    if cores:
        with counter.get_lock():
            core = cores[counter.value % len(cores)]
            counter.value += 1
        os.sched_setaffinity(0, {core})


def extract_one(clip: Clip, fps: float | None, cache_dir: str | None, crops: bool = False) -> ExtractResult:
    """Worker body: never raises for bad input, so one corrupt file cannot stop a batch. `crops`: the
    clip's hand and face crops are cut and cached too (slsearch.data.crops), here in the worker rather than
    later, one clip at a time, in the process that reads them (a model with an RGB stream)."""
    try:
        path = Path(clip.path) if clip.path is not None else None
        if path is None:
            raise InputError(clip.id, "manifest row has no file path")
        if not path.exists():
            raise InputError(path, "file not found")
        seq, cached, target = _cached_or_extract(path, fps, clip.start, clip.end, cache_dir, crops)
        return ExtractResult(clip, frames=seq.frames, cached=cached, cache_file=target)
    except InputError as e:
        return ExtractResult(clip, error=str(e))
    except Exception as e:  # decoder or MediaPipe failures on odd files: report, keep going
        return ExtractResult(clip, error=f"{clip.path}: extraction failed ({type(e).__name__}: {e})")


def crashed(clip: Clip) -> ExtractResult:
    """The result of a clip whose worker died twice on it (a decoder crash)."""
    return ExtractResult(clip, error=f"{clip.path}: the extractor crashed on this file")


def extract_many(clips: Sequence[Clip], workers: int | None = None, fps: float | None = 25.0,
                 cache_dir: str | Path | None = None,
                 on_result: Callable[[ExtractResult], None] | None = None,
                 ray: str | None = None, crops: bool = False) -> list[ExtractResult]:
    """Extract (or find cached) poses of many video clips in parallel worker processes (`crops`: and cut
    their hand and face crops, for a model with an RGB stream).

    Results come back in the order of `clips`; failures carry a one-line `error`. `on_result`
    is called as each finishes (progress bars). A worker that dies (a decoder crash) is
    replaced and only the clip it was working on is reported as failed. `ray` (an address, or
    "auto"): the same work in Ray actors instead of local processes (slsearch.distributed_ray).
    """
    if ray is not None:
        from slsearch.distributed_ray import extract_many_ray

        return extract_many_ray(clips, workers=workers, fps=fps, cache_dir=cache_dir, on_result=on_result,
                                address=ray, crops=crops)
    workers = max(1, workers or os.cpu_count() or 1)
    cache = str(cache_dir) if cache_dir else None
    results: dict[int, ExtractResult] = {}

    def done(i: int, r: ExtractResult) -> None:
        results[i] = r
        if on_result:
            on_result(r)

    pending = list(range(len(clips)))
    strikes: dict[int, int] = {}
    while pending:
        # spawn, not fork: the parent may hold torch/OpenMP threads that a forked child would inherit broken.
        context = get_context("spawn")
        n = min(workers, len(clips))
        with ProcessPoolExecutor(max_workers=n, mp_context=context, initializer=start_worker,
                                 initargs=(context.Value("i", 0), worker_cores(n))) as pool:
            in_flight: dict = {}
            try:
                while pending or in_flight:
                    # At most `workers` clips in flight, so a crash has few suspects.
                    while pending and len(in_flight) < workers:
                        i = pending.pop(0)
                        in_flight[pool.submit(extract_one, clips[i], fps, cache, crops)] = i
                    finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        done(in_flight.pop(fut), fut.result())
            except BrokenProcessPool:
                # Every clip in flight is a suspect: retried once in a fresh pool, failed on a second crash.
                for i in in_flight.values():
                    strikes[i] = strikes.get(i, 0) + 1
                    if strikes[i] >= 2:
                        done(i, crashed(clips[i]))
                    else:
                        pending.insert(0, i)
    return [results[i] for i in range(len(clips))]


class RateTracker:
    """Frames per second over a batch, for progress bars and summaries."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.frames = 0

    def add(self, frames: int) -> str:
        self.frames += frames
        dt = max(time.perf_counter() - self.t0, 1e-9)
        return f"{self.frames / dt:.0f} frames/s"
