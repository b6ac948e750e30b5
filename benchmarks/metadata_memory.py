"""Python heap a loaded index holds per clip for its metadata (issue 19: at 10M clips the set's metadata
took most of its 7.7 GB RSS).

Loads the model first, then the index with `Searcher` (and the server's IndexVersion, whose id lookup
is part of what a server holds) under tracemalloc, and reports the Python heap allocated by the load per
clip, plus the Arrow memory pool's bytes (the metadata tables themselves). The model's own allocations
are made before tracing starts. Bytes per clip do not depend on the index's size much: multiply by the
clip count for a large index (an extrapolation, said as such).

    .venv/bin/python benchmarks/metadata_memory.py --index INDEX [--model RUN] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--model", default=None, help="checkpoint (default: the one the index names)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import pyarrow as pa

    from slsearch.index.search import Searcher
    from slsearch.index.store import load_index
    from slsearch.rank.model import load_retrieval_model
    from slsearch.serve.state import IndexVersion

    model = load_retrieval_model(args.model or load_index(args.index).info["checkpoint"]["path"])
    Searcher(args.index, model=model)  # warm: imports, caches, lazy module state
    gc.collect()
    arrow0 = pa.total_allocated_bytes()
    tracemalloc.start()
    version = IndexVersion.load(Path(args.index), model, threads=1)
    gc.collect()
    heap, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    clips = version.clips
    out = {"index": args.index, "clips": clips, "python_heap_bytes": heap,
           "python_heap_bytes_per_clip": round(heap / clips, 1),
           "arrow_bytes_per_clip": round((pa.total_allocated_bytes() - arrow0) / clips, 1)}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
