"""Pose-extraction throughput on the 30 real How2Sign clips: 1 and 2 workers, and a cached re-run.

    .venv/bin/python benchmarks/extraction.py [--clips DIR] [--workers 1,2] [--json OUT]

Reports frames per second and the real-time factor (video seconds / wall seconds) for each
worker count on an empty cache, then the speed-up of a second, fully cached run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from slsearch.data.extract import extract_many
from slsearch.data.manifest import scan_folder
from slsearch.data.video import probe

DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "shared/data/how2sign/clips"


def run(clips_dir: Path, worker_counts: list[int], fps: float) -> dict:
    clips = scan_folder(clips_dir)
    video_seconds = sum(probe(c.path).duration for c in clips)
    rows = []
    cache = Path(tempfile.mkdtemp(prefix="slsearch-bench-"))
    try:
        for w in worker_counts:
            shutil.rmtree(cache, ignore_errors=True)
            t0 = time.perf_counter()
            res = extract_many(clips, workers=w, fps=fps, cache_dir=cache)
            wall = time.perf_counter() - t0
            frames = sum(r.frames for r in res)
            failed = [r.error for r in res if r.error]
            rows.append({"run": f"{w} worker{'s' if w > 1 else ''}, empty cache", "workers": w, "frames": frames,
                         "wall_s": round(wall, 2), "frames_per_s": round(frames / wall, 1),
                         "real_time_factor": round(video_seconds / wall, 2), "failed": len(failed)})
        cold = rows[-1]["wall_s"]
        t0 = time.perf_counter()
        res = extract_many(clips, workers=worker_counts[-1], fps=fps, cache_dir=cache)
        wall = time.perf_counter() - t0
        assert all(r.cached for r in res), "second run was not fully cached"
        frames = sum(r.frames for r in res)
        rows.append({"run": f"{worker_counts[-1]} workers, cached", "workers": worker_counts[-1], "frames": frames,
                     "wall_s": round(wall, 2), "frames_per_s": round(frames / wall, 1),
                     "real_time_factor": round(video_seconds / wall, 2), "failed": 0,
                     "speedup_vs_cold": round(cold / wall, 1)})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"clips": len(clips), "video_seconds": round(video_seconds, 2), "fps": fps,
            "cpu_count": os.cpu_count(), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not args.clips.is_dir():
        raise SystemExit(f"{args.clips}: not found (the How2Sign clips live in ../shared/data)")
    result = run(args.clips, [int(w) for w in args.workers.split(",")], args.fps)
    table = Table(title=f"Pose extraction: {result['clips']} How2Sign clips, {result['video_seconds']} s of video")
    for col in ("run", "frames", "wall_s", "frames_per_s", "real_time_factor", "speedup_vs_cold", "failed"):
        table.add_column(col)
    for r in result["rows"]:
        table.add_row(*(str(r.get(c, "")) for c in ("run", "frames", "wall_s", "frames_per_s", "real_time_factor",
                                                     "speedup_vs_cold", "failed")))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
