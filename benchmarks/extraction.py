"""Pose-extraction throughput on the 30 real How2Sign clips: 1 and 2 workers, and a cached re-run.

    .venv/bin/python benchmarks/extraction.py [--clips DIR] [--workers 1,2] [--json OUT]
    .venv/bin/python benchmarks/extraction.py --ray [ADDRESS] [--workers 2] [--repeats 2]
    .venv/bin/python benchmarks/extraction.py --ceiling [--workers 2] [--repeats 2]

Reports frames per second and the real-time factor (video seconds / wall seconds) for each
worker count on an empty cache, then the speed-up of a second, fully cached run.
With --ray: the built-in pool and Ray actors (slsearch.distributed_ray) side by side, alternated
`--repeats` times, each run on an empty cache, with the last --workers count as processes / actors
(Ray is started or joined before the first run; actor start-up counts, as process start-up does).
With --ceiling: the built-in pool against MediaPipe's own limit on the same cores, alternated `--repeats`
times: the same clips' frames decoded beforehand in the same pinned workers, and only Holistic timed
(video seconds / (Holistic seconds summed / workers)), so a loaded machine hits both alike and the ratio
says how much of what MediaPipe allows the pipeline delivers.
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


def cold_run(clips: list, workers: int, fps: float, cache: Path, video_seconds: float, backend: str, rep: int,
             ray: str | None = None) -> dict:
    """One extraction of every clip into an empty cache (the built-in pool, or Ray actors), as a table row."""
    t0 = time.perf_counter()
    res = extract_many(clips, workers=workers, fps=fps, cache_dir=cache, ray=ray)
    wall = time.perf_counter() - t0
    assert not any(r.cached for r in res), "the cache was not empty"
    frames = sum(r.frames for r in res)
    return {"run": f"{backend}, {workers} {'actors' if ray else 'workers'}, round {rep + 1}", "backend": backend,
            "workers": workers, "frames": frames, "wall_s": round(wall, 2), "frames_per_s": round(frames / wall, 1),
            "real_time_factor": round(video_seconds / wall, 2), "failed": sum(1 for r in res if r.error)}


def holistic_only(path: str, fps: float) -> tuple[int, float]:
    """Worker body for --ceiling: decode and resample the clip first (untimed), then time Holistic alone."""
    import numpy as np

    from slsearch.data.extract import _landmarks, _tracker
    from slsearch.data import layout as L
    from slsearch.data.video import iter_frames

    frames = [np.ascontiguousarray(f) for f in iter_frames(path, fps=fps)]
    tracker = _tracker()
    t0 = time.perf_counter()
    for f in frames:
        r = tracker.process(f)
        # the pipeline's per-frame reading of the result, so only decoding differs
        np.concatenate([_landmarks(r.pose_landmarks, L.N_POSE), _landmarks(r.face_landmarks, L.N_FACE),
                        _landmarks(r.left_hand_landmarks, L.N_HAND), _landmarks(r.right_hand_landmarks, L.N_HAND)])
    return len(frames), time.perf_counter() - t0


def ceiling(clips: list, workers: int, fps: float) -> tuple[int, float]:
    """Frames and Holistic seconds summed over every clip, in `workers` processes pinned like the pool's."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from slsearch.data.extract import start_worker, worker_cores

    context = get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=start_worker,
                             initargs=(context.Value("i", 0), worker_cores(workers))) as pool:
        done = list(pool.map(holistic_only, [str(c.path) for c in clips], [fps] * len(clips)))
    return sum(n for n, _ in done), sum(s for _, s in done)


def alternate(clips_dir: Path, fps: float, repeats: int, backends: dict) -> dict:
    """`repeats` rounds of every backend in turn (a loaded machine hits each alike); `backends`: name ->
    fn(clips, empty cache folder, video seconds, round) -> table row. Rows and each backend's median."""
    clips = scan_folder(clips_dir)
    video_seconds = sum(probe(c.path).duration for c in clips)
    rows = []
    cache = Path(tempfile.mkdtemp(prefix="slsearch-bench-"))
    try:
        for rep in range(repeats):
            for run_one in backends.values():
                shutil.rmtree(cache, ignore_errors=True)
                rows.append(run_one(clips, cache, video_seconds, rep))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    median = {b: round(statistics.median(r["real_time_factor"] for r in rows if r["backend"] == b), 2)
              for b in backends}
    return {"clips": len(clips), "video_seconds": round(video_seconds, 2), "fps": fps, "cpu_count": os.cpu_count(),
            "median_real_time_factor": median, "rows": rows}


def compare_ceiling(clips_dir: Path, workers: int, fps: float, repeats: int) -> dict:
    def alone(clips, cache, video_seconds, rep):
        frames, holistic_s = ceiling(clips, workers, fps)
        ideal = holistic_s / workers  # the wall time if the cores did nothing but Holistic
        return {"run": f"MediaPipe alone, {workers} workers, round {rep + 1}", "backend": "MediaPipe alone",
                "frames": frames, "wall_s": round(ideal, 2), "frames_per_s": round(frames / ideal, 1),
                "real_time_factor": round(video_seconds / ideal, 2), "failed": 0}

    result = alternate(clips_dir, fps, repeats, {
        "built-in pool": lambda clips, cache, secs, rep: cold_run(clips, workers, fps, cache, secs, "built-in pool", rep),
        "MediaPipe alone": alone})
    median = result["median_real_time_factor"]
    result["share_of_ceiling"] = round(median["built-in pool"] / median["MediaPipe alone"], 3)
    return result


def compare_ray(clips_dir: Path, workers: int, fps: float, address: str, repeats: int) -> dict:
    from slsearch.distributed_ray import connect

    ray = connect(address)
    result = alternate(clips_dir, fps, repeats, {
        backend: (lambda clips, cache, secs, rep, backend=backend:
                  cold_run(clips, workers, fps, cache, secs, backend, rep, ray=address if backend == "ray" else None))
        for backend in ("built-in pool", "ray")})
    return {**result, "ray_cpus": ray.cluster_resources().get("CPU"), "ray_nodes": len(ray.nodes())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                    help="compare the built-in pool with Ray actors (no address: this machine's Ray, or a new one)")
    ap.add_argument("--ceiling", action="store_true",
                    help="compare the built-in pool with MediaPipe alone on pre-decoded frames (its limit)")
    ap.add_argument("--repeats", type=int, default=2, help="with --ray or --ceiling: rounds of each")
    args = ap.parse_args()
    if not args.clips.is_dir():
        raise SystemExit(f"{args.clips}: not found (the How2Sign clips live in ../shared/data)")
    counts = [int(w) for w in args.workers.split(",")]
    if args.ceiling:
        result = compare_ceiling(args.clips, counts[-1], args.fps, args.repeats)
    elif args.ray:
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
    if "share_of_ceiling" in result:
        Console().print(f"the pool delivers {result['share_of_ceiling']:.1%} of MediaPipe's own limit")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
