"""Token store: size and re-rank latency of float16 vs compressed token states (issue 19).

For each index folder given (built with `slsearch index ... --tokens fp16|pq|pq-small|FACTORY`):
bytes per token and per clip, the size projected to 1M clips (this model's dims and clip lengths, and
the default model's: d=256, 28.1 tokens a clip, the 14.4 GB fp16 store of benchmarks/RESULTS.md), and
the re-rank's token work per T2V query on one thread: gather the candidates' rows (decode them,
for a codec) and score them with the CiCo one-to-many kernel, p50/p99 over queries. The candidates
are each query's FAISS top-N of the first index (the same rows for every index); the query tokens
are the test sentences' stored text tokens of the first index (float16, exact).

    nice -n 5 .venv/bin/python benchmarks/token_store.py /work/tokbench/fp16 /work/tokbench/pq ...

Retrieval quality through each store is `slsearch eval --index DIR` (see RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np
import torch

from slsearch.index.store import load_index
from slsearch.rank.cico import cico_one_to_many

DEFAULT_DIM, DEFAULT_TOKENS_PER_CLIP = 256, 28.1  # the default model at 1M clips (RESULTS: 14.4 GB fp16)


def size_row(path: str) -> dict:
    idx = load_index(path)
    store = idx.token_store("clips")
    codec = idx.info["clips"].get("token_codec")
    rows = int(store.rows.sum())
    per_token = store.stored_bytes() / rows
    per_clip = per_token * idx.clips.column("token_count").mean()
    d = idx.info["dims"]["token"]
    # the same codec family at the default model's width: bytes a token scale with d
    per_token_default = per_token * DEFAULT_DIM / d if codec is None else (
        codec["code_size"] - (1 if codec["factory"].startswith("IVF256,") else 0)) * DEFAULT_DIM / d + \
        (1 if codec["factory"].startswith("IVF256,") else 0)
    return {"index": path, "tokens": idx.token_codec("clips"), "token_dim": d, "clips": len(idx.clips),
            "token_rows": rows, "bytes_per_token": round(per_token, 1), "bytes_per_clip": round(per_clip),
            "store_mb_on_disk": round(idx.token_store_bytes() / 2**20, 2),
            "codec_kb": round(sum((idx.path / idx.info[c]["token_codec"]["file"]).stat().st_size
                                  for c in ("clips", "texts") if (idx.info.get(c) or {}).get("token_codec")) / 1024, 1),
            "projected_1M_gb_this_model": round(per_clip * 1e6 / 1e9, 2),
            "projected_1M_gb_default_model": round(per_token_default * DEFAULT_TOKENS_PER_CLIP * 1e6 / 1e9, 2)}


def latency(paths: list[str], n_queries: int, n_candidates: int, repeats: int) -> list[dict]:
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    first = load_index(paths[0])
    split = first.clips.column("split")
    text_ids = first.clips.column("text_id")[split == "test"]
    text_rows = np.unique(first.texts.row_of_id[text_ids[text_ids >= 0]])[:n_queries]
    tstore = first.token_store("texts")
    tcols = [first.texts.column(c) for c in ("token_segment", "token_offset", "token_count")]
    queries = [tstore.gather_flat(*(c[r:r + 1] for c in tcols)) for r in text_rows]
    qvec = np.stack([first.texts.index.reconstruct(int(first.texts.column("faiss_id")[r])) for r in text_rows])
    _, ids = first.clips.index.search(qvec.astype(np.float32), n_candidates)
    cand_rows = [first.clips.row_of_id[i[i >= 0]] for i in ids]
    out = []
    for path in paths:
        idx = load_index(path)
        store = idx.token_store("clips")
        cols = [idx.clips.column(c) for c in ("token_segment", "token_offset", "token_count")]
        gather, total = [], []
        for _ in range(repeats):
            for q, rows in zip(queries, cand_rows):
                t0 = time.perf_counter()
                flat = store.gather_flat(*(c[rows] for c in cols))
                t1 = time.perf_counter()
                cico_one_to_many(q, flat, cols[2][rows])
                t2 = time.perf_counter()
                gather.append((t1 - t0) * 1e3)
                total.append((t2 - t0) * 1e3)
        out.append({"index": path, "tokens": idx.token_codec("clips"), "queries": len(queries) * repeats,
                    "candidates": n_candidates,
                    "gather_p50_ms": round(float(np.percentile(gather, 50)), 3),
                    "gather_p99_ms": round(float(np.percentile(gather, 99)), 3),
                    "rerank_tokens_p50_ms": round(float(np.percentile(total, 50)), 3),
                    "rerank_tokens_p99_ms": round(float(np.percentile(total, 99)), 3)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("indexes", nargs="+", help="index folders; the first gives candidates and queries")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for p in args.indexes:
        print(json.dumps(size_row(p)), flush=True)
    for row in latency(args.indexes, args.queries, args.candidates, args.repeats):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
