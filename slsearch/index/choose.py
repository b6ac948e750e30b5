"""Which FAISS index suits a corpus: a pure function of its size, dimension and a memory budget.

As autofaiss does it: exact search while it is cheap, an inverted file (or a graph) while full vectors
fit in memory, product quantisation once they do not. The search-time knob of each choice (`nprobe`,
`efSearch`) is tuned later, at build time, on a sample of the real vectors (see `faiss_index.tune`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from slsearch.errors import SlsearchError

# Named thresholds (number of vectors).
FLAT_MAX_VECTORS = 10_000  # below this an exact scan takes < 1 ms per query: no approximation needed
FULL_VECTOR_MAX_VECTORS = 1_000_000  # up to this, IVF-Flat / HNSW over full float32 vectors
MIN_POINTS_PER_CENTROID = 39  # FAISS k-means wants >= 39 training points per list
IVF_TRAIN_POINTS_PER_CENTROID = 64  # train on at most this many points per list (k-means cost)
HNSW_M = 32  # graph degree: 32 is the usual recall/memory balance for d of a few hundred
PQ_BITS = 8
ID_BYTES = 8  # an int64 id per vector (IDMap / inverted lists)

INDEX_TYPES = ("flat", "ivf", "hnsw", "ivfpq", "opq")


@dataclass(frozen=True)
class IndexSpec:
    """One candidate index: a FAISS factory string and what goes with it."""

    kind: str  # one of INDEX_TYPES, or "custom" for a raw factory string
    factory: str  # FAISS index_factory string, inner-product metric, e.g. "IVF1024,Flat"
    tune: str | None  # search parameter tuned at build time: "nprobe", "efSearch" or None (exact)
    memory_bytes: int  # estimated RAM of the index holding n vectors
    reason: str  # why this choice, one line for index.json and the summary
    build_params: dict[str, Any] = field(default_factory=dict)  # nlist, M, pq_m, train_points

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ivf_nlist(n_vectors: int) -> int:
    """Inverted lists: a power of two near 2*sqrt(n), with enough points per list to train k-means."""
    target = 2 * math.sqrt(max(n_vectors, 1))
    nlist = 2 ** max(4, round(math.log2(target)))
    while nlist > 16 and n_vectors < MIN_POINTS_PER_CENTROID * nlist:
        nlist //= 2
    return nlist


def pq_subquantizers(dim: int, bytes_per_vector: int) -> int | None:
    """Largest number of PQ sub-quantizers (1 byte each) <= bytes_per_vector that divides dim."""
    for m in range(min(dim, bytes_per_vector), 0, -1):
        if dim % m == 0 and m <= 64 * 2:  # FAISS PQ sub-quantizers beyond 128 gain little
            return m
    return None


def _flat(n: int, dim: int) -> IndexSpec:
    return IndexSpec("flat", "Flat", None, n * (4 * dim + 2 * ID_BYTES),
                     f"{n} vectors: exact search is fast enough", {})


def _ivf(n: int, dim: int) -> IndexSpec:
    nlist = ivf_nlist(n)
    mem = n * (4 * dim + ID_BYTES) + nlist * 4 * dim
    return IndexSpec("ivf", f"IVF{nlist},Flat", "nprobe", mem,
                     f"{n} vectors fit in memory as float32: inverted file over full vectors",
                     {"nlist": nlist, "train_points": min(n, IVF_TRAIN_POINTS_PER_CENTROID * nlist)})


def _hnsw(n: int, dim: int) -> IndexSpec:
    # level 0 holds 2*M links of 4 bytes; upper levels add about 1/M of that again
    mem = n * (4 * dim + 2 * HNSW_M * 4 + HNSW_M * 4 // 2 + 2 * ID_BYTES)
    return IndexSpec("hnsw", f"HNSW{HNSW_M}", "efSearch", mem,
                     f"{n} vectors: graph index (fast single queries, slower build, removal rebuilds the graph)",
                     {"M": HNSW_M})


def _pq(n: int, dim: int, budget: int | None, opq: bool) -> IndexSpec | None:
    nlist = ivf_nlist(n)
    overhead = nlist * 4 * dim + (dim * dim * 4 if opq else 0)
    per_vector = (budget - overhead) // n - ID_BYTES if budget else dim // 4
    m = pq_subquantizers(dim, min(per_vector, dim // 2))  # at most 2 dims per byte: more buys no recall
    if not m:
        return None
    mem = n * (m + ID_BYTES) + overhead
    factory = f"OPQ{m},IVF{nlist},PQ{m}x{PQ_BITS}" if opq else f"IVF{nlist},PQ{m}x{PQ_BITS}"
    kind = "opq" if opq else "ivfpq"
    return IndexSpec(kind, factory, "nprobe", mem,
                     f"{n} vectors: compressed to {m} bytes each ({'rotated ' if opq else ''}product quantisation)",
                     {"nlist": nlist, "pq_m": m,
                      "train_points": min(n, max(IVF_TRAIN_POINTS_PER_CENTROID * nlist, 256 * 2 ** PQ_BITS))})


def spec_for_type(index_type: str, n_vectors: int, dim: int, max_memory_bytes: int | None = None) -> IndexSpec:
    """The spec for a type the user asked for (`--index-type`), or a raw FAISS factory string."""
    t = index_type.strip().lower()
    if t == "flat":
        return _flat(n_vectors, dim)
    if t in ("ivf", "ivf-flat", "ivfflat"):
        if n_vectors < MIN_POINTS_PER_CENTROID * 16:
            raise SlsearchError(f"--index-type ivf needs at least {MIN_POINTS_PER_CENTROID * 16} clips "
                                f"to train its lists; there are {n_vectors} (use flat)")
        return _ivf(n_vectors, dim)
    if t == "hnsw":
        return _hnsw(n_vectors, dim)
    if t in ("ivfpq", "ivf-pq", "opq"):
        need = max(MIN_POINTS_PER_CENTROID * 16, 256 * 2 ** PQ_BITS // 8)
        if n_vectors < need:
            raise SlsearchError(f"--index-type {t} needs at least {need} clips to train; there are {n_vectors}")
        spec = _pq(n_vectors, dim, max_memory_bytes, opq=(t == "opq"))
        if spec is None:
            raise SlsearchError(f"--index-type {t}: no product quantiser of dim {dim} fits the memory budget")
        return spec
    if any(ch in index_type for ch in ",") or index_type.startswith(("IVF", "HNSW", "PQ", "OPQ", "Flat", "IDMap")):
        tune = "efSearch" if "HNSW" in index_type and "IVF" not in index_type else (
            "nprobe" if "IVF" in index_type else None)
        return IndexSpec("custom", index_type, tune, 0, "FAISS factory string given with --index-type", {})
    raise SlsearchError(f"unknown --index-type {index_type!r} (use {', '.join(INDEX_TYPES)} or a FAISS factory string)")


def check_index_type(index_type: str) -> None:
    """Refuse an unknown --index-type before any work is done (size-dependent checks come later)."""
    spec_for_type(index_type, 10**6, 64)


def choose_index(n_vectors: int, dim: int, max_memory_bytes: int | None = None) -> list[IndexSpec]:
    """Candidate indexes for n vectors of `dim` floats within a memory budget, best first.

    Raises SlsearchError when nothing fits the budget.
    """
    if n_vectors < 0 or dim <= 0:
        raise SlsearchError(f"cannot index {n_vectors} vectors of dimension {dim}")
    if n_vectors < FLAT_MAX_VECTORS:
        candidates = [_flat(n_vectors, dim)]
    elif n_vectors <= FULL_VECTOR_MAX_VECTORS:
        # IVF first: it trains in seconds and supports removal; HNSW next (no removal without a rebuild)
        candidates = [_ivf(n_vectors, dim), _hnsw(n_vectors, dim)]
    else:
        candidates = []
    if n_vectors >= FLAT_MAX_VECTORS:
        candidates += [s for s in (_pq(n_vectors, dim, max_memory_bytes, opq=True),
                                   _pq(n_vectors, dim, max_memory_bytes, opq=False)) if s is not None]
    fitting = [s for s in candidates if max_memory_bytes is None or s.memory_bytes <= max_memory_bytes]
    if not fitting:
        smallest = min(candidates, key=lambda s: s.memory_bytes) if candidates else None
        need = f"; the smallest ({smallest.factory}) needs {format_bytes(smallest.memory_bytes)}" if smallest else ""
        raise SlsearchError(f"no index for {n_vectors} vectors of dim {dim} fits in "
                            f"{format_bytes(max_memory_bytes)}{need}")
    return fitting


def format_bytes(n: int | None) -> str:
    if n is None:
        return "unlimited"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def parse_memory(text: str | None) -> int | None:
    """'4G', '512M', '1.5GiB', '1000000' -> bytes; None stays None."""
    if text is None:
        return None
    s = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        if s and s[-1] in units:
            return int(float(s[:-1]) * units[s[-1]])
        return int(float(s))
    except ValueError:
        raise SlsearchError(f"--max-memory {text!r} is not a size (e.g. 512M, 4G)") from None
