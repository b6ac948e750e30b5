"""Pose files and arrays in the 543-point MediaPipe Holistic layout: the sequence type, readers of
`.npz`/`.npy`/`.pose` files, the `.npz` writer, resampling and cutting. No video here: `load_pose` in
poses.py reads every kind of input, videos through extraction (extract.py), which writes with this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slsearch.data import layout as L
from slsearch.data.files import check_regular_file
from slsearch.errors import InputError

DEFAULT_FPS = 25.0  # models see every clip at this rate (PHOENIX-2014T's), whatever the source
NPY_FPS = 25.0  # a bare .npy carries no rate: assume this
MIN_FPS, MAX_FPS = 1.0, 1000.0  # a pose's frame rate must lie in this range (0, NaN or 1e9 are damage)
# The longest clip slsearch takes, in frames as the model sees them (after cutting and resampling):
# 10,000 frames = 6.7 minutes at 25 fps. A 40,000-frame clip took 4 GB and 39 s to embed; signing
# search works on sentence-length clips, so longer videos must be cut into clips first.
MAX_FRAMES = 10_000


@dataclass
class Crops:
    """RGB crops of each frame of a video, cut around its landmarks (slsearch.data.crops): left hand, right
    hand, face."""

    images: np.ndarray  # (T, 3, S, S, 3) uint8, zeros where the part was not seen
    present: np.ndarray  # (T, 3) bool

    def take(self, frames: np.ndarray | slice) -> Crops:
        return Crops(self.images[frames], self.present[frames])


@dataclass
class PoseSequence:
    data: np.ndarray  # (T, 543, 3) float32, NaN where a landmark was not detected
    fps: float
    crops: Crops | None = None  # a video's hand and face crops, on the pose's frame clock, when asked for

    @property
    def frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


def check_fps(fps: float, source: str | Path) -> float:
    """The frame rate as a float, or an InputError when it is not a number in [MIN_FPS, MAX_FPS]."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise InputError(source, f"frame rate {fps!r} is not a number") from None
    if not (MIN_FPS <= value <= MAX_FPS):  # NaN fails this too
        raise InputError(source, f"frame rate {value:g} fps is not sensible "
                                 f"(a pose needs {MIN_FPS:g} to {MAX_FPS:g} frames per second)")
    return value


def too_long(frames: int, fps: float, source: str | Path, more: bool = False) -> InputError:
    """The error for a clip of `frames` frames at `fps` (`more`: the clip was not read to its end, it has
    more than `frames`)."""
    n = f"more than {frames}" if more else str(frames)
    return InputError(source, f"clip too long: {n} frames ({frames / fps / 60:.1f} min at {fps:g} fps), "
                              f"the limit is {MAX_FRAMES} frames ({MAX_FRAMES / DEFAULT_FPS / 60:.1f} min at "
                              f"{DEFAULT_FPS:g} fps); `slsearch index` cuts long media into segments "
                              "itself, other commands take sentence-length clips (a manifest with start/end)")


def check_length(frames: int, fps: float, source: str | Path) -> None:
    """InputError when a clip has more than MAX_FRAMES frames (at `fps`, the rate the model sees)."""
    if frames > MAX_FRAMES:
        raise too_long(frames, fps, source)


def hands_seen(data: np.ndarray) -> bool:
    """Whether any frame of a (T, 543, 3) pose has a hand landmark. A clip without one still gets a vector
    (its hand features are zero: the hand part of the pose stream is masked), but it is worth counting:
    signing is mostly in the hands, so such clips are usually badly framed or badly extracted."""
    hands = data[:, L.LEFT_HAND.start:L.RIGHT_HAND.stop, :2]
    return bool(np.isfinite(hands).all(-1).any())


def check_person(data: np.ndarray, source: str | Path) -> None:
    """InputError when no landmark of any frame has finite x and y: nobody was detected.

    Frames or points with NaN are normal (MediaPipe leaves NaN where a hand is not seen); only a
    clip with nothing at all is refused.
    """
    if not np.isfinite(data[..., :2]).all(-1).any():
        raise InputError(source, f"no person detected in any of its {data.shape[0]} frames "
                                 "(every landmark is missing or not finite)")


def check_pose_array(data: np.ndarray, source: str | Path) -> np.ndarray:
    """Validate shape (T, 543, 3) (or (T, 543, 2): z filled with NaN) and return float32.

    Infinite values become NaN (not detected); a pose with no finite landmark at all is refused
    as "no person detected".
    """
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.floating):
        raise InputError(source, f"pose array has dtype {data.dtype}, expected float")
    if data.ndim == 3 and data.shape[1:] == (L.N_LANDMARKS, 2):
        data = np.concatenate([data, np.full(data.shape[:2] + (1,), np.nan, data.dtype)], axis=-1)
    if data.ndim != 3 or data.shape[1:] != (L.N_LANDMARKS, 3):
        raise InputError(source, f"pose array has shape {tuple(data.shape)}, expected (T, {L.N_LANDMARKS}, 3)")
    if data.shape[0] == 0:
        raise InputError(source, "pose has zero frames")
    data = data.astype(np.float32, copy=False)
    inf = np.isinf(data)
    if inf.any():
        data = np.where(inf, np.float32(np.nan), data)
    check_person(data, source)
    return data


def save_pose_npz(path: str | Path, data: np.ndarray, fps: float) -> Path:
    """Write a pose as .npz with keys `pose` (T, 543, 3) float32 and `fps` (atomic replace).

    Uncompressed: noisy float32 landmarks shrink by only ~10% under zlib, at ten times the cost.
    """
    path = Path(path)
    data = check_pose_array(data, path)
    fps = check_fps(fps, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, pose=data, fps=np.float32(fps))
    tmp.replace(path)
    return path


def read_npz(path: Path) -> PoseSequence:
    check_regular_file(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "pose" not in z.files:
                raise InputError(path, f"npz has no 'pose' array (has: {', '.join(z.files) or 'nothing'})")
            fps = check_fps(z["fps"].item() if z["fps"].size == 1 else z["fps"], path) if "fps" in z.files \
                else NPY_FPS
            return PoseSequence(check_pose_array(z["pose"], path), fps)
    except InputError:
        raise
    except Exception as e:  # zipfile / pickle / truncation errors all mean the same to the user
        raise InputError(path, f"not a readable .npz ({type(e).__name__}: {e})") from None


def _read_npy(path: Path) -> PoseSequence:
    check_regular_file(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise InputError(path, f"not a readable .npy ({type(e).__name__}: {e})") from None
    return PoseSequence(check_pose_array(arr, path), NPY_FPS)


# OpenPose BODY_25 names -> MediaPipe pose names (the points both skeletons have).
_OPENPOSE_BODY = {
    "Nose": "NOSE", "RShoulder": "RIGHT_SHOULDER", "LShoulder": "LEFT_SHOULDER", "RElbow": "RIGHT_ELBOW",
    "LElbow": "LEFT_ELBOW", "RWrist": "RIGHT_WRIST", "LWrist": "LEFT_WRIST", "RHip": "RIGHT_HIP",
    "LHip": "LEFT_HIP", "RKnee": "RIGHT_KNEE", "LKnee": "LEFT_KNEE", "RAnkle": "RIGHT_ANKLE",
    "LAnkle": "LEFT_ANKLE", "REye": "RIGHT_EYE", "LEye": "LEFT_EYE", "REar": "RIGHT_EAR", "LEar": "LEFT_EAR",
    "LBigToe": "LEFT_FOOT_INDEX", "RBigToe": "RIGHT_FOOT_INDEX", "LHeel": "LEFT_HEEL", "RHeel": "RIGHT_HEEL",
}


def _component_targets(name: str, points: list[str]) -> list[int | None]:
    """For each point of a pose-format component, its index in the 543 layout (None: no counterpart)."""
    pose_index = {n: i for i, n in enumerate(L.POSE_NAMES)}
    if name == "POSE_LANDMARKS":
        return [pose_index.get(p) for p in points]
    if name == "pose_keypoints_2d":
        return [pose_index.get(_OPENPOSE_BODY.get(p, "")) for p in points]
    if name == "FACE_LANDMARKS":  # named by mesh index; 478-point meshes add irises (468..477): dropped
        return [L.face(int(p)) if p.isdigit() and int(p) < L.N_FACE else None for p in points]
    if name in ("LEFT_HAND_LANDMARKS", "hand_left_keypoints_2d"):  # same 21-point order in both
        return [L.left_hand(i) for i in range(len(points))] if len(points) == L.N_HAND else [None] * len(points)
    if name in ("RIGHT_HAND_LANDMARKS", "hand_right_keypoints_2d"):
        return [L.right_hand(i) for i in range(len(points))] if len(points) == L.N_HAND else [None] * len(points)
    return [None] * len(points)  # world landmarks, OpenPose face: no place in the 543 layout


def _read_pose_format(path: Path) -> PoseSequence:
    from pose_format import Pose

    check_regular_file(path)
    try:
        pose = Pose.read(path.read_bytes())
    except Exception as e:
        raise InputError(path, f"not a readable .pose file ({type(e).__name__}: {e})") from None
    header, body = pose.header, pose.body
    data = np.ma.asarray(body.data)  # (T, people, points, dims)
    conf = np.asarray(body.confidence)  # (T, people, points)
    if data.ndim != 4 or 0 in data.shape or data.shape[3] < 2:
        raise InputError(path, f"pose body has shape {data.shape}, expected frames x people x points x dims")
    n_points = sum(len(c.points) for c in header.components)
    if data.shape[2] != n_points or conf.shape != data.shape[:3]:
        raise InputError(path, f"pose body has {data.shape[2]} points per frame, its header names {n_points}")
    T = data.shape[0]
    w = float(header.dimensions.width or 1)
    h = float(header.dimensions.height or 1)
    xyz = np.ma.filled(data[:, 0].astype(np.float32), np.nan)  # first person
    missing = np.ma.getmaskarray(data[:, 0]).any(-1) | (conf[:, 0] <= 0)
    out = np.full((T, L.N_LANDMARKS, 3), np.nan, np.float32)
    offset, mapped = 0, 0
    for comp in header.components:
        targets = _component_targets(comp.name, list(comp.points))
        for j, tgt in enumerate(targets):
            if tgt is None:
                continue
            src = xyz[:, offset + j]
            pt = np.full((T, 3), np.nan, np.float32)
            pt[:, 0] = src[:, 0] / w
            pt[:, 1] = src[:, 1] / h
            if src.shape[-1] >= 3 and "Z" in comp.format.upper():
                pt[:, 2] = src[:, 2]  # pose-format keeps MediaPipe's z as it came (not in pixels)
            pt[missing[:, offset + j]] = np.nan
            out[:, tgt] = pt
            mapped += 1
        offset += len(comp.points)
    if mapped == 0:
        names = ", ".join(c.name for c in header.components)
        raise InputError(path, f"no component maps onto the MediaPipe Holistic layout (has: {names})")
    return PoseSequence(check_pose_array(out, path), check_fps(NPY_FPS if body.fps is None else body.fps, path))


def resample(seq: PoseSequence, fps: float) -> PoseSequence:
    """Nearest-frame resampling to `fps` (NaN-safe: never blends a missing point into a present one)."""
    if abs(seq.fps - fps) < 1e-3:
        return seq
    n_out = max(1, int(round(seq.frames * fps / seq.fps)))
    src = np.minimum(np.round(np.arange(n_out) * seq.fps / fps).astype(int), seq.frames - 1)
    return PoseSequence(seq.data[src], fps, seq.crops.take(src) if seq.crops is not None else None)


def cut(seq: PoseSequence, start: float | None, end: float | None, source: str | Path) -> PoseSequence:
    """The part of a pose sequence between start and end seconds."""
    if start is None and end is None:
        return seq
    a = int(round((start or 0.0) * seq.fps))
    b = seq.frames if end is None else int(round(end * seq.fps))
    if b <= a or a >= seq.frames:
        raise InputError(source, f"start/end ({start}, {end}) select no frames of a {seq.duration:.2f}s pose")
    return PoseSequence(seq.data[a:b], seq.fps, seq.crops.take(slice(a, b)) if seq.crops is not None else None)
