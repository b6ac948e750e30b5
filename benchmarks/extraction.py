"""Pose-extraction throughput on the 30 real How2Sign clips: 1 and 2 workers, and a cached re-run.

    .venv/bin/python benchmarks/extraction.py [--clips DIR] [--workers 1,2] [--json OUT]
    .venv/bin/python benchmarks/extraction.py --ray [ADDRESS] [--workers 2] [--repeats 2]

Reports frames per second and the real-time factor (video seconds / wall seconds) for each
worker count on an empty cache, then the speed-up of a second, fully cached run.
With --ray: the built-in pool and Ray actors (slsearch.distributed_ray) side by side, alternated
`--repeats` times, each run on an empty cache, with the last --workers count as processes / actors
(Ray is started or joined before the first run; actor start-up counts, as process start-up does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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


def compare_ray(clips_dir: Path, workers: int, fps: float, address: str, repeats: int) -> dict:
    from slsearch.distributed_ray import connect

    ray = connect(address)
    clips = scan_folder(clips_dir)
    video_seconds = sum(probe(c.path).duration for c in clips)
    rows = []
    cache = Path(tempfile.mkdtemp(prefix="slsearch-bench-"))
    try:
        for rep in range(repeats):
            for backend in ("built-in pool", "ray"):
                shutil.rmtree(cache, ignore_errors=True)
                t0 = time.perf_counter()
                res = extract_many(clips, workers=workers, fps=fps, cache_dir=cache,
                                   ray=address if backend == "ray" else None)
                wall = time.perf_counter() - t0
                assert not any(r.cached for r in res), "the cache was not empty"
                frames = sum(r.frames for r in res)
                rows.append({"run": f"{backend}, {workers} {'actors' if backend == 'ray' else 'workers'}, "
                                    f"round {rep + 1}", "backend": backend, "workers": workers, "frames": frames,
                             "wall_s": round(wall, 2), "frames_per_s": round(frames / wall, 1),
                             "real_time_factor": round(video_seconds / wall, 2),
                             "failed": sum(1 for r in res if r.error)})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    median = {b: round(statistics.median(r["real_time_factor"] for r in rows if r["backend"] == b), 2)
              for b in ("built-in pool", "ray")}
    return {"clips": len(clips), "video_seconds": round(video_seconds, 2), "fps": fps, "cpu_count": os.cpu_count(),
            "ray_cpus": ray.cluster_resources().get("CPU"), "ray_nodes": len(ray.nodes()),
            "median_real_time_factor": median, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                    help="compare the built-in pool with Ray actors (no address: this machine's Ray, or a new one)")
    ap.add_argument("--repeats", type=int, default=2, help="with --ray: rounds of built-in pool then Ray")
    args = ap.parse_args()
    if not args.clips.is_dir():
        raise SystemExit(f"{args.clips}: not found (the How2Sign clips live in ../shared/data)")
    counts = [int(w) for w in args.workers.split(",")]
    if args.ray:
        result = compare_ray(args.clips, counts[-1], args.fps, args.ray, args.repeats)
    else:
        result = run(args.clips, counts, args.fps)
    table = Table(title=f"Pose extraction: {result['clips']} How2Sign clips, {result['video_seconds']} s of video")
    for col in ("run", "frames", "wall_s", "frames_per_s", "real_time_factor", "speedup_vs_cold", "failed"):
        table.add_column(col)
    for r in result["rows"]:
        table.add_row(*(str(r.get(c, "")) for c in ("run", "frames", "wall_s", "frames_per_s", "real_time_factor",
                                                     "speedup_vs_cold", "failed")))
    Console().print(table)
    if "median_real_time_factor" in result:
        Console().print("median real-time factor: " + ", ".join(f"{b} {x}x" for b, x in
                                                                 result["median_real_time_factor"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
