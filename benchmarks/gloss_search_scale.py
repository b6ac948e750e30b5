"""Search by gloss at scale: every clip scored (as before) vs scored in the order of a bound until none left
can enter the top k (`slsearch.index.search.top_gloss_rows`, what search does now), on simulated indexes.

Each simulated clip reads ~9 glosses drawn from a Zipf-like distribution over a 1,232-gloss vocabulary
(PHOENIX-2014T's training glosses), ~3 tokens a gloss (SynPhoenix: 116 frames, 29 tokens a clip); each token
lists its 5 likeliest glosses (the reading's gloss or the blank first, four others after it at random), as
`slsearch index` stores them. Queries: the readings of random clips, or `--query-glosses N` consecutive glosses of them. Per query, one thread:
`dense` = the spotting over every clip + the readings' BM25 x order (what search did before);
`bounded` = what `Searcher.search_glosses` does now (the same top k: `same_top_k` counts the queries where
they agree); `rank_bm25` = the package's get_scores alone, for the BM25 that the readings' score used before.

    .venv/bin/python benchmarks/gloss_search_scale.py --clips 10000,100000 --queries 50 [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from slsearch.index.search import BM25_SHARE, GlossScorer, top_gloss_rows
from slsearch.rank.gloss_spotting import _HEADER, TOP_K, Posteriors

VOCABULARY = 1232


def simulate(n: int, rng: np.random.Generator) -> tuple[list[bytes], list[str]]:
    weights = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.1
    weights /= weights.sum()
    blobs, readings = [], []
    for _ in range(n):
        glosses = rng.choice(VOCABULARY, size=max(1, rng.poisson(9)), p=weights) + 1  # classes 1..C
        per_token = np.repeat(np.r_[glosses, 0], 3)[:-1]  # each gloss ~3 tokens, then a blank token
        t = len(per_token)
        ids = rng.integers(1, VOCABULARY + 1, size=(t, TOP_K))
        ids[:, 0] = np.where(per_token > 0, per_token, ids[:, 0])
        r = -np.sort(rng.exponential(3.0, size=(t, TOP_K)), axis=1)
        r[:, 0] = np.where(per_token > 0, 0.0, r[:, 0])  # the greedy label of a gloss token; blank first else
        blobs.append(_HEADER.pack(t, TOP_K) + ids.astype("<u2").tobytes() + r.astype("<f2").tobytes())
        readings.append(" ".join(f"G{g}" for g in glosses))
    return blobs, readings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default="10000,100000")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--query-glosses", type=int, default=0,
                    help="queries of this many consecutive glosses of a reading (0: the whole reading)")
    ap.add_argument("--rank-bm25", action="store_true", help="also time rank_bm25's get_scores")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for n in map(int, a.clips.split(",")):
        rng = np.random.default_rng(0)
        blobs, readings = simulate(n, rng)
        t = time.perf_counter()
        post, scorer = Posteriors(blobs), GlossScorer(readings)
        build = time.perf_counter() - t
        queries = []
        for i in rng.choice(n, a.queries, replace=False):
            glosses = readings[i].split()
            at = rng.integers(0, max(len(glosses) - a.query_glosses, 0) + 1) if a.query_glosses else 0
            queries.append(glosses[at:at + a.query_glosses] if a.query_glosses else glosses)
        times = {"dense": [], "bounded": [], "rank_bm25": []}
        same, scored = 0, []
        reference = None
        if a.rank_bm25:
            from rank_bm25 import BM25Okapi

            reference = BM25Okapi([r.split() for r in readings])
        for q in queries:
            classes = [int(g[1:]) for g in q]
            t = time.perf_counter()
            dense = post.scores(classes) + BM25_SHARE * scorer.scores(q)
            top_dense = np.lexsort((np.arange(n), -dense))[:a.k]
            times["dense"].append(time.perf_counter() - t)
            t = time.perf_counter()
            top, scores = top_gloss_rows(post, scorer, q, classes, a.k)
            times["bounded"].append(time.perf_counter() - t)
            same += top.tolist() == top_dense.tolist()
            scored.append(int(np.isfinite(scores).sum()))  # (a clip scored -inf, shorter than the query, not counted)
            if reference is not None:
                t = time.perf_counter()
                reference.get_scores(q)
                times["rank_bm25"].append(time.perf_counter() - t)
        row = {"clips": n, "query_glosses": a.query_glosses or "whole reading", "build_s": round(build, 1), "queries": len(queries), "same_top_k": int(same),
               "scored_median": int(np.median(scored))}
        for name, ts in times.items():
            if ts:
                row[f"{name}_p50_ms"] = round(1000 * float(np.median(ts)), 2)
                row[f"{name}_p99_ms"] = round(1000 * float(np.quantile(ts, 0.99)), 2)
        rows.append(row)
        if not a.json:
            print(row, flush=True)
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
