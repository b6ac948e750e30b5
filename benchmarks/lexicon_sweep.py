"""Gloss-lexicon settings on a dev set: R@1 of the lexicon alone and fused with a checkpoint's CiCo score.

    .venv/bin/python benchmarks/lexicon_sweep.py --model runs/NAME --train train.jsonl --dev dev.jsonl \
        [--prefix 0,5] [--iterations 5,10] [--smoothing 0,0.1]

The checkpoint encodes the dev clips and sentences once (CiCo matrix, greedy gloss readings); each
setting then learns a lexicon on the training manifest's sentence/gloss pairs, picks its fusion
weights on dev (as `slsearch train` does) and reports paired R@1 (paper protocol). Settings are for
choosing on dev; the test set is for the one final number.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from slsearch import encode_texts, encode_videos, load_model
from slsearch.data.manifest import read_manifest
from slsearch.models.lexicon import Lexicon
from slsearch.training.dev_eval import cico_matrix


def r1(scores: np.ndarray, direction: str) -> float:
    n = len(scores)
    best = scores.argmax(0) if direction == "t2v" else scores.argmax(1)
    return float((best == np.arange(n)).mean() * 100)


def sweep(model_dir: str, train: str, dev: str, prefixes, iterations, smoothings) -> dict:
    model = load_model(model_dir)
    if model.video.gloss_head is None:
        raise SystemExit(f"{model_dir}: this model has no gloss head, so no gloss readings to score")
    pairs = [(c.text, c.gloss) for c in read_manifest(train) if c.text and c.gloss]
    clips = read_manifest(dev)
    texts = [c.text for c in clips]
    videos = encode_videos(model, clips, batch_size=64, progress=True)
    cico = cico_matrix(videos, encode_texts(model, texts), model.config.cico_temperature).numpy()
    rows = []
    for prefix, iters, smoothing in itertools.product(prefixes, iterations, smoothings):
        t0 = time.perf_counter()
        lex = Lexicon.train([t for t, _ in pairs], [g for _, g in pairs], prefix, iters, smoothing)
        fusion = lex.calibrate(cico, videos.readings, texts)
        rows.append({"prefix": prefix, "iterations": iters, "smoothing": smoothing,
                     "lexical_t2v_R@1": r1(lex.lexical_matrix(videos.readings, texts, "t2v"), "t2v"),
                     "lexical_v2t_R@1": r1(lex.lexical_matrix(videos.readings, texts, "v2t"), "v2t"),
                     "fused_t2v_R@1": fusion["t2v"]["dev_R@1"], "fused_v2t_R@1": fusion["v2t"]["dev_R@1"],
                     "weights": [fusion["t2v"]["weight"], fusion["v2t"]["weight"]],
                     "seconds": time.perf_counter() - t0})
    return {"model": model_dir, "checkpoint_hash": model.checkpoint_hash, "dev": dev, "clips": len(clips),
            "cico_t2v_R@1": r1(cico, "t2v"), "cico_v2t_R@1": r1(cico, "v2t"), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--prefix", default="0,5")
    ap.add_argument("--iterations", default="5,10")
    ap.add_argument("--smoothing", default="0,0.1")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = sweep(args.model, args.train, args.dev, [int(x) for x in args.prefix.split(",")],
                [int(x) for x in args.iterations.split(",")], [float(x) for x in args.smoothing.split(",")])
    from rich.table import Table

    from slsearch.console import console

    table = Table(title=f"{res['model']} on {res['dev']} ({res['clips']} clips): CiCo alone R@1 "
                        f"{res['cico_t2v_R@1']:.1f} / {res['cico_v2t_R@1']:.1f}")
    for col in ("prefix", "iterations", "smoothing", "lexical T2V", "lexical V2T", "fused T2V", "fused V2T",
                "weights"):
        table.add_column(col, justify="right")
    for r in res["rows"]:
        table.add_row(str(r["prefix"]), str(r["iterations"]), f"{r['smoothing']:g}", f"{r['lexical_t2v_R@1']:.1f}",
                      f"{r['lexical_v2t_R@1']:.1f}", f"{r['fused_t2v_R@1']:.1f}", f"{r['fused_v2t_R@1']:.1f}",
                      " / ".join(f"{w:g}" for w in r["weights"]))
    console.print(table)
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
