"""Memory of the training features: held in memory vs mapped from disk (train.features).

Loads a manifest's features through a fresh model's front end, as `train` does, and reports how much
anonymous memory (RssAnon: what the process owns and cannot give back) and file-backed memory (RssFile:
page cache the kernel may evict) the loading added.

    .venv/bin/python benchmarks/feature_memory.py --manifest train.jsonl --features memory|disk [--set K=V ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from slsearch.training.data import load_features, read_training_manifest
from slsearch.training.loop import build_for_recipe
from slsearch.training.recipe import load_recipe


def rss_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--recipe", default="cpu")
    ap.add_argument("--features", choices=("memory", "disk"), required=True)
    ap.add_argument("--set", action="append", default=[], help="recipe overrides, e.g. 'model.streams=[...]'")
    a = ap.parse_args()
    torch.set_num_threads(1)
    recipe = load_recipe(a.recipe, a.set)
    clips = read_training_manifest(a.manifest)
    front_end = build_for_recipe(recipe, [c.text for c in clips]).video.front_end
    with tempfile.TemporaryDirectory() as spill:
        before, t = rss_mb(), time.time()
        fs = load_features(clips, front_end, 4, a.manifest, spill_dir=spill if a.features == "disk" else None)
        seconds, after = time.time() - t, rss_mb()
        touched = sum(float(f[:, 0].astype("float32").sum()) for f in fs.features)  # read every clip once
        touched_rss = rss_mb()
    print(json.dumps({"features": a.features, "clips": len(fs), "frames": int(fs.lengths.sum()),
                      "feature_dim": int(fs.features[0].shape[1]),
                      "feature_MB": round(sum(f.nbytes for f in fs.features) / 2**20, 1),
                      "anon_MB_after_loading": round(after["RssAnon"] - before["RssAnon"], 1),
                      "file_MB_after_loading": round(after["RssFile"] - before["RssFile"], 1),
                      "file_MB_after_reading_all": round(touched_rss["RssFile"] - before["RssFile"], 1),
                      "load_seconds": round(seconds, 1), "checksum": round(touched, 1)}))


if __name__ == "__main__":
    main()
