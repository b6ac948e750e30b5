"""Where pose extraction's time goes (issue 19): decoding, colour conversion, MediaPipe, per frame.

For real How2Sign clips (1280x720, 24 fps), in one process and one thread of ours, interleaved so that the
load of a shared machine hits every variant alike:
  decode        PyAV decode + conversion to RGB at full size
  decode+scale  PyAV decode + conversion to RGB at a smaller size in one swscale pass
  holistic@W    MediaPipe Holistic (model_complexity 1) on frames W pixels wide
and, against the landmarks at full size, how far the landmarks at the smaller size land (pixels of
the 1280-wide frame, median over the points both sizes found) and how often each finds the hands.

    python benchmarks/extraction_profile.py --clips 6 --widths 1280,960,640,480
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slsearch.data import layout as L  # noqa: E402

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "how2sign" / "clips"


def frames_of(path: Path, width: int | None) -> tuple[list[np.ndarray], float]:
    import av

    t0 = time.perf_counter()
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for f in c.decode(s):
            if width is None or width >= f.width:
                out.append(f.to_ndarray(format="rgb24"))
            else:
                out.append(f.to_ndarray(format="rgb24", width=width, height=int(round(f.height * width / f.width / 2)) * 2))
    return out, time.perf_counter() - t0


def holistic_landmarks(frames: list[np.ndarray]) -> tuple[np.ndarray, float]:
    from slsearch.data.extract import _landmarks, _tracker

    tracker = _tracker()
    rows = []
    t0 = time.perf_counter()
    for f in frames:
        r = tracker.process(np.ascontiguousarray(f))
        rows.append(np.concatenate([_landmarks(r.pose_landmarks, L.N_POSE), _landmarks(r.face_landmarks, L.N_FACE),
                                    _landmarks(r.left_hand_landmarks, L.N_HAND),
                                    _landmarks(r.right_hand_landmarks, L.N_HAND)]))
    return np.stack(rows), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--widths", default="1280,960,640,480")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    paths = sorted(CLIPS.glob("*.mp4"))[: args.clips]
    t_decode = {w: 0.0 for w in widths}
    t_holistic = {w: 0.0 for w in widths}
    dist = {w: [] for w in widths}
    hands = {w: 0 for w in widths}
    n_frames = 0
    for path in paths:
        ref = None
        for w in widths:  # interleaved per clip
            frames, td = frames_of(path, w)
            lm, th = holistic_landmarks(frames)
            t_decode[w] += td
            t_holistic[w] += th
            hands[w] += int(np.isfinite(lm[:, L.LEFT_HAND, 0]).all(1).sum() + np.isfinite(lm[:, L.RIGHT_HAND, 0]).all(1).sum())
            if ref is None:
                ref = lm
                n_frames += len(frames)
            else:
                d = np.linalg.norm((lm[..., :2] - ref[..., :2]) * [1280, 720], axis=-1)
                dist[w].extend(d[np.isfinite(d)].tolist())
    print(f"{len(paths)} clips, {n_frames} frames\n")
    print("| width | decode+convert ms/frame | holistic ms/frame | total ms/frame | hands found | "
          "landmark shift vs 1280 px (median / p90) |\n|---|---|---|---|---|---|")
    out = {}
    for w in widths:
        dec, hol = 1000 * t_decode[w] / n_frames, 1000 * t_holistic[w] / n_frames
        med = float(np.median(dist[w])) if dist[w] else 0.0
        p90 = float(np.percentile(dist[w], 90)) if dist[w] else 0.0
        print(f"| {w} | {dec:.1f} | {hol:.1f} | {dec + hol:.1f} | {hands[w]} | {med:.1f} / {p90:.1f} |")
        out[w] = {"decode_ms": dec, "holistic_ms": hol, "hands": hands[w], "shift_median_px": med, "shift_p90_px": p90}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
