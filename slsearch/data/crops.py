"""RGB crops of the hands and the face, cut around MediaPipe's landmarks: the input of the RGB stream
(`slsearch.models.video_tower.RgbCropFrontEnd`, issue 18).

Each frame gives N_CROPS square crops (left hand, right hand, face) of CROP_SIZE pixels a side, and a flag
per crop saying whether that part was seen. A box spans its landmarks' extent plus a margin and is never
smaller than a share of the shoulder width, so a hand seen edge-on or a fist still shows its surroundings;
what of a box lies off the frame is black.

Crops are cut only when a model with an RGB stream asks for them: by the extraction workers from the frames
MediaPipe sees (`extract_many(..., crops=True)`, as `index` and `train` call it), or from the cached
landmarks in a second decoding pass (a pose extracted before, `load_pose(..., crops=True)`), and cached
beside the pose under the same key
(`<key>.<CROPS_VERSION>.npz`): pose-only work pays nothing, pose caches written before stay valid and
MediaPipe never runs twice for a clip. Pose files and synthetic corpora have no video, hence no crops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slsearch.data import layout as L
from slsearch.data.extract import cache_key, cache_path
from slsearch.data.pose_files import Crops
from slsearch.data.video import iter_frames
from slsearch.errors import InputError

CROP_SIZE = 32  # pixels a side: small enough to hold a corpus's crops in memory as the pose features are
PARTS = (L.LEFT_HAND, L.RIGHT_HAND, L.FACE)
N_CROPS = len(PARTS)
MARGIN = 1.3  # a box's side is its landmarks' extent times this
FLOOR = 0.6  # ... and at least this many shoulder widths (a hand is about half of one long)
FRAME_SHOULDERS = 0.25  # the shoulder width assumed, as a share of the frame's shorter edge, when not seen
CROPS_VERSION = f"crops{CROP_SIZE}-v1"  # names the cache file: bump when the crops change


def crop_boxes(pose: np.ndarray, width: int, height: int) -> np.ndarray:
    """One frame's pose (543, 3), image-normalised -> (N_CROPS, 3) boxes (x0, y0, side) in pixels, NaN for a
    part that was not seen."""
    xy = pose[:, :2].astype(np.float64) * (width, height)
    shoulder = float(np.linalg.norm(xy[L.LEFT_SHOULDER] - xy[L.RIGHT_SHOULDER]))
    if not np.isfinite(shoulder) or shoulder <= 0:
        shoulder = FRAME_SHOULDERS * min(width, height)
    boxes = np.full((N_CROPS, 3), np.nan)
    for k, part in enumerate(PARTS):
        points = xy[part]
        points = points[np.isfinite(points).all(1)]
        if not len(points):
            continue
        lo, hi = points.min(0), points.max(0)
        side = max(float((hi - lo).max()) * MARGIN, FLOOR * shoulder)
        centre = (lo + hi) / 2
        boxes[k] = (centre[0] - side / 2, centre[1] - side / 2, side)
    return boxes


def cut_crops(frame: np.ndarray, pose: np.ndarray, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """An RGB frame (H, W, 3) uint8 and its pose (543, 3) -> crops (N_CROPS, size, size, 3) uint8 and present
    (N_CROPS,) bool (a part not seen, or whose box misses the frame: zeros and False)."""
    import cv2

    H, W = frame.shape[:2]
    images = np.zeros((N_CROPS, size, size, 3), np.uint8)
    present = np.zeros(N_CROPS, bool)
    for k, (x0, y0, side) in enumerate(crop_boxes(pose, W, H)):
        if not np.isfinite(side):
            continue
        x0, y0, side = int(round(x0)), int(round(y0)), max(1, int(round(side)))
        ax, ay, bx, by = max(x0, 0), max(y0, 0), min(x0 + side, W), min(y0 + side, H)
        if bx <= ax or by <= ay:
            continue
        canvas = np.zeros((side, side, 3), np.uint8)
        canvas[ay - y0:by - y0, ax - x0:bx - x0] = frame[ay:by, ax:bx]
        images[k] = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
        present[k] = True
    return images, present


def video_crops(path: Path, pose: np.ndarray, fps: float | None, start: float | None,
                end: float | None) -> Crops:
    """Decode the frames the pose was extracted from (the same `iter_frames` call as extraction, so frame t
    is pose row t) and cut each one's crops; frames that do not decode stay masked."""
    T = len(pose)
    images = np.zeros((T, N_CROPS, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    present = np.zeros((T, N_CROPS), bool)
    for t, frame in enumerate(iter_frames(path, fps=fps, start=start, end=end)):
        if t == T:
            break
        images[t], present[t] = cut_crops(frame, pose[t])
    return Crops(images, present)


def crops_path(key: str, cache_dir: str | Path | None = None) -> Path:
    """The crops' cache file: beside the pose entry of the same key."""
    return cache_path(key, cache_dir).with_name(f"{key}.{CROPS_VERSION}.npz")


def read_crops(path: Path) -> Crops:
    try:
        with np.load(path, allow_pickle=False) as z:
            images, present = z["images"], z["present"].astype(bool)
    except Exception as e:  # truncated or foreign: the caller recomputes
        raise InputError(path, f"not a readable crops file ({type(e).__name__}: {e})") from None
    if images.ndim != 5 or images.shape[1:] != (N_CROPS, CROP_SIZE, CROP_SIZE, 3) or present.shape != images.shape[:2]:
        raise InputError(path, f"crops of shape {images.shape}, expected (T, {N_CROPS}, {CROP_SIZE}, {CROP_SIZE}, 3)")
    return Crops(images, present)


def cached_crops(path: Path, pose: np.ndarray, fps: float | None, start: float | None, end: float | None,
                 cache_dir: str | Path | None = None) -> Crops:
    """A video clip's crops from the cache, or cut now (no MediaPipe: from `pose`, its cached landmarks) and
    cached. An entry that is damaged or does not match the pose's length is recomputed, not trusted."""
    target = crops_path(cache_key(path, fps, start, end), cache_dir)
    if target.exists():
        try:
            crops = read_crops(target)
            if len(crops.present) == len(pose):
                return crops
        except InputError:
            pass
        target.unlink(missing_ok=True)
    crops = video_crops(path, pose, fps, start, end)
    save_crops(target, crops)
    return crops


def save_crops(target: Path, crops: Crops) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp.npz")  # atomic: an interrupted run leaves no half entry
    np.savez(tmp, images=crops.images, present=crops.present)
    tmp.replace(target)
