"""Search by gloss (`slsearch query --gloss`): R@1 / R@5 of finding a test clip from its true glosses.

    .venv/bin/python benchmarks/gloss_search.py --index /work/newdemo/index --manifest /work/newdemo/corpus/test.jsonl

For each clip of the manifest, the query is its gold gloss sequence (the manifest's `gloss` column); a hit
is right when it is that clip or a clip with the same sentence. The whole index is searched (every split).
Rows: the shipped score (the query spotted in each clip's stored gloss posteriors, plus BM25_SHARE x the
readings' score, when the index keeps posteriors), the readings' score alone (BM25 x (1 + in-order
share)), BM25 alone, and the ceiling of the readings (queries whose clip's stored reading equals the gold
glosses). `--shares 0,0.01,0.1` sweeps BM25_SHARE (tune on dev).
"""
import argparse
import json
import time

import numpy as np

from slsearch.data.manifest import read_manifest
from slsearch.index.search import Searcher, split_gloss_query

p = argparse.ArgumentParser()
p.add_argument("--index", required=True)
p.add_argument("--manifest", required=True)
p.add_argument("--k", type=int, default=5)
p.add_argument("--shares", default=None, help="comma-separated BM25_SHARE values to try beside the shipped one")
a = p.parse_args()
shares = [float(x) for x in a.shares.split(",")] if a.shares else []

s = Searcher(a.index)
vocab = s.model.net.config.glosses
texts = [label[2] for label in s.clips.labels]
row_of = {label[0]: r for r, label in enumerate(s.clips.labels)}
scorer = s._gloss_scorer()
clips = [c for c in read_manifest(a.manifest) if c.gloss and c.id in row_of]
hits = {"shipped": [0, 0], "readings (bm25 x order)": [0, 0], "bm25 only": [0, 0],
        **{f"posteriors + {x} x readings": [0, 0] for x in shares}}
posteriors = s._posteriors()
classes = {g: i + 1 for i, g in enumerate(vocab or [])}
exact_reading, unknown, t0 = 0, 0, time.perf_counter()
for c in clips:
    known, unk = split_gloss_query(c.gloss, vocab)
    unknown += bool(unk)
    exact_reading += s.readings[row_of[c.id]] == " ".join(c.gloss.upper().split())
    right = {row_of[c.id]} | {r for r, t in enumerate(texts) if c.text is not None and t == c.text}
    shipped = [row_of[h.id] for h in s.search_glosses(c.gloss, k=a.k)]
    bm25 = scorer.bm25(known)
    bm25_top = np.lexsort((np.arange(len(bm25)), -bm25))[:a.k].tolist()
    readings = scorer.scores(known)
    rows = [("shipped", shipped), ("bm25 only", bm25_top),
            ("readings (bm25 x order)", np.lexsort((np.arange(len(readings)), -readings))[:a.k].tolist())]
    if posteriors is not None and shares:
        spot = posteriors.scores([classes[g] for g in known])
        for x in shares:
            mixed = spot + x * readings
            rows.append((f"posteriors + {x} x readings", np.lexsort((np.arange(len(mixed)), -mixed))[:a.k].tolist()))
    for name, top in rows:
        hits[name][0] += top[0] in right
        hits[name][1] += bool(right & set(top))
ms = 1000 * (time.perf_counter() - t0) / max(len(clips), 1)
n = len(clips)
print(json.dumps({"queries": n, "index_clips": len(s), "posteriors_stored": posteriors is not None,
                  "queries_with_unknown_glosses": unknown,
                  "reading_equals_gold": round(100 * exact_reading / n, 2),
                  **{name: {"R@1": round(100 * h1 / n, 2), f"R@{a.k}": round(100 * h5 / n, 2)}
                     for name, (h1, h5) in hits.items()},
                  "ms_per_query_both_rows": round(ms, 2)}))
