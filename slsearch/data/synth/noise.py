"""Detection noise like MediaPipe Holistic's, added to a clean synthetic pose.

What a real extraction does to a signer: landmarks jitter from frame to frame (hand points most,
the face as a whole), body points wander slowly, hands are lost in runs when they move fast (motion
blur), cover the face or each other, or leave the frame; now and then a hand lands in the wrong
place for a frame or two, and a whole frame finds nobody. `difficulty` scales all of it:
0 is a clean pose, 1 (the default) is meant to look like real extraction, 2 is a bad video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slsearch.data import layout as L


@dataclass(frozen=True)
class DetectionNoise:
    """Noise levels at difficulty 1. Lengths are image-normalised units unless said otherwise."""

    body_jitter: float = 0.0007  # per pose point and frame (arms 2.5 times this)
    body_drift: float = 0.0015  # slow wander of pose points
    face_jitter: float = 0.0008  # rigid shift of the face mesh per frame (points add a third of it)
    hand_jitter: float = 0.0025  # per hand point and frame
    hand_shift: float = 0.003  # rigid shift of a whole hand per frame
    z_gain: float = 2.0  # z jitter relative to x, y jitter
    hand_drop: float = 0.02  # chance per frame that a slow, visible hand is lost
    blur_speed: float = 0.3  # wrist speed (shoulder widths per frame) where blur loses ~half the hands
    occlusion_drop: float = 0.1  # extra chance when a hand covers the face or the other hand
    drop_stay: float = 0.5  # chance that a lost hand stays lost in the next frame (runs)
    glitch: float = 0.004  # chance per hand and frame that it is placed wrongly for 1-2 frames
    lost_frame: float = 0.008  # chance per frame that nothing is detected (runs of 1-3)
    frame_bottom: float = 0.99  # hands whose wrist is below this y are out of the frame


def _shoulder_width(pose: np.ndarray) -> float:
    w = np.linalg.norm(pose[:, L.LEFT_SHOULDER, :2] - pose[:, L.RIGHT_SHOULDER, :2], axis=-1)
    w = w[np.isfinite(w)]
    return float(np.median(w)) if len(w) else 0.35


def _hand_lost(pose: np.ndarray, hand: slice, other: slice, rng: np.random.Generator, d: float,
               cfg: DetectionNoise) -> np.ndarray:
    """(T,) bool: frames where MediaPipe would not find this hand."""
    T = len(pose)
    sw = _shoulder_width(pose)
    wrist = pose[:, hand.start, :2]
    speed = np.zeros(T)
    speed[1:] = np.linalg.norm(np.diff(wrist, axis=0), axis=-1) / sw
    speed = np.maximum(speed, np.concatenate([speed[1:], [0.0]]))  # blur spans both neighbours
    centre = pose[:, hand, :2].mean(1)
    face = pose[:, L.FACE, :2]
    on_face = ((centre > face.min(1)) & (centre < face.max(1))).all(-1)
    on_hand = np.linalg.norm(centre - pose[:, other, :2].mean(1), axis=-1) < 0.35 * sw
    p = cfg.hand_drop + (1 - np.exp(-np.log(2) * (speed / cfg.blur_speed) ** 2))
    p = d * (p + cfg.occlusion_drop * (on_face | on_hand))
    p = np.clip(p, 0, 0.95)
    out_of_frame = (wrist[:, 1] > cfg.frame_bottom) | (centre[:, 1] > 1.0)
    lost = np.zeros(T, bool)
    r, r_stay = rng.random(T), rng.random(T)
    stay = min(cfg.drop_stay * max(d, 0.0), 0.9)
    for t in range(T):
        lost[t] = out_of_frame[t] or r[t] < p[t] or (t > 0 and lost[t - 1] and r_stay[t] < stay)
    return lost


def _runs(T: int, rate: float, rng: np.random.Generator, max_len: int) -> np.ndarray:
    """(T,) bool: rare events that last 1..max_len frames."""
    hit = np.zeros(T, bool)
    for t in np.nonzero(rng.random(T) < rate)[0]:
        hit[t: t + int(rng.integers(1, max_len + 1))] = True
    return hit


def apply_detection_noise(pose: np.ndarray, rng: np.random.Generator, difficulty: float = 1.0,
                          cfg: DetectionNoise = DetectionNoise()) -> np.ndarray:
    """Clean (T, 543, 3) pose -> a copy as MediaPipe might have detected it (NaN = not detected)."""
    d = float(difficulty)
    if d < 0:
        raise ValueError(f"difficulty must be >= 0, got {difficulty}")
    out = np.array(pose, dtype=np.float32, copy=True)
    if d == 0:
        return out
    T = len(out)
    xyz_scale = np.array([1.0, 1.0, cfg.z_gain])
    # Body: white jitter (arms more) plus a slow drift.
    body_sigma = np.full(L.N_POSE, cfg.body_jitter)
    body_sigma[13:23] *= 2.5
    drift = np.cumsum(rng.normal(0, cfg.body_drift * 0.3, (T, 1, 3)), 0)
    drift -= drift.mean(0)
    out[:, L.POSE] += d * (rng.normal(size=(T, L.N_POSE, 3)) * body_sigma[:, None] * xyz_scale
                           + np.clip(drift, -cfg.body_drift * 3, cfg.body_drift * 3))
    # Face: the whole mesh shakes together, each point a little on its own.
    out[:, L.FACE] += d * cfg.face_jitter * (rng.normal(size=(T, 1, 3)) * [1, 1, 0]
                                             + rng.normal(size=(T, L.N_FACE, 3)) * xyz_scale / 3)
    for hand, other in ((L.LEFT_HAND, L.RIGHT_HAND), (L.RIGHT_HAND, L.LEFT_HAND)):
        lost = _hand_lost(pose, hand, other, rng, d, cfg)
        out[:, hand] += d * (cfg.hand_shift * rng.normal(size=(T, 1, 3)) * [1, 1, 0]
                             + cfg.hand_jitter * rng.normal(size=(T, L.N_HAND, 3)) * xyz_scale)
        glitch = _runs(T, cfg.glitch * d, rng, 2)
        out[glitch, hand, :2] += rng.normal(0, 0.04, (int(glitch.sum()), 1, 2))
        out[:, hand, 2] -= out[:, hand.start: hand.start + 1, 2]  # hand z stays relative to its wrist
        out[lost, hand] = np.nan
    out[_runs(T, cfg.lost_frame * d, rng, 3)] = np.nan
    return out
