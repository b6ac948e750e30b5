"""Gloss-to-text ceiling: the joint checkpoint's decoder architecture and tokenizer, trained on the
ground-truth gloss sequences -> sentences instead of video (issue 6).

    .venv/bin/python benchmarks/gloss2text.py --checkpoint /work/runs/synphoenix_cpu \
        --train /work/synphoenix/train.jsonl --dev /work/synphoenix/dev.jsonl \
        --test /work/synphoenix/test.jsonl --threads 1 --max-minutes 30 --json g2t.json

Best epoch by dev BLEU-4 (greedy); test decoded with beam search. Prints BLEU-1..4, chrF, ROUGE-L
as a table and, with --json, every number, the per-epoch history and the settings.
"""

from __future__ import annotations

import argparse
import json
import os

from rich.table import Table

from slsearch.console import console, err_console
from slsearch.eval.gloss2text import Gloss2TextConfig, train_gloss2text


def main() -> None:
    d = Gloss2TextConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="joint run whose tokenizer and decoder shape are copied")
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--epochs", type=int, default=d.epochs)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--beam", type=int, default=d.beam)
    ap.add_argument("--max-minutes", type=float, default=d.max_minutes)
    ap.add_argument("--threads", type=int, default=d.threads, help="torch threads (other training shares the CPU)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--json", help="write every number and the settings here")
    a = ap.parse_args()
    cfg = Gloss2TextConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, beam=a.beam,
                           max_minutes=a.max_minutes, threads=a.threads, seed=a.seed)
    result = train_gloss2text(a.checkpoint, a.train, a.dev, a.test, cfg, log=err_console.print)
    result["load_average_at_end"] = os.getloadavg()

    table = Table(title=f"gloss-to-text, test ({result['n_test']} sentences, beam {cfg.beam}, "
                        f"best epoch {result['best_epoch']}/{len(result['history'])})")
    for k in result["test"]:
        table.add_column(k, justify="right")
    table.add_row(*(f"{v:.2f}" for v in result["test"].values()))
    console.print(table)
    console.print(f"training {result['train_minutes_incl_dev_eval']:.1f} min (incl. dev decoding), "
                  f"{cfg.threads} thread(s), load average at end {result['load_average_at_end'][0]:.2f}")
    for ex in result["examples"][:3]:
        console.print(f"  ref: {ex['ref']}\n  hyp: {ex['hyp']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
