"""The demo's training quiet and beside one busy process: how much a loaded machine slows it.

    .venv/bin/python benchmarks/demo_load.py [--workdir DIR] [--epochs 4] [--limit N] [--set K=V ...]

Synthesises the demo corpus once (DIR/corpus, reused), then runs `slsearch train --recipe demo`
for a fixed number of epochs twice: alone, and with one `while True: pass` process started before
and killed after. Each run is the whole command (features, epochs, dev evaluation, lexicon and
likelihood fitting) under the CLI's own defaults. Prints JSON: both runs' wall and training
seconds, epochs, clips/s and the load average at their start, and the loaded / quiet ratios
(the target: at most 2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BUSY = "while True: pass"


def slsearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "slsearch", *args]


def corpus(workdir: Path, limit: int | None) -> Path:
    folder = workdir / "corpus"
    if not (folder / "dev.jsonl").exists():
        subprocess.run(slsearch("synth", "--corpus", "demo", "--out", str(folder), "--json",
                                *(["--limit", str(limit)] if limit else [])), check=True, stdout=subprocess.DEVNULL)
    return folder


def train_once(folder: Path, out: Path, epochs: int, overrides: list[str], busy: bool) -> dict:
    hog = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        if hog:
            time.sleep(1.0)  # let it take its core
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        done = subprocess.run(slsearch("train", "--recipe", "demo", "--manifest", str(folder / "train.jsonl"),
                                       "--dev", str(folder / "dev.jsonl"), "--out", str(out), "--no-resume", "--json",
                                       "--set", f"train.epochs={epochs}", *[a for kv in overrides for a in ("--set", kv)]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            sys.exit(f"slsearch train failed ({done.returncode}):\n{done.stderr[-3000:]}")
        wall = time.perf_counter() - t0
    finally:
        if hog:
            hog.kill()
            hog.wait()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    train_s = sum(r["epoch_seconds"] for r in log)
    clips = sum(r["clips_per_s"] * r["epoch_seconds"] for r in log)
    return {"busy_processes": int(busy), "loadavg_1min_at_start": round(load, 2), "wall_s": round(wall, 1),
            "train_s": round(train_s, 1), "epochs": len(log), "stopped": result.get("stopped"),
            "clips_per_s": round(clips / train_s, 1), "dev_R@1": [round(log[-1].get("cico_t2v_R@1", 0), 1),
                                                                  round(log[-1].get("cico_v2t_R@1", 0), 1)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/slsearch-demo-load"))
    ap.add_argument("--epochs", type=int, default=4, help="epochs per run (the demo recipe has 12)")
    ap.add_argument("--limit", type=int, default=None, help="clips per split of the synthesised corpus")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override, e.g. train.threads=2")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    folder = corpus(a.workdir, a.limit)
    runs = {name: train_once(folder, a.workdir / f"run_{name}", a.epochs, a.overrides, busy)
            for name, busy in (("quiet", False), ("loaded", True))}
    q, lo = runs["quiet"], runs["loaded"]
    print(json.dumps({
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "cpus": os.cpu_count(), "omp_wait_policy_env": os.environ.get("OMP_WAIT_POLICY"),
        "train_clips": sum(1 for _ in open(folder / "train.jsonl")), "runs": runs,
        "ratio_wall": round(lo["wall_s"] / q["wall_s"], 2), "ratio_train": round(lo["train_s"] / q["train_s"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
