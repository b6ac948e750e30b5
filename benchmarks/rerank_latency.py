"""Query latency of each re-ranking stage on a real index: T2V and V2T p50/p90 per query, without the
decoder-likelihood stage and with it at each of `--depths` (the same Searcher, the stage switched off or
cut to re-rank that many candidates with its fitted weights; `--v2t fast` reads V2T with the int8 decoder
even where the stage was fitted before it could, `both` times either way).

    .venv/bin/python benchmarks/rerank_latency.py --index INDEX --manifest QUERIES.jsonl [--queries 100]
        [--depths 20,10] [--v2t fitted|fast|both]

Queries are the manifest's sentences (T2V) and clips (V2T), one at a time, one thread, as `slsearch query`
answers them. Every query is timed under each setting in turn, so that the load of a shared machine falls
on all settings alike: compare the rows of one run as ratios. Prints a table and, with --json, a JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from slsearch.data.manifest import read_manifest
from slsearch.index.search import Searcher


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--manifest", required=True, help="clips (with text) to query with")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--depths", default="", help="likelihood depths to time, comma-separated (default: the "
                                                 "index model's own)")
    ap.add_argument("--v2t", choices=("fitted", "fast", "both"), default="fitted",
                    help="how V2T candidates are read: as the stage was fitted, with the int8 decoder, or both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    clips = [c for c in read_manifest(args.manifest) if c.text][: args.queries]
    searcher = Searcher(args.index)
    stage = searcher.pipeline.likelihood
    settings: dict[str, object] = {"without likelihood": None}
    if stage is not None:
        depths = [int(d) for d in args.depths.split(",") if d] or [stage.depth]
        readings = {"fitted": [stage.v2t_fast], "fast": [True], "both": [False, True]}[args.v2t]
        settings.update({f"likelihood, depth {d}, V2T {'int8' if fast else 'fp32'}": replace(stage, depth=d, v2t_fast=fast)
                         for d in depths for fast in readings})

    def use(likelihood):
        searcher.pipeline.likelihood = likelihood
        searcher.score = searcher.pipeline.resolve_score(None, searcher.readings is not None, args.index)

    times = {name: {"t2v": [], "v2t": []} for name in settings}
    for i, clip in enumerate([clips[0]] + clips):  # the first query warms up every setting, untimed
        for name, likelihood in settings.items():
            use(likelihood)
            t2v = _ms(lambda: searcher.search_text(clip.text, k=10))
            v2t = _ms(lambda: searcher.search_video(clip.path, k=10))
            if i:
                times[name]["t2v"].append(t2v)
                times[name]["v2t"].append(v2t)
    rows = {name: {f"{d}_{q}_ms": float(np.percentile(t[d], p)) for d in ("t2v", "v2t") for q, p in (("p50", 50), ("p90", 90))}
            for name, t in times.items()}
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
