"""A shard set ranks as one index over the same clips (issue 19): T2V, V2T, V2V and gloss search hits
and scores, and `eval` R@K, of a set against an index holding all its clips.

    slsearch index C/train.jsonl --model M --out SET --shard train --segment off
    slsearch index C/dev.jsonl C/test.jsonl --model M --out SET --shard devtest --segment off
    .venv/bin/python benchmarks/shard_parity.py --one ONE_INDEX --set SET --manifest C/test.jsonl

`--set` may name a set whose shards are served by other processes (`slsearch serve SHARD --shard-api`,
registered with `slsearch shards SET --add URL --name NAME`): the same comparison, over HTTP. `--skip-eval`
leaves out the R@K comparison (eval needs the shard folders).

Gloss hits are compared by their scores (equal scores are ordered by index row, and rows are numbered
shard after shard in a set); the rest by (id or sentence, score rounded to 1e-4).
"""
import argparse
import json
import time

from slsearch.data.manifest import read_manifest
from slsearch.eval.retrieval import evaluate_index
from slsearch.index.search import Searcher

p = argparse.ArgumentParser()
p.add_argument("--one", required=True, help="an index over every clip")
p.add_argument("--set", required=True, help="a shard set over the same clips")
p.add_argument("--manifest", required=True, help="queries: its sentences, clips and glosses")
p.add_argument("--queries", type=int, default=100)
p.add_argument("--k", type=int, default=10)
p.add_argument("--skip-eval", action="store_true")
a = p.parse_args()

one = Searcher(a.one)
shards = Searcher(a.set, model=one.model)  # the model loaded once
clips = [c for c in read_manifest(a.manifest)][:a.queries]
report = {"clips": [len(one), len(shards)], "shards": len(shards.shards), "queries": len(clips)}


def same(f, items):
    equal, ms = 0, {"one": 0.0, "set": 0.0}
    for x in items:
        out = []
        for name, s in (("one", one), ("set", shards)):
            t0 = time.perf_counter()
            out.append(f(s, x))
            ms[name] += 1000 * (time.perf_counter() - t0)
        equal += out[0] == out[1]
    return {"identical": equal, "of": len(items), **{f"ms_{n}": round(v / max(len(items), 1), 2) for n, v in ms.items()}}


report["t2v"] = same(lambda s, c: [(h.id, round(h.score, 4)) for h in s.search_text(c.text, k=a.k)], clips)
report["v2t"] = same(lambda s, c: [(h.text, round(h.score, 4)) for h in s.search_video(c.path, k=a.k)], clips[:40])
report["v2v"] = same(lambda s, c: [(h.id, round(h.score, 4)) for h in s.search_video(c.path, k=a.k, target="clips")],
                     clips[:20])
if one.readings is not None:
    report["g2v_scores"] = same(lambda s, c: [round(h.score, 4) for h in s.search_glosses(c.gloss, k=a.k)],
                                [c for c in clips if c.gloss])
if not a.skip_eval:
    whole, sharded = evaluate_index(a.one)["metrics"], evaluate_index(a.set)["metrics"]
    report["eval_identical"] = whole == sharded
    report["eval_set"] = {k: round(v, 2) for k, v in sharded.items() if "R@1" in k}
print(json.dumps(report))
