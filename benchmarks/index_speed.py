"""Index and search speed at 10k / 100k / 1M clips on synthetic vectors of the real dimensions.

For each corpus size: the automatically chosen index (choose_index) and an exact FAISS Flat index are
built; we report build time (train + add + recall tuning), size in memory and on disk, p50/p99 latency
of single queries and per query in batches of 100, recall@10 against the exact top-10, and the same
queries through a plain NumPy exact search (matrix product + argpartition) as the baseline.
Then T2V end to end through the real `Searcher` on a real index folder (vectors.faiss, meta.parquet,
memory-mapped tokens.f16.npy): text encoding with a default-size model (untrained weights: speed
only) + FAISS top-100 + CiCo re-rank of the 100 candidates' token states.

Synthetic data: real embeddings have a low intrinsic dimension and cluster (uniform random vectors
are the worst case for any ANN index, where IVF must scan nearly every list). Here a latent of
LATENT_DIM dims drawn from a mixture of N_CLUSTERS Gaussians is projected to the model's dimension,
with isotropic noise on top; queries are fresh draws of the same process (held out from the corpus).
The mix is deliberately loose: the 10th neighbour's cosine is ~0.6, top-1 ~0.67, and IVF needs tens
of lists for 0.95 recall. Token counts per clip follow PHOENIX-2014T train clip lengths (T/4 tokens)
when ../shared/data is present, else 8..60 uniform.

Threads: every stage runs single-threaded (torch, FAISS, NumPy's BLAS), as the Searcher does by
default: on this shared 2-core machine two threads per query were 10-100x slower (spin-waiting).

    .venv/bin/python benchmarks/index_speed.py --sizes 10000,100000,1000000 --out /tmp/slsearch-bench
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads BLAS
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

import faiss  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from slsearch.index import faiss_index  # noqa: E402
from slsearch.index.choose import choose_index, spec_for_type  # noqa: E402
from slsearch.index.store import CLIP_SCHEMA, Collection, IndexWriter  # noqa: E402
from slsearch.models.model import ModelConfig  # noqa: E402

LATENT_DIM = 32  # intrinsic dimension of the synthetic embeddings
N_CLUSTERS = 1000  # Gaussian clusters in the latent space (centres ~ N(0, I))
CLUSTER_SPREAD = 1.0  # std of points around their centre, in latent units
AMBIENT_NOISE = 0.5  # std of isotropic noise added after projection (per latent-unit scale)


class SyntheticEmbeddings:
    def __init__(self, dim: int, rng: np.random.Generator):
        self.rng = rng
        self.proj = (rng.standard_normal((LATENT_DIM, dim)) / np.sqrt(LATENT_DIM)).astype(np.float32)
        self.centres = rng.standard_normal((N_CLUSTERS, LATENT_DIM)).astype(np.float32)

    def sample(self, n: int) -> np.ndarray:
        """(n, dim) float32 unit vectors, generated in chunks (1M x 256 is 1 GiB)."""
        dim = self.proj.shape[1]
        x = np.empty((n, dim), np.float32)
        for s in range(0, n, 100_000):
            m = min(100_000, n - s)
            z = self.centres[self.rng.integers(0, N_CLUSTERS, m)]
            z = z + CLUSTER_SPREAD * self.rng.standard_normal((m, LATENT_DIM), dtype=np.float32)
            x[s:s + m] = z @ self.proj + AMBIENT_NOISE * self.rng.standard_normal((m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def token_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    frames = []
    path = SHARED / "phoenix14t" / "train.jsonl"
    if path.exists():
        frames = [json.loads(line)["num_frames"] for line in path.read_text().splitlines() if line.strip()]
    if frames:
        t = rng.choice(np.asarray(frames), n)
        return np.ceil(np.ceil(t / 2) / 2).astype(np.int64)  # the video tower's two stride-2 pools
    return rng.integers(8, 61, n)


def query_texts(n: int) -> list[str]:
    path = SHARED / "phoenix14t" / "test.jsonl"
    if path.exists():
        texts = [json.loads(line)["text_de"] for line in path.read_text().splitlines() if line.strip()]
    else:
        texts = [f"am {d} regen im norden und sonne im sueden" for d in ("montag", "dienstag", "mittwoch")]
    return [texts[i % len(texts)] for i in range(n)]


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def time_single(fn, queries: np.ndarray) -> list[float]:
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q[None])
        out.append((time.perf_counter() - t0) * 1000)
    return out


def time_batched(fn, queries: np.ndarray, batch: int) -> list[float]:
    """Milliseconds per query, one value per batch."""
    out = []
    for s in range(0, len(queries), batch):
        q = queries[s:s + batch]
        t0 = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t0) * 1000 / len(q))
    return out


def numpy_exact(x: np.ndarray, q: np.ndarray, k: int = 10) -> np.ndarray:
    s = q @ x.T  # (Q, N)
    top = np.argpartition(-s, k, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), axis=1), 1)


def index_bytes(index) -> int:
    return int(faiss.serialize_index(index).nbytes)


def bench_index(kind: str, x: np.ndarray, q: np.ndarray, truth: np.ndarray, folder: Path, n_single: int):
    spec = choose_index(len(x), x.shape[1])[0] if kind == "auto" else spec_for_type(kind, len(x), x.shape[1])
    ids = np.arange(len(x))
    t0 = time.perf_counter()
    index = faiss_index.build(spec, x, ids)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    tuning = faiss_index.tune(index, spec, x, ids, n_queries=200 if len(x) >= 500_000 else 500)
    t_tune = time.perf_counter() - t0
    path = folder / f"{spec.kind}.faiss"
    faiss_index.write(index, path)
    search = lambda qq: faiss_index.search(index, qq, 10)  # noqa: E731
    single = time_single(search, q[:n_single])
    batched = time_batched(search, q, 100)
    found = faiss_index.search(index, q, 10)[1]
    row = {"index": spec.factory, "params": tuning["params"], "build_s": round(t_build, 2),
           "tune_s": round(t_tune, 2), "tune_recall": tuning["recall_at_10"],
           "memory_mb": round(index_bytes(index) / 2**20, 1), "disk_mb": round(path.stat().st_size / 2**20, 1),
           "single_p50_ms": percentiles(single)[0], "single_p99_ms": percentiles(single)[1],
           "batch100_p50_ms_per_q": percentiles(batched)[0], "batch100_p99_ms_per_q": percentiles(batched)[1],
           "recall_at_10": faiss_index.recall_at(found, truth)}
    path.unlink()
    return index, tuning["params"], row


def write_index_folder(folder: Path, index, params: dict, n: int, dim_tok: int, lengths: np.ndarray,
                       rng: np.random.Generator, model_dir: Path, model) -> None:
    """A real index folder (vectors.faiss, meta.parquet, tokens.f16.npy) around the synthetic vectors."""
    with IndexWriter(folder) as w:
        seg, tw = w.new_token_segment("clips", dim_tok)
        offsets = np.zeros(n, np.int64)
        # Token values do not matter for speed, only sizes and where they lie: 15 GB of fresh normal
        # draws at 1M clips would take longer than the rest, so rows come from a random pool at
        # random places.
        pool = rng.standard_normal((200_000, dim_tok), dtype=np.float32).astype(np.float16)
        starts = rng.integers(0, len(pool) - int(lengths.max()), n)
        for i, (L, a) in enumerate(zip(lengths.tolist(), starts.tolist())):
            offsets[i] = tw.append(pool[a:a + L])[0]
        meta = pa.table({
            "faiss_id": pa.array(np.arange(n)), "id": pa.array([f"clip{i:07d}" for i in range(n)]),
            "path": pa.array([f"synthetic/clip{i:07d}.npz" for i in range(n)]),
            "source_hash": pa.array([""] * n), "duration": pa.array(lengths * 4 / 25.0),
            "frames": pa.array(lengths * 4), "fps": pa.array(np.full(n, 25.0)),
            "text": pa.nulls(n, pa.string()), "text_id": pa.array(np.full(n, -1)),
            "split": pa.nulls(n, pa.string()), "signer": pa.nulls(n, pa.string()),
            "token_segment": pa.array(np.zeros(n, np.int32)), "token_offset": pa.array(offsets),
            "token_count": pa.array(lengths.astype(np.int32)),
            "gloss_reading": pa.nulls(n, pa.string()), "reading_prior": pa.nulls(n, pa.float32()),
            "start": pa.nulls(n, pa.float64()), "end": pa.nulls(n, pa.float64()),
        }).cast(CLIP_SCHEMA)
        info = {"index_type": "bench", "factory": "", "search_params": params, "next_id": n}
        coll = Collection(index, meta, w.token_files("clips"), info)
        w.commit({"checkpoint": {"path": str(model_dir), "hash": model.checkpoint_hash},
                  "dims": {"global": index.d, "token": dim_tok}, "history": []}, coll, None)


def bench_end_to_end(folder: Path, model, texts: list[str], n_queries: int) -> dict:
    from slsearch.encode import encode_texts
    from slsearch.index.search import Searcher
    from slsearch.rank import RetrievalModel

    t0 = time.perf_counter()
    searcher = Searcher(folder, model=RetrievalModel(model), threads=1)
    load_s = time.perf_counter() - t0
    for t in texts[-5:]:  # warm-up: first calls allocate
        searcher.search_text(t, k=10)
    # A/B, interleaved so both see the same cache state: odd queries with read hints (the default),
    # even ones without. Queries differ, so their candidates (and token rows) differ.
    real_prefetch = searcher.clips.parts[0].store.prefetch
    total, no_hint = [], []
    for i, t in enumerate(texts[:2 * n_queries]):
        searcher.clips.parts[0].store.prefetch = real_prefetch if i % 2 else (lambda *a: None)
        t0 = time.perf_counter()
        searcher.search_text(t, k=10, n_candidates=100)
        (total if i % 2 else no_hint).append((time.perf_counter() - t0) * 1000)
    searcher.clips.parts[0].store.prefetch = real_prefetch
    enc_ms, faiss_ms = [], []
    for t in texts[:n_queries]:  # the stages on their own
        t0 = time.perf_counter()
        enc = encode_texts(model, [t])
        t1 = time.perf_counter()
        faiss_index.search(searcher.clips.parts[0].index, enc.vectors, 100)
        t2 = time.perf_counter()
        enc_ms.append((t1 - t0) * 1000)
        faiss_ms.append((t2 - t1) * 1000)
    p50, p99 = percentiles(total)
    batch = texts[2 * n_queries:2 * n_queries + 100]  # not searched before: cold candidates
    t0 = time.perf_counter()
    searcher.search_text(batch, k=10)
    batched = (time.perf_counter() - t0) * 1000 / len(batch)
    return {"load_s": round(load_s, 2), "e2e_p50_ms": p50, "e2e_p99_ms": p99,
            "e2e_no_prefetch_p50_ms": percentiles(no_hint)[0], "e2e_no_prefetch_p99_ms": percentiles(no_hint)[1],
            "encode_p50_ms": percentiles(enc_ms)[0], "faiss100_p50_ms": percentiles(faiss_ms)[0],
            "rerank_p50_ms_est": p50 - percentiles(enc_ms)[0] - percentiles(faiss_ms)[0],
            "e2e_batch100_ms_per_q": batched}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--kinds", default="auto,flat", help="index kinds per size: auto (choose_index) and/or types")
    ap.add_argument("--queries", type=int, default=1000, help="held-out queries for recall and batched timing")
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    ap.add_argument("--numpy-single", type=int, default=50, help="queries timed one at a time on NumPy")
    ap.add_argument("--e2e-queries", type=int, default=200)
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--no-baseline", action="store_true", help="skip the NumPy baseline")
    ap.add_argument("--out", default="/tmp/slsearch-bench", help="scratch folder (deleted at the end)")
    ap.add_argument("--json", default=None, help="also write all results to this JSON file")
    args = ap.parse_args()

    cfg = ModelConfig()  # the real default dimensions
    dim, dim_tok = cfg.embed_dim, cfg.token_dim
    scratch = Path(args.out)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    rng = np.random.default_rng(0)
    synth = SyntheticEmbeddings(dim, rng)
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    env = {"machine": platform.machine(), "cpus": os.cpu_count(), "faiss": faiss.__version__,
           "threads": 1, "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS"),
           "gpu_faiss": faiss_index.gpu_available(), "load_avg_start": os.getloadavg(),
           "global_dim": dim, "token_dim": dim_tok}
    print(json.dumps(env), flush=True)

    model = model_dir = None
    if not args.no_e2e:
        from slsearch.models.checkpoint import save_model
        from slsearch.models.model import build_model
        from slsearch.models.tokenizer import TextTokenizer

        texts = query_texts(2000)
        model = build_model(ModelConfig(), TextTokenizer.from_corpus(texts, 4000)).eval()
        model_dir = scratch / "model"
        save_model(model, model_dir)
        queries_text = query_texts(2 * args.e2e_queries + 105)  # PHOENIX test: 642 distinct sentences

    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        t0 = time.perf_counter()
        x = synth.sample(n)
        q = synth.sample(args.queries)
        gen_s = time.perf_counter() - t0
        truth = faiss_index.exact_top(x, q, 10)
        np_single = time_single(lambda qq: numpy_exact(x, qq), q[:1 if args.no_baseline else args.numpy_single])
        np_batched = time_batched(lambda qq: numpy_exact(x, qq), q[:1 if args.no_baseline else 500], 100)
        base = {"n": n, "gen_s": round(gen_s, 1), "numpy_single_p50_ms": percentiles(np_single)[0],
                "numpy_single_p99_ms": percentiles(np_single)[1],
                "numpy_batch100_p50_ms_per_q": percentiles(np_batched)[0]}
        print(json.dumps(base), flush=True)
        auto_index = auto_params = None
        for kind in args.kinds.split(","):
            index, params, row = bench_index(kind, x, q, truth, scratch, args.single)
            row.update(n=n, kind=kind, speedup_vs_numpy_single=base["numpy_single_p50_ms"] / row["single_p50_ms"],
                       load_avg=os.getloadavg()[0])
            print(json.dumps(row), flush=True)
            results.append({**base, **row})
            if kind == "auto":
                auto_index, auto_params = index, params
            else:
                del index
        if model is not None and auto_index is not None:
            folder = scratch / f"idx{n}"
            t0 = time.perf_counter()
            write_index_folder(folder, auto_index, auto_params, n, dim_tok, token_lengths(n, rng), rng,
                               model_dir, model)
            tokens_mb = (folder / "tokens.f16.npy").stat().st_size / 2**20
            e2e = bench_end_to_end(folder, model, queries_text, args.e2e_queries)
            e2e.update(n=n, kind="e2e", folder_write_s=round(time.perf_counter() - t0, 1),
                       tokens_mb=round(tokens_mb), load_avg=os.getloadavg()[0])
            print(json.dumps(e2e), flush=True)
            results.append(e2e)
            shutil.rmtree(folder.parent / f".{folder.name}.v1", ignore_errors=True)
            folder.unlink()
        del x, auto_index
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "results": results}, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    print_tables(results)


def print_tables(results: list[dict]) -> None:
    print("\n| clips | index | params | build s (+tune s) | memory MB | disk MB | single p50 / p99 ms | "
          "batch-100 ms/query p50 | recall@10 | NumPy single p50 ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r.get("kind") == "e2e":
            continue
        print(f"| {r['n']:,} | {r['index']} | {r['params'] or '-'} | {r['build_s']:.1f} (+{r['tune_s']:.1f}) | "
              f"{r['memory_mb']:.0f} | {r['disk_mb']:.0f} | {r['single_p50_ms']:.2f} / {r['single_p99_ms']:.2f} | "
              f"{r['batch100_p50_ms_per_q']:.3f} | {r['recall_at_10']:.3f} | {r['numpy_single_p50_ms']:.1f} | "
              f"{r['speedup_vs_numpy_single']:.0f}x |")
    print("\n| clips | T2V end-to-end p50 / p99 ms | without read hints p50 / p99 | text encoding p50 | "
          "FAISS top-100 p50 | re-rank (rest) | batch-100 ms/query | token store MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if r.get("kind") == "e2e":
            print(f"| {r['n']:,} | {r['e2e_p50_ms']:.1f} / {r['e2e_p99_ms']:.1f} | "
                  f"{r['e2e_no_prefetch_p50_ms']:.1f} / {r['e2e_no_prefetch_p99_ms']:.1f} | {r['encode_p50_ms']:.1f} | "
                  f"{r['faiss100_p50_ms']:.2f} | {r['rerank_p50_ms_est']:.1f} | {r['e2e_batch100_ms_per_q']:.1f} | "
                  f"{r['tokens_mb']} |")


if __name__ == "__main__":
    main()
