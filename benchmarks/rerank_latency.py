"""Query latency of each re-ranking stage on a real index: T2V and V2T p50/p90 per query, with the
decoder-likelihood stage and without it (the same Searcher with the stage switched off).

    .venv/bin/python benchmarks/rerank_latency.py --index INDEX [--manifest QUERIES.jsonl] [--queries 100]

Queries are the manifest's sentences (T2V) and clips (V2T), one at a time, one thread, as
`slsearch query` answers them. Prints a table and, with --json, a JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from slsearch.data.manifest import read_manifest
from slsearch.index.search import Searcher


def _times(fn, items) -> np.ndarray:
    fn(items[0])  # warm-up
    out = []
    for it in items:
        t0 = time.perf_counter()
        fn(it)
        out.append((time.perf_counter() - t0) * 1000)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--manifest", required=True, help="clips (with text) to query with")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    clips = [c for c in read_manifest(args.manifest) if c.text][: args.queries]
    searcher = Searcher(args.index)
    stage = searcher.pipeline.likelihood
    rows = {}
    for name, likelihood in (("with likelihood", stage), ("without likelihood", None)):
        searcher.pipeline.likelihood = likelihood
        searcher.score = searcher.pipeline.resolve_score(None, searcher.readings is not None, args.index)
        t2v = _times(lambda c: searcher.search_text(c.text, k=10), clips)
        v2t = _times(lambda c: searcher.search_video(c.path, k=10), clips)
        rows[name] = {"t2v_p50_ms": float(np.percentile(t2v, 50)), "t2v_p90_ms": float(np.percentile(t2v, 90)),
                      "v2t_p50_ms": float(np.percentile(v2t, 50)), "v2t_p90_ms": float(np.percentile(v2t, 90))}
    from rich.table import Table

    from slsearch.console import console

    table = Table(title=f"query latency, {len(clips)} queries each, {len(searcher)} clips ({args.index})")
    for col in ("stages", "T2V p50 ms", "T2V p90 ms", "V2T p50 ms", "V2T p90 ms"):
        table.add_column(col)
    for name, r in rows.items():
        table.add_row(name, *[f"{r[k]:.1f}" for k in ("t2v_p50_ms", "t2v_p90_ms", "v2t_p50_ms", "v2t_p90_ms")])
    console.print(table)
    if args.json:
        print(json.dumps({"index": args.index, "queries": len(clips), "clips": len(searcher), "rows": rows}))


if __name__ == "__main__":
    main()
