"""Pose sequence (T, 543, 3) -> model input features (T, FEATURE_DIM).

One function, `pose_to_features`, used by training, indexing and queries alike, so a clip is
always seen the same way. The keypoint subset is the named constant `FEATURE_LANDMARKS`.
"""

from __future__ import annotations

import numpy as np

from slsearch.data import layout as L

UPPER_BODY = [L.NOSE, L.LEFT_SHOULDER, L.RIGHT_SHOULDER, 13, 14, L.LEFT_WRIST_POSE, L.RIGHT_WRIST_POSE]
FACE_SUBSET = (
    L.FACE_LIPS_OUTER + L.FACE_LIPS_INNER + L.FACE_RIGHT_EYE + L.FACE_LEFT_EYE
    + L.FACE_RIGHT_BROW + L.FACE_LEFT_BROW
)
# Upper body, both hands, and the face points that carry mouthing, eye gaze and eyebrows.
FEATURE_LANDMARKS: list[int] = (
    UPPER_BODY
    + list(range(L.LEFT_HAND.start, L.LEFT_HAND.stop))
    + list(range(L.RIGHT_HAND.start, L.RIGHT_HAND.stop))
    + [L.face(i) for i in FACE_SUBSET]
)
N_POINTS = len(FEATURE_LANDMARKS)  # 99
_MIDDLE_MCP = 9  # hand point used as the hand's size reference (wrist -> middle-finger knuckle)
# Per point: x, y (body frame) + present flag + dx, dy; per hand point: x, y in the hand's own frame.
FEATURE_DIM = N_POINTS * 5 + 2 * L.N_HAND * 2
_MIN_HAND_SIZE = 0.15  # floor of the wrist-to-knuckle distance, in shoulder widths (typical: 0.3-0.4)
_CLIP = 10.0  # bound on normalised values so one wild detection cannot dominate a batch


def body_frame(pose: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (2,) between the shoulders and the shoulder width, as medians over the clip.

    Falls back to the frame centre and a typical signer scale when no shoulders are seen.
    """
    ls, rs = pose[:, L.LEFT_SHOULDER, :2], pose[:, L.RIGHT_SHOULDER, :2]
    both = np.isfinite(ls).all(1) & np.isfinite(rs).all(1)
    if not both.any():
        return np.array([0.5, 0.5], np.float32), 0.25
    centre = np.median((ls[both] + rs[both]) / 2, axis=0)
    width = float(np.median(np.linalg.norm(ls[both] - rs[both], axis=1)))
    return centre.astype(np.float32), max(width, 1e-3)


def _hand_local(pose: np.ndarray, hand: slice, body_scale: float) -> np.ndarray:
    """(T, 21, 2) hand points relative to the wrist, scaled by the per-frame hand size; 0 if missing.

    The size has a floor (a fraction of the shoulder width): a hand seen edge-on or pointing at
    the camera is tiny in the image, and dividing by its size would blow its shape up.
    """
    pts = pose[:, hand, :2]
    wrist = pts[:, :1]
    size = np.linalg.norm(pts[:, _MIDDLE_MCP] - pts[:, 0], axis=-1)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        local = (pts - wrist) / np.maximum(size, _MIN_HAND_SIZE * body_scale)
    return np.nan_to_num(local, nan=0.0, posinf=0.0, neginf=0.0)


def pose_to_features(pose: np.ndarray) -> np.ndarray:
    """(T, 543, 3) float pose with NaN for missing points -> (T, FEATURE_DIM) float32.

    Coordinates are centred between the shoulders and scaled by shoulder width (per clip), so
    position and size of the signer in the frame do not matter; missing points are zeroed and
    flagged in a mask channel; velocities are frame differences where both frames see the point.
    """
    pose = np.asarray(pose, dtype=np.float32)
    if pose.ndim != 3 or pose.shape[1:] != (L.N_LANDMARKS, 3):
        raise ValueError(f"expected a pose of shape (T, {L.N_LANDMARKS}, 3), got {pose.shape}")
    T = pose.shape[0]
    centre, scale = body_frame(pose)
    pts = pose[:, FEATURE_LANDMARKS, :2]  # (T, P, 2)
    present = np.isfinite(pts).all(-1)  # (T, P)
    norm = np.where(present[..., None], (pts - centre) / scale, 0.0)
    vel = np.zeros_like(norm)
    if T > 1:
        both = present[1:] & present[:-1]
        vel[1:] = np.where(both[..., None], norm[1:] - norm[:-1], 0.0)
    hands = np.concatenate([_hand_local(pose, L.LEFT_HAND, scale), _hand_local(pose, L.RIGHT_HAND, scale)], axis=1)
    feats = np.concatenate(
        [norm.reshape(T, -1), present.astype(np.float32), vel.reshape(T, -1), hands.reshape(T, -1)], axis=1
    )
    out = np.clip(feats, -_CLIP, _CLIP).astype(np.float32)
    assert out.shape == (T, FEATURE_DIM)
    return out
