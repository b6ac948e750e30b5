"""How close does the synthetic signer come to real MediaPipe Holistic output? Prints one table of
body proportions, detection gaps, jitter and speed for synthetic clips and for the real MediaPipe
poses in ../shared/data/pose (lengths in shoulder widths, measured in pixels, so aspect ratios
do not matter).

    .venv/bin/python benchmarks/synth_realism.py [--clips 40] [--difficulty 1.0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import warnings

import numpy as np

from slsearch.data import layout as L
from slsearch.data.poses import load_pose
from slsearch.data.synth import SynthSigner, demo_corpus
from slsearch.data.synth.signer import FRAME_ASPECT

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = ["asl_colin-SAD.pose", "asl_colin-1-HOUSE.pose", "asl_colin-2-HOUSE.pose", "asl_000017451997373907346-LIBRARY.pose",
        "asl_SbTU6uS4cc1tZpqCnE3g.pose", "asl_Ui9Nq58yYSgkJslO02za.pose", "autsl_signer0_sample1000.pose"]


def stats(pose: np.ndarray, aspect: float) -> dict[str, float]:
    """Per-clip measurements; `aspect` = frame width / height turns y into x units (pixels)."""
    p = pose.astype(np.float64).copy()
    p[..., 1] /= aspect
    sw = np.nanmedian(np.linalg.norm(p[:, 11, :2] - p[:, 12, :2], axis=-1))
    mid = (p[:, 11, :2] + p[:, 12, :2]) / 2
    face = p[:, L.FACE]
    out = {
        "shoulder width (image widths)": sw,
        "nose above shoulders": np.nanmedian(mid[:, 1] - p[:, 0, 1]) / sw,
        "ear to ear": np.nanmedian(np.linalg.norm(p[:, 7, :2] - p[:, 8, :2], axis=-1)) / sw,
        "face mesh height": np.nanmedian(np.nanmax(face[..., 1], 1) - np.nanmin(face[..., 1], 1)) / sw,
        "face z range": np.nanmedian(np.nanmax(face[..., 2], 1) - np.nanmin(face[..., 2], 1)) / sw,
        "nose z (pose)": np.nanmedian(p[:, 0, 2]) / sw,
        "frames lost": float(np.isnan(p[:, 0, 0]).mean()),
        "nose step (jitter)": np.nanmedian(np.linalg.norm(np.diff(p[:, 0, :2], axis=0), axis=-1)) / sw,
    }
    sizes, missing, speeds, zr = [], [], [], []
    for hand in (L.LEFT_HAND, L.RIGHT_HAND):
        h = p[:, hand]
        seen = np.isfinite(h[:, 0, 0])
        missing.append(1 - seen.mean())
        if seen.sum() > 2:
            sizes.append(np.nanmedian(np.linalg.norm(h[:, 9, :2] - h[:, 0, :2], axis=-1)) / sw)
            zr.append(np.nanmedian(np.nanmax(h[..., 2], 1) - np.nanmin(h[..., 2], 1)) / sw)
            step = np.linalg.norm(np.diff(h[:, 0, :2], axis=0), axis=-1) / sw
            speeds.extend(step[np.isfinite(step)])
    out["hand missing (mean of both)"] = float(np.mean(missing))
    out["hand size (wrist-knuckle)"] = float(np.mean(sizes)) if sizes else np.nan
    out["hand z range"] = float(np.mean(zr)) if zr else np.nan
    out["wrist step median"] = float(np.median(speeds)) if speeds else np.nan
    out["wrist step p90"] = float(np.percentile(speeds, 90)) if speeds else np.nan
    return out


def _dims(path: Path) -> tuple[int, int]:
    from pose_format.pose_header import PoseHeader
    from pose_format.utils.reader import BufferReader

    header = PoseHeader.read(BufferReader(path.read_bytes()))
    return header.dimensions.width, header.dimensions.height


def real_aspect(path: Path) -> float:
    w, h = _dims(path)
    return w / h


def real_width(path: Path) -> float:
    return float(_dims(path)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--difficulty", type=float, default=1.0)
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames (lost detections) in nanmedian
    synth = SynthSigner(difficulty=args.difficulty)
    rows_s = [stats(synth.sign(c.gloss, c.signer, c.id), FRAME_ASPECT) for c in demo_corpus()[: args.clips]]
    rows_r = []
    for name in REAL:
        path = SHARED / "pose" / name
        if path.exists():
            pose = load_pose(path, fps=None).data.copy()
            pose[..., 2] *= real_width(path)  # pose-format keeps MediaPipe's z as is; load_pose divides it
            rows_r.append(stats(pose, real_aspect(path)))
    print(f"| measure | synthetic (demo, {len(rows_s)} clips, difficulty {args.difficulty}) | "
          f"real MediaPipe ({len(rows_r)} .pose files) |")
    print("|---|---|---|")
    for key in rows_s[0]:
        s = np.nanmedian([r[key] for r in rows_s])
        r = np.nanmedian([r[key] for r in rows_r]) if rows_r else np.nan
        print(f"| {key} | {s:.3f} | {r:.3f} |")


if __name__ == "__main__":
    main()
