"""Draw a pose sequence as a skeleton video, so a person can look at any pose file.

Works on every pose slsearch reads (synthetic .npz, .npy, real .pose, videos through extraction):
the body in grey, the signer's right hand in orange, the left hand in blue, the face mesh as dots
with lips, eyes and brows outlined. Missing landmarks (NaN) are simply not drawn.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from slsearch.data import layout as L
from slsearch.errors import InputError, SlsearchError

DEFAULT_SIZE = (420, 520)  # width, height: PHOENIX's 210 x 260 portrait crop, doubled
_BG = (24, 24, 28)
_BODY = (200, 200, 200)
_RIGHT = (255, 150, 40)  # RGB
_LEFT = (60, 160, 255)
_FACE = (140, 200, 140)
_POSE_EDGES = [(11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24), (15, 17), (15, 19),
               (15, 21), (17, 19), (16, 18), (16, 20), (16, 22), (18, 20), (7, 3), (3, 2), (2, 1), (1, 0), (0, 4),
               (4, 5), (5, 6), (6, 8), (9, 10)]
_HAND_EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11), (11, 12),
               (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20)]
_FACE_LOOPS = [L.FACE_LIPS_OUTER, L.FACE_RIGHT_EYE[:3] + L.FACE_RIGHT_EYE[3:][::-1],
               L.FACE_LEFT_EYE[:3] + L.FACE_LEFT_EYE[3:][::-1]]
_FACE_LINES = [L.FACE_RIGHT_BROW, L.FACE_LEFT_BROW]


def _pixels(points: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) normalised points -> (N, 2) int pixel coordinates (fixed point, 4 bits) and (N,) present."""
    present = np.isfinite(points[:, :2]).all(1)
    xy = np.nan_to_num(points[:, :2]) * np.array(size, float)
    return np.round(xy * 16).astype(np.int64).clip(-2**30, 2**30), present


def _edges(img: np.ndarray, xy: np.ndarray, ok: np.ndarray, edges, offset: int, color, width: int) -> None:
    for a, b in edges:
        if ok[offset + a] and ok[offset + b]:
            cv2.line(img, tuple(xy[offset + a]), tuple(xy[offset + b]), color, width, cv2.LINE_AA, shift=4)


def draw_frame(points: np.ndarray, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """One (543, 3) pose -> (H, W, 3) uint8 RGB image of the skeleton."""
    width, height = size
    img = np.empty((height, width, 3), np.uint8)
    img[:] = _BG
    xy, ok = _pixels(points, size)
    line = max(1, round(height / 260))
    for i in range(L.FACE.start, L.FACE.stop):
        if ok[i]:
            cv2.circle(img, tuple(xy[i]), 1 * 16, (70, 100, 70), -1, cv2.LINE_AA, shift=4)
    for loop in _FACE_LOOPS + _FACE_LINES:
        idx = [L.face(i) for i in loop]
        if ok[idx].all():
            cv2.polylines(img, [xy[idx].reshape(-1, 1, 2)], loop in _FACE_LOOPS, _FACE, line, cv2.LINE_AA, shift=4)
    _edges(img, xy, ok, _POSE_EDGES, 0, _BODY, line + 1)
    for hand, color in ((L.RIGHT_HAND, _RIGHT), (L.LEFT_HAND, _LEFT)):
        _edges(img, xy, ok, _HAND_EDGES, hand.start, color, line)
        for i in range(hand.start, hand.stop):
            if ok[i]:
                cv2.circle(img, tuple(xy[i]), 2 * 16, color, -1, cv2.LINE_AA, shift=4)
    return img


def caption(img: np.ndarray, t: float, glosses: list[tuple[str, float, float]]) -> np.ndarray:
    """Write a gloss reading under the skeleton: every gloss along the bottom, the one whose span holds
    second `t` in white on a dark box, the others grey (what `slsearch recognize` read, and when)."""
    h, w = img.shape[:2]
    scale = max(0.35, min(0.6, w / 900))
    x, y = 8, h - 12
    for gloss, start, end in glosses:
        (tw, th), _ = cv2.getTextSize(gloss, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        if x + tw > w - 8:  # wrap to the line above
            x, y = 8, y - th - 10
        if start <= t < end:
            cv2.rectangle(img, (x - 3, y - th - 4), (x + tw + 3, y + 5), (30, 30, 30), -1)
            cv2.putText(img, gloss, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        else:
            cv2.putText(img, gloss, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (150, 150, 150), 1, cv2.LINE_AA)
        x += tw + 10
    return img


def render_pose(pose: np.ndarray, out: str | Path, fps: float = 25.0, size: tuple[int, int] = DEFAULT_SIZE,
                glosses: list[tuple[str, float, float]] | None = None) -> Path:
    """(T, 543, 3) pose -> skeleton video at `out` (H.264 .mp4, or whatever the suffix says); with `glosses`
    ((gloss, start s, end s), a recognised reading) each frame is captioned by `caption`."""
    import av

    pose = np.asarray(pose, np.float32)
    if pose.ndim != 3 or pose.shape[1:] != (L.N_LANDMARKS, 3):
        raise SlsearchError(f"expected a pose of shape (T, {L.N_LANDMARKS}, 3), got {pose.shape}")
    width, height = (int(v) // 2 * 2 for v in size)  # H.264 wants even sizes
    if width < 16 or height < 16:
        raise SlsearchError(f"video size {size} is too small (at least 16 x 16)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rate = max(1, int(round(fps)))
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264" if out.suffix.lower() in (".mp4", ".mkv", ".mov") else "mpeg4",
                                      rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, frame in enumerate(pose):
            img = draw_frame(frame, (width, height))
            if glosses:
                img = caption(img, i / fps, glosses)
            image = av.VideoFrame.from_ndarray(img, format="rgb24")
            container.mux(stream.encode(image))
        container.mux(stream.encode())
    return out


def _frame_size_of(path: Path) -> tuple[int, int] | None:
    """A .pose file knows the shape of its video: keep that aspect ratio, 520 pixels high."""
    if path.suffix.lower() != ".pose":
        return None
    try:
        from pose_format.pose_header import PoseHeader
        from pose_format.utils.reader import BufferReader

        header = PoseHeader.read(BufferReader(path.read_bytes()))
        w, h = header.dimensions.width, header.dimensions.height
        return (round(DEFAULT_SIZE[1] * w / h), DEFAULT_SIZE[1]) if w and h else None
    except Exception:  # the loader reports unreadable files with a proper message
        return None


def render_file(pose_file: str | Path, out: str | Path, fps: float | None = None,
                size: tuple[int, int] | None = None, glosses: list[tuple[str, float, float]] | None = None) -> Path:
    """Any pose file slsearch reads (.npz, .npy, .pose, video) -> skeleton video at `out`, captioned with a
    gloss reading when `glosses` is given (seconds of the file)."""
    from slsearch.data.poses import load_pose

    pose_file = Path(pose_file)
    if not pose_file.exists():
        raise InputError(pose_file, "file not found")
    seq = load_pose(pose_file, fps=fps)
    return render_pose(seq.data, out, fps=seq.fps, size=size or _frame_size_of(pose_file) or DEFAULT_SIZE,
                       glosses=glosses)
