"""Pose files and arrays in the 543-point MediaPipe Holistic layout: the sequence type, readers of
`.npz`/`.npy`/`.pose` files, the `.npz` writer, resampling and cutting. No video here: `load_pose` in
poses.py reads every kind of input, videos through extraction (extract.py), which writes with this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slsearch.data import layout as L
from slsearch.errors import InputError

DEFAULT_FPS = 25.0  # models see every clip at this rate (PHOENIX-2014T's), whatever the source
NPY_FPS = 25.0  # a bare .npy carries no rate: assume this


@dataclass
class PoseSequence:
    data: np.ndarray  # (T, 543, 3) float32, NaN where a landmark was not detected
    fps: float

    @property
    def frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


def check_pose_array(data: np.ndarray, source: str | Path) -> np.ndarray:
    """Validate shape (T, 543, 3) (or (T, 543, 2): z filled with NaN) and return float32."""
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[1:] == (L.N_LANDMARKS, 2):
        data = np.concatenate([data, np.full(data.shape[:2] + (1,), np.nan, data.dtype)], axis=-1)
    if data.ndim != 3 or data.shape[1:] != (L.N_LANDMARKS, 3):
        raise InputError(source, f"pose array has shape {tuple(data.shape)}, expected (T, {L.N_LANDMARKS}, 3)")
    if data.shape[0] == 0:
        raise InputError(source, "pose has zero frames")
    if not np.issubdtype(data.dtype, np.floating):
        raise InputError(source, f"pose array has dtype {data.dtype}, expected float")
    return data.astype(np.float32, copy=False)


def save_pose_npz(path: str | Path, data: np.ndarray, fps: float) -> Path:
    """Write a pose as .npz with keys `pose` (T, 543, 3) float32 and `fps` (atomic replace).

    Uncompressed: noisy float32 landmarks shrink by only ~10% under zlib, at ten times the cost.
    """
    path = Path(path)
    data = check_pose_array(data, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, pose=data, fps=np.float32(fps))
    tmp.replace(path)
    return path


def read_npz(path: Path) -> PoseSequence:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "pose" not in z.files:
                raise InputError(path, f"npz has no 'pose' array (has: {', '.join(z.files) or 'nothing'})")
            fps = float(z["fps"]) if "fps" in z.files else NPY_FPS
            return PoseSequence(check_pose_array(z["pose"], path), fps)
    except InputError:
        raise
    except Exception as e:  # zipfile / pickle / truncation errors all mean the same to the user
        raise InputError(path, f"not a readable .npz ({type(e).__name__}: {e})") from None


def _read_npy(path: Path) -> PoseSequence:
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

    try:
        pose = Pose.read(path.read_bytes())
    except Exception as e:
        raise InputError(path, f"not a readable .pose file ({type(e).__name__}: {e})") from None
    header, body = pose.header, pose.body
    data = np.ma.asarray(body.data)  # (T, people, points, dims)
    conf = np.asarray(body.confidence)  # (T, people, points)
    if data.ndim != 4 or data.shape[0] == 0:
        raise InputError(path, f"pose body has shape {data.shape}, expected frames x people x points x dims")
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
    return PoseSequence(out, float(body.fps or NPY_FPS))


def resample(seq: PoseSequence, fps: float) -> PoseSequence:
    """Nearest-frame resampling to `fps` (NaN-safe: never blends a missing point into a present one)."""
    if abs(seq.fps - fps) < 1e-3:
        return seq
    n_out = max(1, int(round(seq.frames * fps / seq.fps)))
    src = np.minimum(np.round(np.arange(n_out) * seq.fps / fps).astype(int), seq.frames - 1)
    return PoseSequence(seq.data[src], fps)


def cut(seq: PoseSequence, start: float | None, end: float | None, source: str | Path) -> PoseSequence:
    """The part of a pose sequence between start and end seconds."""
    if start is None and end is None:
        return seq
    a = int(round((start or 0.0) * seq.fps))
    b = seq.frames if end is None else int(round(end * seq.fps))
    if b <= a or a >= seq.frames:
        raise InputError(source, f"start/end ({start}, {end}) select no frames of a {seq.duration:.2f}s pose")
    return PoseSequence(seq.data[a:b], seq.fps)
