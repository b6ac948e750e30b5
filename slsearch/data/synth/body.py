"""Body geometry of the synthetic signer: hands from finger angles, arms by inverse kinematics,
the face mesh with its non-manual deformations, and the projection into the 543 layout.

World coordinates are body units (shoulder width = 1): origin between the shoulders, x towards
the image right (the signer's left), y down, z towards the camera negative.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

from slsearch.data import layout as L
from slsearch.data.synth.signer import FRAME_ASPECT, Signer

# --- hand: 21 MediaPipe hand points from a handshape vector ----------------------------------------
# Local frame of a right hand: wrist at the origin, fingers along -y, thumb side +x, palm facing -z;
# unit = wrist -> middle-finger knuckle.
_KNUCKLES = np.array([[0.33, -0.93, 0.0], [0.05, -1.0, 0.0], [-0.22, -0.93, 0.0], [-0.45, -0.8, 0.02]])
_PHALANGES = np.array([[0.45, 0.27, 0.22], [0.5, 0.32, 0.24], [0.46, 0.3, 0.23], [0.36, 0.22, 0.2]])
_SPLAY = np.radians([11.0, 0.0, -10.0, -22.0])  # finger directions at full spread
_THUMB_CMC = np.array([0.22, -0.2, -0.06])
_THUMB_BONES = np.array([0.42, 0.32, 0.27])
_THUMB_ALONG = np.array([0.45, -0.87, -0.2])  # adducted: beside the index
_THUMB_OUT = np.array([0.95, -0.3, -0.05])  # abducted: out to the side
_THUMB_FRONT = np.array([-0.1, -0.55, -0.83])  # opposed: in front of the palm
_THUMB_BEND = np.array([-0.85, -0.1, -0.5])  # where a flexed thumb curls to (across the palm)
PALM_CENTRE = np.array([0.0, -0.5, 0.0])  # the point a sign's location refers to


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def hand_points(shape: np.ndarray) -> np.ndarray:
    """(T, 16) handshape vectors -> (T, 21, 3) right-hand points in the hand's local frame."""
    T = shape.shape[0]
    out = np.zeros((T, 21, 3))
    flex = np.radians(shape[:, :12].reshape(T, 4, 3))
    splay = _SPLAY * (0.25 + 0.75 * shape[:, 12:13])  # (T, 4)
    base = np.stack([np.sin(splay), -np.cos(splay), np.zeros_like(splay)], -1)  # (T, 4, 3)
    bend = np.cumsum(flex, axis=-1)[..., None]  # (T, 4, 3, 1): each joint adds to the curl
    dirs = np.cos(bend) * base[:, :, None, :] + np.sin(bend) * np.array([0.0, 0.0, -1.0])
    joints = _KNUCKLES[None, :, None, :] + np.cumsum(dirs * _PHALANGES[None, :, :, None], axis=2)  # (T, 4, 3, 3)
    for f in range(4):
        out[:, 5 + 4 * f] = _KNUCKLES[f]
        out[:, 6 + 4 * f: 9 + 4 * f] = joints[:, f]
    abd, opp, tflex = shape[:, 13:14], shape[:, 14:15], np.radians(shape[:, 15:16])
    first = _unit((1 - opp) * ((1 - abd) * _THUMB_ALONG + abd * _THUMB_OUT) + opp * _THUMB_FRONT)  # (T, 3)
    across = _unit(_THUMB_BEND - np.sum(_THUMB_BEND * first, -1, keepdims=True) * first)
    out[:, 1] = _THUMB_CMC
    point = _THUMB_CMC + first * _THUMB_BONES[0]
    out[:, 2] = point
    for k, share in ((3, 0.6), (4, 1.3)):
        a = tflex * share
        point = point + (np.cos(a) * first + np.sin(a) * across) * _THUMB_BONES[k - 2]
        out[:, k] = point
    return out


def orientation_matrix(fingers: np.ndarray, palm: np.ndarray) -> np.ndarray:
    """(T, 3) finger direction and palm normal -> (T, 3, 3) rotation taking local hand points to
    hand space (local -y -> fingers, local -z -> palm); the palm is made orthogonal to the fingers."""
    f = _unit(fingers)
    n = _unit(palm - np.sum(palm * f, -1, keepdims=True) * f)
    ey, ez = -f, -n
    ex = np.cross(ey, ez)
    return np.stack([ex, ey, ez], axis=-1)


def place_hand(pos: np.ndarray, fingers: np.ndarray, palm: np.ndarray, shape: np.ndarray,
               hand_size: float) -> np.ndarray:
    """Palm centre (T, 3), orientation and shape -> (T, 21, 3) hand points in hand space."""
    R = orientation_matrix(fingers, palm)  # (T, 3, 3)
    local = hand_points(shape) * hand_size  # (T, 21, 3)
    wrist = pos - R @ (PALM_CENTRE * hand_size)
    return wrist[:, None, :] + local @ R.transpose(0, 2, 1)


# --- arm -------------------------------------------------------------------------------------------

def elbows(shoulder: np.ndarray, wrist: np.ndarray, upper: float, fore: float, pole: np.ndarray) -> np.ndarray:
    """Two-bone inverse kinematics: (T, 3) shoulder and wrist -> (T, 3) elbow bent towards `pole`."""
    d_vec = wrist - shoulder
    d = np.clip(np.linalg.norm(d_vec, axis=-1, keepdims=True), abs(upper - fore) + 1e-3, upper + fore - 1e-3)
    u = _unit(d_vec)
    cos_a = np.clip((upper**2 + d**2 - fore**2) / (2 * upper * d), -1, 1)
    side = _unit(pole - np.sum(pole * u, -1, keepdims=True) * u)
    return shoulder + upper * (cos_a * u + np.sqrt(1 - cos_a**2) * side)


# --- face ------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def face_template() -> np.ndarray:
    """(468, 3) neutral face mesh, outer eye corners 1 apart (see scripts/make_face_template.py)."""
    with resources.files("slsearch").joinpath("resources/face_template.npy").open("rb") as f:
        return np.load(f).astype(np.float64)


@lru_cache(maxsize=1)
def _face_weights() -> dict[str, np.ndarray]:
    """Per-point weights of the face parts that non-manual signals move."""
    t = face_template()
    x, y = t[:, 0], t[:, 1]
    mouth = t[[13, 14]].mean(0)
    brow_y = t[L.FACE_RIGHT_BROW + L.FACE_LEFT_BROW, 1].mean()
    eyes = [t[L.FACE_RIGHT_EYE].mean(0), t[L.FACE_LEFT_EYE].mean(0)]
    eye_w = np.zeros(len(t))
    for c in eyes:  # upper lid: above the eye centre, close to it
        near = np.exp(-((x - c[0]) / 0.16) ** 2 - ((y - c[1]) / 0.07) ** 2)
        eye_w = np.maximum(eye_w, near * (y < c[1]))
    return {
        "jaw": np.clip((y - mouth[1]) / 0.02, 0, 1) * np.exp(-(((x - mouth[0]) / 0.55) ** 4)),
        "lips": np.exp(-(((x - mouth[0]) / 0.35) ** 2) - ((y - mouth[1]) / 0.15) ** 2),
        "mouth_x": np.full(len(t), mouth[0]),
        "brow": np.exp(-((y - brow_y) / 0.18) ** 2) * (y < brow_y + 0.2),
        "lid": eye_w,
        "lid_dy": np.where(eye_w > 0, np.array([eyes[int(xx > 0)][1] for xx in x]) - y, 0.0),
        "cheek": np.exp(-((np.abs(x) - 0.5) / 0.15) ** 2 - ((y - mouth[1] + 0.1) / 0.25) ** 2),
    }


def face_points(mouth_open: np.ndarray, mouth_wide: np.ndarray, brows: np.ndarray, blink: np.ndarray,
                puff: np.ndarray, stretch: float) -> np.ndarray:
    """Non-manual channels (T,) -> (T, 468, 3) face mesh in face units, before head rotation."""
    t, w = face_template(), _face_weights()
    pts = np.broadcast_to(t, (len(mouth_open), *t.shape)).copy()
    pts[..., 1] *= stretch
    c = lambda v: v[:, None]  # noqa: E731  (T,) -> (T, 1) to broadcast over points
    pts[..., 1] += c(mouth_open) * 0.22 * w["jaw"]
    pts[..., 0] += c(mouth_wide) * 0.15 * (t[:, 0] - w["mouth_x"]) * w["lips"]
    pts[..., 1] -= c(brows) * 0.07 * w["brow"]
    pts[..., 1] += c(blink) * w["lid_dy"] * w["lid"]
    pts[..., 0] += c(puff) * 0.07 * np.sign(t[:, 0]) * w["cheek"]
    return pts


def rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(T,) angles -> (T, 3, 3) head rotation (yaw about y, pitch about x, roll about z)."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    Ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    Rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1), np.stack([zero, sp, cp], -1)], -2)
    Rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2)
    return Ry @ Rx @ Rz


# --- the whole body in the 543 layout ------------------------------------------------------------
_POSE_FROM_FACE = {0: [1], 1: [362], 2: [386, 374], 3: [263], 4: [133], 5: [159, 145], 6: [33], 9: [291], 10: [61]}
_EARS = {7: 454, 8: 234}  # ear points sit behind the face outline
_HIP_DEPTH = 0.25  # hips behind the shoulder line; MediaPipe's pose z is measured from the hips
_POSE_Z_GAIN = 3.7  # MediaPipe pose z runs about 3-4x the true depth (nose ~ -2.2 shoulder widths)
_HAND_Z_GAIN = 0.55  # ... and its hand z about half of it (hand z range ~0.18 shoulder widths)
_CAMERA_DISTANCE = 9.0  # body units; weak perspective: nearer hands look a little bigger


def assemble(signer: Signer, torso: np.ndarray, head_rot: np.ndarray, face: np.ndarray,
             right_hand: np.ndarray, left_hand: np.ndarray, shrug: np.ndarray) -> np.ndarray:
    """World-space parts -> (T, 543, 3) pose in image-normalised MediaPipe convention.

    torso (T, 3) body offset; head_rot (T, 3, 3); face (T, 468, 3) face units; hands (T, 21, 3)
    world; shrug (T, 2) lift of the right and left shoulder.
    """
    T = torso.shape[0]
    world = np.zeros((T, L.N_LANDMARKS, 3))
    # Torso and shoulders.
    r_sh = np.array([-0.5, 0.0, 0.0]) + torso + np.stack([0 * shrug[:, 0], -shrug[:, 0], 0 * shrug[:, 0]], -1)
    l_sh = np.array([0.5, 0.0, 0.0]) + torso + np.stack([0 * shrug[:, 1], -shrug[:, 1], 0 * shrug[:, 1]], -1)
    world[:, L.LEFT_SHOULDER], world[:, L.RIGHT_SHOULDER] = l_sh, r_sh
    hip_y, hw = signer.torso, signer.hip_width / 2
    for idx, x, y in ((23, hw, hip_y), (24, -hw, hip_y), (25, hw * 0.9, hip_y + 1.25), (26, -hw * 0.9, hip_y + 1.25),
                      (27, hw * 0.85, hip_y + 2.45), (28, -hw * 0.85, hip_y + 2.45), (29, hw * 0.85, hip_y + 2.55),
                      (30, -hw * 0.85, hip_y + 2.55), (31, hw * 0.95, hip_y + 2.6), (32, -hw * 0.95, hip_y + 2.6)):
        world[:, idx] = (x, y, _HIP_DEPTH + (-0.35 if idx >= 31 else 0.0))
    world[:, 23:33, :2] += torso[:, None, :2] * 0.3  # the lower body barely sways
    # Face: the template's centre sits below the eye line; the head pivots at the neck.
    pivot = torso + np.array([0.0, -0.3, 0.05])
    centre_rel = np.array([0.0, -signer.neck + 0.3 + 0.32 * signer.face_scale, -0.3])
    mesh = face * signer.face_scale  # (T, 468, 3)
    face_world = pivot[:, None, :] + (mesh + centre_rel) @ head_rot.transpose(0, 2, 1)
    world[:, L.FACE] = face_world
    for p, idx in _POSE_FROM_FACE.items():
        world[:, p] = face_world[:, idx].mean(1)
    back = np.einsum("tij,j->ti", head_rot, np.array([0.0, 0.0, 0.12]))
    for p, idx in _EARS.items():
        world[:, p] = face_world[:, idx] + back
    # Hands and arms.
    world[:, L.RIGHT_HAND], world[:, L.LEFT_HAND] = right_hand, left_hand
    world[:, 16], world[:, 15] = right_hand[:, 0], left_hand[:, 0]  # pose wrists
    world[:, 18], world[:, 17] = right_hand[:, 17], left_hand[:, 17]  # pinky knuckles
    world[:, 20], world[:, 19] = right_hand[:, 5], left_hand[:, 5]  # index knuckles
    world[:, 22], world[:, 21] = right_hand[:, 2], left_hand[:, 2]  # thumbs
    world[:, 14] = elbows(r_sh, right_hand[:, 0], signer.upper_arm, signer.forearm, np.array([-0.2, 1.0, -0.1]))
    world[:, 13] = elbows(l_sh, left_hand[:, 0], signer.upper_arm, signer.forearm, np.array([0.2, 1.0, -0.1]))
    return project(signer, world, face_world)


def project(signer: Signer, world: np.ndarray, face_world: np.ndarray) -> np.ndarray:
    """World (T, 543, 3) -> image-normalised x, y and MediaPipe-style z (per part's own origin)."""
    s = signer.shoulder_width
    persp = _CAMERA_DISTANCE / (_CAMERA_DISTANCE + world[..., 2])  # (T, 543)
    out = np.empty_like(world)
    out[..., 0] = signer.centre_x + s * world[..., 0] * persp
    out[..., 1] = signer.shoulder_y + s * FRAME_ASPECT * world[..., 1] * persp
    out[:, L.POSE, 2] = _POSE_Z_GAIN * s * (world[:, L.POSE, 2] - _HIP_DEPTH)
    out[:, L.FACE, 2] = s * (face_world[..., 2] - face_world[..., 2].mean(1, keepdims=True))
    for hand in (L.LEFT_HAND, L.RIGHT_HAND):  # hand z is relative to its wrist
        out[:, hand, 2] = _HAND_Z_GAIN * s * (world[:, hand, 2] - world[:, hand.start : hand.start + 1, 2])
    return out
