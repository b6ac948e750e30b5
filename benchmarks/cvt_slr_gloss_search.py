"""Search by gloss with a better reading (issue 17): `query --gloss` R@1 / R@5 when the index's clips are
read by a CVT-SLR recogniser instead of the retrieval model's CTC side head.

    .venv/bin/python benchmarks/cvt_slr_gloss_search.py --index /work/newdemo/index \
        --clips /work/newdemo/corpus/manifest.jsonl --manifest /work/newdemo/corpus/test.jsonl \
        --recognizer runs/cvt_ablation/5

Every clip of the index is read again (greedy, as the index stores its readings) by the recogniser; the
searcher's stored readings are swapped for these in memory (the index on disk is not touched) and each
test clip is searched for with its gold glosses over the whole index, as benchmarks/gloss_search.py.
"""
import argparse
import json
import time

import numpy as np

from slsearch.data.manifest import read_manifest
from slsearch.index.search import Searcher
from slsearch.recognition import load_gloss_reader, recognize_clips

p = argparse.ArgumentParser()
p.add_argument("--index", required=True)
p.add_argument("--clips", required=True, help="manifest listing the index's clips (their pose files)")
p.add_argument("--manifest", required=True, help="the queries: clips with gold glosses")
p.add_argument("--recognizer", required=True)
p.add_argument("--beam", type=int, default=1)
p.add_argument("--k", type=int, default=5)
a = p.parse_args()

s = Searcher(a.index)
labels = s.clips.labels
row_of = {label[0]: r for r, label in enumerate(labels)}
texts = [label[2] for label in labels]
by_id = {c.id: c for c in read_manifest(a.clips)}
missing = [label[0] for label in labels if label[0] not in by_id]
if missing:
    raise SystemExit(f"{len(missing)} index clips are not in {a.clips}, e.g. {missing[0]}")
t0 = time.perf_counter()
net = load_gloss_reader(a.recognizer)
recs, failures = recognize_clips(net, [by_id[label[0]] for label in labels], beam=a.beam, batch_size=64)
read_seconds = time.perf_counter() - t0
new = np.array(s.readings, dtype=object)
for r in recs:
    new[row_of[r.id]] = r.glosses
stored = np.array(s.readings, dtype=object)
queries = [c for c in read_manifest(a.manifest) if c.gloss and c.id in row_of]
out = {"queries": len(queries), "index_clips": len(labels), "read_failures": len(failures),
       "read_seconds": round(read_seconds, 1)}
for name, readings in (("stored (retrieval CTC head, greedy)", stored), (f"CVT-SLR {a.recognizer}", new)):
    s.readings = readings
    s._gloss_scorer_memo = None
    h1 = h5 = exact = 0
    for c in queries:
        right = {row_of[c.id]} | {r for r, t in enumerate(texts) if c.text is not None and t == c.text}
        top = [row_of[h.id] for h in s.search_glosses(c.gloss, k=a.k)]
        h1 += top[0] in right
        h5 += bool(right & set(top))
        exact += readings[row_of[c.id]] == " ".join(c.gloss.upper().split())
    n = len(queries)
    out[name] = {"R@1": round(100 * h1 / n, 2), f"R@{a.k}": round(100 * h5 / n, 2),
                 "reading_equals_gold": round(100 * exact / n, 2)}
print(json.dumps(out, indent=1))
