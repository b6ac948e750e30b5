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

from slsearch.data.manifest import read_manifest
from slsearch.eval.metrics import paired_recall_at_1
from slsearch.models.lexicon import Lexicon
from slsearch.rank import RankingPipeline, load_retrieval_model
from slsearch.rank.cico import cico_matrix
from slsearch.rank.lexicon_stage import LexiconStage
from slsearch.training.dev_eval import encode_dev


def sweep(model_dir: str, train: str, dev: str, prefixes, iterations, smoothings) -> dict:
    model = load_retrieval_model(model_dir)
    if not model.reads_glosses:
        raise SystemExit(f"{model_dir}: this model has no gloss head, so no gloss readings to score")
    pairs = [(c.text, c.gloss) for c in read_manifest(train) if c.text and c.gloss]
    clips = read_manifest(dev)
    videos, texts = encode_dev(model.net, clips, [c.text for c in clips])
    cico = cico_matrix(videos.tokens, texts.tokens, model.temperature)
    rows = []
    for prefix, iters, smoothing in itertools.product(prefixes, iterations, smoothings):
        t0 = time.perf_counter()
        lex = Lexicon.train([t for t, _ in pairs], [g for _, g in pairs], prefix, iters, smoothing)
        fusion = LexiconStage(lex).fit(cico, videos.readings, texts.texts)
        model.lexicon = lex
        lexical = RankingPipeline(model).score_matrix(videos, texts, "lexical")
        rows.append({"prefix": prefix, "iterations": iters, "smoothing": smoothing,
                     "lexical_t2v_R@1": paired_recall_at_1(lexical["t2v"], "t2v"),
                     "lexical_v2t_R@1": paired_recall_at_1(lexical["v2t"], "v2t"),
                     "fused_t2v_R@1": fusion["t2v"]["dev_R@1"], "fused_v2t_R@1": fusion["v2t"]["dev_R@1"],
                     "weights": [fusion["t2v"]["weight"], fusion["v2t"]["weight"]],
                     "seconds": time.perf_counter() - t0})
    return {"model": model_dir, "checkpoint_hash": model.hash, "dev": dev, "clips": len(clips),
            "cico_t2v_R@1": paired_recall_at_1(cico, "t2v"), "cico_v2t_R@1": paired_recall_at_1(cico, "v2t"),
            "rows": rows}


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
