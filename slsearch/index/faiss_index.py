"""FAISS over L2-normalised global vectors: build, tune, add, remove, search.

Inner product on unit vectors is the cosine similarity. Every index is built so that a vector's
FAISS id is the value we give it (`faiss_id` in the metadata; row numbers at build time), which
makes removal and later additions possible without renumbering: Flat and HNSW are wrapped in
IndexIDMap2, inverted files store ids natively.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from slsearch.errors import SlsearchError
from slsearch.index.choose import IndexSpec

TARGET_RECALL = 0.95  # of the exact top-10
# Tuning aims this much above the target: the recall of 200-500 sample queries varies by ~0.003.
TUNE_MARGIN = 0.005
RECALL_AT = 10
TUNE_QUERIES = 500  # sample of the corpus vectors used as queries while tuning
NPROBE_STEPS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048)
EF_SEARCH_STEPS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)


def gpu_available() -> bool:
    """A faiss build with GPUs (faiss-gpu) and at least one GPU visible."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise SlsearchError(f"expected a (N, D) matrix of vectors, got shape {x.shape}")
    return x


def new_index(spec: IndexSpec, dim: int) -> faiss.Index:
    """An empty index for `spec`, with ids we choose."""
    factory = spec.factory
    if "IVF" not in factory and not factory.startswith("IDMap"):
        factory = "IDMap2," + factory  # Flat / HNSW / PQ keep no ids of their own
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise SlsearchError(f"FAISS cannot build index {spec.factory!r}: {str(e).splitlines()[-1]}") from None


def build(spec: IndexSpec, vectors: np.ndarray, ids: np.ndarray, seed: int = 0) -> faiss.Index:
    """Train (on a sample, when the index needs training) and add all vectors with their ids."""
    x = _as_matrix(vectors)  # (N, D)
    index = new_index(spec, x.shape[1])
    if not index.is_trained:
        n_train = spec.build_params.get("train_points", len(x))
        sample = x if n_train >= len(x) else x[np.random.default_rng(seed).choice(len(x), n_train, replace=False)]
        index.train(sample)
    add(index, x, ids)
    return index


def add(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> None:
    index.add_with_ids(_as_matrix(vectors), np.ascontiguousarray(ids, dtype=np.int64))


def _inner(index: faiss.Index) -> faiss.Index:
    """The index under an IDMap wrapper (what holds HNSW / Flat storage)."""
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.downcast_index(index.index)
    return index


def is_graph(index: faiss.Index) -> bool:
    return isinstance(_inner(index), faiss.IndexHNSW)


def remove(index: faiss.Index, ids: np.ndarray) -> faiss.Index:
    """Drop ids; returns the index holding the rest (a graph is rebuilt from its stored vectors)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if not is_graph(index):
        index.remove_ids(faiss.IDSelectorBatch(ids))
        return index
    # HNSW cannot delete nodes: re-insert the remaining stored vectors into a fresh graph (no re-embedding)
    assert isinstance(index, faiss.IndexIDMap2)
    all_ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    keep = ~np.isin(all_ids, ids)
    vectors = index.index.reconstruct_n(0, index.ntotal)[keep]  # (N', D)
    hnsw = _inner(index)
    degree = hnsw.hnsw.nb_neighbors(1)  # M (level 0 holds 2*M)
    graph = faiss.IndexHNSWFlat(index.d, degree, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efSearch = hnsw.hnsw.efSearch
    fresh = faiss.IndexIDMap2(graph)
    fresh.own_fields = True
    graph.this.disown()  # the IDMap owns the graph now
    fresh.add_with_ids(vectors, all_ids[keep])
    return fresh


def set_search_params(index: faiss.Index, params: dict[str, Any]) -> None:
    ps = faiss.GpuParameterSpace() if hasattr(faiss, "GpuParameterSpace") and _on_gpu(index) else faiss.ParameterSpace()
    for name, value in params.items():
        ps.set_index_parameter(index, name, value)


def _on_gpu(index: faiss.Index) -> bool:
    return "Gpu" in type(index).__name__


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores (Q, k), ids (Q, k)); ids are -1 where fewer than k vectors were found."""
    q = _as_matrix(queries)
    k = min(k, max(index.ntotal, 1))
    return index.search(q, k)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 200_000) -> np.ndarray:
    """Row numbers of the exact top-k by inner product, (Q, k); chunked so memory stays bounded."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        s = queries @ vectors[start:start + chunk].T  # (Q, chunk)
        i = np.broadcast_to(np.arange(start, start + s.shape[1]), s.shape)
        s, i = np.concatenate([best_s, s], 1), np.concatenate([best_i, i], 1)
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the exact top-k that the approximate top-k contains."""
    k = truth.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


def tune(index: faiss.Index, spec: IndexSpec, vectors: np.ndarray, ids: np.ndarray,
         target: float = TARGET_RECALL, n_queries: int = TUNE_QUERIES, seed: int = 0) -> dict[str, Any]:
    """Smallest nprobe / efSearch that reaches `target` recall@10 of the exact top-10.

    Real queries are not corpus vectors, and a corpus vector used as a query flatters an index
    (HNSW most: its node already links to its neighbours; recall 0.96 on corpus vectors was 0.88
    on held-out ones in benchmarks/index_speed.py). So the queries are sampled corpus vectors moved
    off the corpus by random noise, as far as a typical nearest neighbour lies (their cosine to the
    original equals the median cosine between a corpus vector and its nearest other vector); on the
    benchmark's data their recall matched held-out queries within 0.01 for IVF and HNSW. The exact
    answer is a brute-force scan. Returns what index.json records: the chosen value, the recall and
    time per query at each step tried.
    """
    x = _as_matrix(vectors)
    ids = np.asarray(ids, dtype=np.int64)
    if spec.tune is None or len(x) < 2:
        return {"params": {}, "recall_at_10": 1.0, "measured": [], "target": target, "reached": True}
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), min(n_queries, len(x)), replace=False)]  # (Q, D)
    nearest_other = x[exact_top(x, sample, 2)[:, 1]]
    offset_cos = float(np.clip(np.median(np.sum(sample * nearest_other, 1)), 0.05, 0.9999))
    sigma = np.sqrt((1 / offset_cos**2 - 1) / x.shape[1])  # |noise| ~ sigma*sqrt(D): cos = 1/sqrt(1+sigma^2 D)
    q = sample + sigma * rng.standard_normal(sample.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = min(RECALL_AT, len(x))
    truth = ids[exact_top(x, q, k)]  # (Q, k) ids
    steps = NPROBE_STEPS if spec.tune == "nprobe" else EF_SEARCH_STEPS
    if spec.tune == "nprobe":
        nlist = faiss.extract_index_ivf(index).nlist
        steps = [s for s in steps if s <= nlist] or [nlist]
    measured = []
    chosen = None
    for value in steps:
        set_search_params(index, {spec.tune: value})
        t0 = time.perf_counter()
        _, found = search(index, q, k)
        ms = (time.perf_counter() - t0) * 1000 / len(q)
        r = recall_at(found, truth)
        measured.append({spec.tune: value, "recall_at_10": round(r, 4), "ms_per_query": round(ms, 4)})
        if r >= min(target + TUNE_MARGIN, 1.0):
            chosen = {"value": value, "recall": r}
            break
    reached = chosen is not None
    if not reached:  # best effort: the largest value tried
        chosen = {"value": steps[-1], "recall": measured[-1]["recall_at_10"]}
    set_search_params(index, {spec.tune: chosen["value"]})
    return {"params": {spec.tune: chosen["value"]}, "recall_at_10": round(chosen["recall"], 4),
            "measured": measured, "target": target, "reached": reached, "queries": len(q),
            "query_offset_cosine": round(offset_cos, 4)}


def to_search_device(index: faiss.Index, params: dict[str, Any]) -> faiss.Index:
    """Move an index to the GPU when there is one (graphs stay on the CPU); apply search params."""
    if gpu_available() and not is_graph(index):
        res = faiss.StandardGpuResources()
        try:
            gpu_index = faiss.index_cpu_to_gpu(res, 0, index)
        except RuntimeError:  # a type without a GPU version (e.g. some IDMap/PQ layouts): stay on the CPU
            gpu_index = None
        if gpu_index is not None:
            gpu_index._slsearch_gpu_res = res  # keep the resources alive as long as the index
            index = gpu_index
    if params:
        set_search_params(index, params)
    return index


def write(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def read(path: Path, mmap: bool = False) -> faiss.Index:
    flags = faiss.IO_FLAG_MMAP if mmap else 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as e:
        raise SlsearchError(f"{path}: not a readable FAISS index ({str(e).splitlines()[-1]})") from None
