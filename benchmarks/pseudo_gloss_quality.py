"""How close pseudo-glosses come to real glosses: PHOENIX-2014T's German sentences against their glosses.

For each clip, the set of its pseudo-glosses against the set of its real glosses (`gloss_clean`); both sides
upper-cased with umlauts and ß spelt out as PHOENIX's glosses do (AE, OE, UE, SS). Precision: the share of
pseudo-glosses that are glosses of their clip; recall: the share of glosses found. Each method is fitted on
the train sentences and measured on `--split`. Real sentences and real glosses (../shared/data), no model.

    .venv/bin/python benchmarks/pseudo_gloss_quality.py --split dev [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from unittest import mock

from slsearch.data import pseudo_glosses as pg

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "phoenix14t"


def spelt(word: str) -> str:
    return word.upper().replace("Ä", "AE").replace("Ö", "OE").replace("Ü", "UE").replace("ß", "SS")


def measure(glosser, rows: list[dict]) -> dict:
    tp = fp = fn = 0
    vocab: set[str] = set()
    missed: Counter = Counter()
    extra: Counter = Counter()
    for r in rows:
        found = {spelt(w) for w in glosser(r["text_de"]).split()}
        truth = {spelt(g) for g in r["gloss_clean"].split()}
        vocab |= found
        tp += len(found & truth)
        fp += len(found - truth)
        fn += len(truth - found)
        missed.update(truth - found)
        extra.update(found - truth)
    return {"precision": round(100 * tp / max(tp + fp, 1), 1), "recall": round(100 * tp / max(tp + fn, 1), 1),
            "per_clip": round((tp + fp) / len(rows), 1), "vocabulary": len(vocab),
            "most_missed": [w for w, _ in missed.most_common(12)],
            "most_extra": [w for w, _ in extra.most_common(12)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--split", default="dev")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    train = [json.loads(line)["text_de"] for line in open(Path(a.data) / "train.jsonl", encoding="utf-8")]
    rows = [json.loads(line) for line in open(Path(a.data) / f"{a.split}.jsonl", encoding="utf-8")]
    results = {}
    t = time.time()
    results["frequency (the words without the frequent short ones)"] = measure(pg.fit_pseudo_glosser(train, "frequency"), rows)
    with mock.patch.dict(pg.TAGGERS, clear=True):  # as for a language without a tagger
        results["lemmas by simplemma, without the frequent short ones"] = measure(pg.fit_pseudo_glosser(train, "lemmas", "de"), rows)
    pg._lemmas.cache_clear()
    results["lemmas of content words by HanTa (the default)"] = measure(pg.fit_pseudo_glosser(train, "lemmas"), rows)
    if a.json:
        print(json.dumps({"split": a.split, "clips": len(rows), "seconds": round(time.time() - t, 1),
                          "methods": results}, ensure_ascii=False))
        return
    print(f"PHOENIX-2014T {a.split}, {len(rows)} clips: pseudo-glosses against the real glosses")
    print(f"{'method':56s} {'precision':>9s} {'recall':>7s} {'per clip':>8s} {'vocab':>6s}")
    for name, r in results.items():
        print(f"{name:56s} {r['precision']:9.1f} {r['recall']:7.1f} {r['per_clip']:8.1f} {r['vocabulary']:6d}")
    for name, r in results.items():
        print(f"\n{name}\n  most missed: {' '.join(r['most_missed'])}\n  most extra:  {' '.join(r['most_extra'])}")


if __name__ == "__main__":
    main()
