"""A shard set at 10M clips, simulated: memory, disk and latency of S shards of N clips (issue 19).

Builds S real slsearch index folders of N clips each and registers them in a shard set
(`slsearch.index.shards.register_shard`), then opens sets of 1, 3 and S shards with `Searcher` (each
in a fresh subprocess, so RSS is the set's alone) and measures disk, RSS after loading, load time and
T2V end to end (`Searcher.search_text(q, k=10, n_candidates=100)`, one thread) plus its stages.

What each shard holds, and what is simulated:
- global vectors: index_speed.py's generator (a 32-dim latent from a mixture of Gaussians projected to
  the model's 256 dims, noise on top: low intrinsic dimension, so IVF works), fresh draws per shard of
  one process (the set is one corpus split at random).
- the FAISS index: `--index-type auto` is what `choose_index(N, D, budget)[0]` picks under a memory
  budget per shard (default 128 MiB per 1M clips: at 1M, OPQ64,IVF2048,PQ64x8, 72 bytes a clip);
  `--index-type sq8` is choose_index's inverted lists over 8-bit scalar-quantised vectors
  (IVF2048,SQ8 at 1M: 264 bytes a clip, 2.7 GB for 10M), what the 10M run used (see
  /work/shard_scale_results.md: the auto pick took 683 s to train at 1M and its tuning cannot reach
  the recall target, so it scans every list). Either way the quantisers are trained ONCE (shard 0's
  vectors, choose_index's train_points) and cloned for every shard, and nprobe is tuned once
  (faiss_index.tune on shard 0) and used by all: shards of one distribution would train to
  statistically the same quantisers; what is measured (size, search cost) does not depend on it.
  Real shards built independently would each pay the training.
- token counts per clip: PHOENIX-2014T train clip lengths / 4 (index_speed.token_lengths).
- a COMPRESSED token store (`--tokens pq`: IVF256,PQ64 for d = 256, 65 bytes a token): the codec is
  trained once with token_codec's own training (TokenCodec.train on TRAIN_TOKENS rows of real-shaped
  float token states from the same kind of generator), a pool of POOL_ROWS rows is encoded once, and
  every clip's codes are a random run of pool rows, written straight into the segment the store reads
  (the writer's codec is set before the segment is opened, so the header, index.json's token_codec and
  the format are the ones `index --tokens pq` writes; nothing re-encodes 28M float rows per shard).
  Token values do not matter here: the re-rank's cost depends on counts and bytes, not on values.
- metadata: one meta.parquet row per clip as index_speed.py writes it (ids, paths, durations; no
  sentences, no gloss readings).
- queries: PHOENIX-2014T test sentences through a default-size model with untrained weights (speed only).

    nice -n 5 .venv/bin/python benchmarks/shard_scale.py --shards 10 --clips 1000000 --index-type sq8 \
        --codec-cache /work/shardscale_codec.faiss --out /work/shardscale --json /work/shard_scale_10x1M.json

Build and measure can be split: `--build-only --keep`, then `--reuse --keep` (shards already in --out are
kept). Each set is measured in a fresh process, killed if its heap (RssAnon) passes --rss-limit-gb.
--profile adds, per set, end to end with and without read hints and a cProfile breakdown.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads BLAS
    os.environ.setdefault(_var, "1")

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import faiss  # noqa: E402
import pyarrow as pa  # noqa: E402

from index_speed import SyntheticEmbeddings, percentiles, query_texts, token_lengths  # noqa: E402
from slsearch.index import faiss_index  # noqa: E402
from slsearch.index.choose import choose_index, format_bytes  # noqa: E402
from slsearch.index.store import CLIP_SCHEMA, Collection, IndexWriter  # noqa: E402

POOL_ROWS = 262_144  # encoded token rows the clips' codes are drawn from
TOKENS = "pq"  # the store: token_codec.NAMED["pq"] -> IVF256,PQ{d/4}
WRITE_CLIPS = 65_536  # clips per block of codes written


def vm_status(pid: str = "self") -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon (heap: what RAM really holds for the process) and RssFile (pages of mapped
    files: FAISS is read, not mapped, so here the token segments' pages, which the kernel may drop) in
    bytes, from /proc/PID/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) * 1024
    return out


def folder_bytes(folder: Path) -> dict[str, int]:
    """Bytes of every file of an index folder's current version."""
    real = Path(os.path.realpath(folder))
    return {f.name: f.stat().st_size for f in sorted(real.iterdir()) if f.is_file()}


# --- building -------------------------------------------------------------------------------------

def make_model(out: Path):
    from slsearch.models.checkpoint import save_model
    from slsearch.models.model import ModelConfig, build_model
    from slsearch.models.tokenizer import TextTokenizer

    model_dir = out / "model"
    model = build_model(ModelConfig(), TextTokenizer.from_corpus(query_texts(2000), 4000)).eval()
    if not (model_dir / "model.safetensors").exists():
        save_model(model, model_dir)
    from slsearch.models.checkpoint import WEIGHTS_FILE, file_hash
    return model_dir, file_hash(model_dir / WEIGHTS_FILE)


def train_codec(dim_tok: int, rng: np.random.Generator, log: dict, cache: Path | None):
    """The pq codec, trained once by token_codec's own training (or read back from `cache`, where an
    earlier run saved it), and a pool of encoded rows."""
    from slsearch.index.token_codec import NAMED, TRAIN_TOKENS, TokenCodec

    # token states: the same kind of generator as the global vectors (clustered, low intrinsic dim),
    # at the model's token dim, normalised per row
    synth = SyntheticEmbeddings(dim_tok, rng)
    t0 = time.perf_counter()
    if cache is not None and cache.exists():
        data = cache.read_bytes()
        codec = TokenCodec(faiss.deserialize_index(np.frombuffer(data, np.uint8).copy()), NAMED[TOKENS](dim_tok),
                           data, TRAIN_TOKENS)
        log["codec_from_cache"] = str(cache)
    else:
        codec = TokenCodec.train(NAMED[TOKENS](dim_tok), synth.sample(TRAIN_TOKENS))
        if cache is not None:
            codec.write(cache)
    log["codec_train_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    pool = codec.encode(synth.sample(POOL_ROWS))
    log["codec_pool_encode_s"] = round(time.perf_counter() - t0, 1)
    log.update(codec=codec.factory, code_size=codec.code_size, codec_trained_on=codec.trained_on)
    return codec, pool


def train_faiss(synth: SyntheticEmbeddings, n: int, budget: int, index_type: str, log: dict):
    """The FAISS spec of one shard: choose_index's pick under the budget ('auto'), 'sq8' (IVF lists as
    choose_index sizes them over 8-bit scalar-quantised vectors: D + 8 bytes a clip), or a type /
    factory string as `index --index-type` takes it."""
    from slsearch.index.choose import IVF_TRAIN_POINTS_PER_CENTROID, IndexSpec, ivf_nlist, spec_for_type

    dim = synth.proj.shape[1]
    specs = choose_index(n, dim, budget)
    log.update(choose_index_pick=specs[0].factory, choose_index_candidates=[s.factory for s in specs],
               budget_bytes=budget)
    if index_type == "auto":
        spec = specs[0]
    elif index_type == "sq8":
        nlist = ivf_nlist(n)
        spec = IndexSpec("custom", f"IVF{nlist},SQ8", "nprobe", n * (dim + 8) + nlist * 4 * dim,
                         f"{n} vectors: inverted file over 8-bit scalar-quantised vectors",
                         {"nlist": nlist, "train_points": min(n, IVF_TRAIN_POINTS_PER_CENTROID * nlist)})
    else:
        spec = spec_for_type(index_type, n, dim, budget)
    log.update(index_factory=spec.factory, index_kind=spec.kind, index_reason=spec.reason,
               index_estimated_bytes=spec.memory_bytes)
    return spec


def write_shard(folder: Path, index, params: dict, n: int, shard: int, dim_tok: int, lengths: np.ndarray,
                codec, pool: np.ndarray, rng: np.random.Generator, model_dir: Path, ckpt_hash: str,
                spec_info: dict) -> None:
    """One real index folder: vectors.faiss, meta.parquet, tokens.pq.npy + tokens.codec.faiss (format 3)."""
    with IndexWriter(folder, tokens=TOKENS) as w:
        # The codec trained once for every shard: set before the segment is opened, so the writer opens
        # the final .pq.npy segment (no float16 pending segment, no training at commit) and commit records
        # it in index.json as `index --tokens pq` does. (A private field: no public API takes a codec.)
        w._codecs["clips"] = codec
        seg, tw = w.new_token_segment("clips", dim_tok)
        assert tw.codec is codec and tw.path.name == "tokens.pq.npy", tw.path
        offsets = np.zeros(n, np.int64)
        offsets[1:] = np.cumsum(lengths)[:-1]
        starts = rng.integers(0, len(pool) - int(lengths.max()), n)
        for s in range(0, n, WRITE_CLIPS):  # codes of each clip: a random run of pool rows
            L, a = lengths[s:s + WRITE_CLIPS], starts[s:s + WRITE_CLIPS]
            within = np.arange(int(L.sum())) - np.repeat(np.cumsum(L) - L, L)
            codes = pool[np.repeat(a, L) + within]
            tw._f.write(codes.tobytes())  # the rows TokenSegmentWriter.append would write for encoded tokens
            tw.rows += len(codes)
        assert tw.rows == int(lengths.sum())
        ids = [f"s{shard:03d}clip{i:07d}" for i in range(n)]
        meta = pa.table({
            "faiss_id": pa.array(np.arange(n)), "id": pa.array(ids),
            "path": pa.array([f"synthetic/shard{shard:03d}/clip{i:07d}.npz" for i in range(n)]),
            "source_hash": pa.array([""] * n), "duration": pa.array(lengths * 4 / 25.0),
            "frames": pa.array(lengths * 4), "fps": pa.array(np.full(n, 25.0)),
            "text": pa.nulls(n, pa.string()), "text_id": pa.array(np.full(n, -1)),
            "split": pa.nulls(n, pa.string()), "signer": pa.nulls(n, pa.string()),
            "token_segment": pa.array(np.full(n, seg, np.int32)), "token_offset": pa.array(offsets),
            "token_count": pa.array(lengths.astype(np.int32)),
            "gloss_reading": pa.nulls(n, pa.string()), "reading_prior": pa.nulls(n, pa.float32()),
            "start": pa.nulls(n, pa.float64()), "end": pa.nulls(n, pa.float64()),
        })
        for f in CLIP_SCHEMA:  # columns the schema gained since (optional ones: nulls, as an older index)
            if f.name not in meta.column_names:
                meta = meta.append_column(f.name, pa.nulls(n, f.type))
        meta = meta.select(CLIP_SCHEMA.names).cast(CLIP_SCHEMA)
        del ids
        info = {"index_type": spec_info["index_kind"], "factory": spec_info["index_factory"],
                "search_params": params, "next_id": n}
        coll = Collection(index, meta, w.token_files("clips"), info)
        w.commit({"checkpoint": {"path": str(model_dir), "hash": ckpt_hash},
                  "dims": {"global": index.d, "token": dim_tok}, "history": []}, coll, None)


def build(args, out: Path, log: dict) -> list[Path]:
    from slsearch.index.shards import register_shard
    from slsearch.models.model import ModelConfig

    cfg = ModelConfig()
    dim, dim_tok, n = cfg.embed_dim, cfg.token_dim, args.clips
    rng = np.random.default_rng(0)
    synth = SyntheticEmbeddings(dim, rng)
    model_dir, ckpt_hash = make_model(out)
    log["checkpoint_hash"] = ckpt_hash
    budget = args.max_memory if args.max_memory else int(128 * 2**20 * n / 1_000_000)
    spec = train_faiss(synth, n, budget, args.index_type, log)
    print(json.dumps({k: log[k] for k in ("index_factory", "choose_index_pick", "choose_index_candidates",
                                          "budget_bytes")}), flush=True)
    codec, pool = train_codec(dim_tok, np.random.default_rng(1), log,
                              Path(args.codec_cache) if args.codec_cache else None)
    print(json.dumps({k: log[k] for k in ("codec", "code_size", "codec_train_s", "codec_pool_encode_s")}), flush=True)
    set_dir = out / f"set{args.shards}"
    template = params = None
    shards = []
    log["shard_builds"] = []
    for s in range(args.shards):
        name = f"s{s:03d}"
        folder = set_dir / name
        shards.append(folder)
        if (folder / "index.json").exists():  # --reuse: built by an earlier run (same seeds, same model)
            register_shard(set_dir, name, folder)
            continue
        t0 = time.perf_counter()
        if template is None:
            print(json.dumps({"training": spec.factory, "at": time.strftime("%H:%M:%S")}), flush=True)
        x = synth.sample(n)
        gen_s = time.perf_counter() - t0
        train_s = tune_s = 0.0
        if template is None:
            t1 = time.perf_counter()
            log["faiss_train_points"] = min(n, spec.build_params.get("train_points", n))
            trained = faiss_index.new_index(spec, dim)  # faiss_index.build's training, without the add
            n_train = min(n, spec.build_params.get("train_points", n))
            trained.train(x[np.random.default_rng(0).choice(n, n_train, replace=False)])
            template = faiss.serialize_index(trained)  # trained, empty
            train_s = time.perf_counter() - t1
        index = faiss.deserialize_index(template)
        t1 = time.perf_counter()
        faiss_index.add(index, x, np.arange(n))
        add_s = time.perf_counter() - t1
        if params is None:
            t1 = time.perf_counter()
            tuning = faiss_index.tune(index, spec, x, np.arange(n), n_queries=200 if n >= 500_000 else 500)
            tune_s = time.perf_counter() - t1
            params = tuning["params"]
            log["tuning"] = tuning
            print(json.dumps({"tuning": {k: tuning[k] for k in ("params", "recall_at_10", "reached", "measured")}}),
                  flush=True)
        faiss_index.set_search_params(index, params)
        del x
        t1 = time.perf_counter()
        write_shard(folder, index, params, n, s, dim_tok, token_lengths(n, rng), codec, pool, rng, model_dir,
                    ckpt_hash, log)
        write_s = time.perf_counter() - t1
        del index
        register_shard(set_dir, name, folder)
        row = {"shard": name, "gen_s": round(gen_s, 1), "faiss_train_s": round(train_s, 1),
               "faiss_add_s": round(add_s, 1), "tune_s": round(tune_s, 1), "write_s": round(write_s, 1),
               "total_s": round(time.perf_counter() - t0, 1), "bytes": folder_bytes(folder),
               "load_avg": os.getloadavg()[0]}
        log["shard_builds"].append(row)
        print(json.dumps(row), flush=True)
    log["model_dir"] = str(model_dir)
    return shards


def subset(out: Path, shards: list[Path], k: int) -> Path:
    """A set of the first k shards (their folders registered by absolute path)."""
    from slsearch.index.shards import register_shard

    if k == len(shards):
        return shards[0].parent
    set_dir = out / f"first{k}"
    shutil.rmtree(set_dir, ignore_errors=True)
    for folder in shards[:k]:
        register_shard(set_dir, folder.name, folder)
    return set_dir


# --- measuring (in a subprocess: the RSS is the set's alone) ---------------------------------------

PROFILED = {  # where a query's time goes (cProfile): name -> (file the function is in, function); its cumtime
    "faiss_search": ("faiss_index.py", "search"),
    "read_hints": ("store.py", "prefetch"),
    "read_hints_fadvise_syscalls": ("~", "<built-in method posix.posix_fadvise>"),
    "token_decode": ("token_codec.py", "decode"),
    "tokens_gather_and_decode": ("search.py", "tokens"),
    "candidates_stage": ("search.py", "_candidates"),
    "text_encoding": ("encode.py", "encode_texts"),
    "cico": ("cico.py", "cico_one_to_many"),
    "search_text": ("search.py", "search_text"),
}


def profile_queries(searcher, texts: list[str]) -> dict:
    """ms per query spent in PROFILED's functions over these queries (cProfile's own overhead included)."""
    import cProfile
    import pstats

    pr = cProfile.Profile()
    pr.enable()
    for t in texts:
        searcher.search_text(t, k=10, n_candidates=100)
    pr.disable()
    stats = pstats.Stats(pr).stats  # (file, line, function) -> (calls, primitive calls, tottime, cumtime, callers)
    out = {}
    for key, (file, func) in PROFILED.items():
        cum = [v[3] for (f, _, name), v in stats.items() if name == func and f.endswith(file)]
        out[key] = max(cum, default=0.0) * 1000 / len(texts)
    return out


def measure(set_dir: Path, model_dir: Path, n_queries: int, extra: bool = False, threads: int = 1) -> dict:
    import torch

    from slsearch.encode import encode_texts
    from slsearch.index.search import Searcher
    from slsearch.rank import load_retrieval_model

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    texts = query_texts(n_queries + 10)  # PHOENIX-2014T test: 642 distinct sentences
    more = query_texts(642)[n_queries:n_queries + 300] if extra else []  # unseen: for the A/B and the profile
    rss_start = vm_status()["VmRSS"]
    model = load_retrieval_model(model_dir)
    encode_texts(model.net, texts[:2])
    rss_model = vm_status()["VmRSS"]
    t0 = time.perf_counter()
    searcher = Searcher(set_dir, model=model, threads=threads)  # threads > 1: shards searched at once
    load_s = time.perf_counter() - t0
    st_loaded = vm_status()
    rss_loaded = st_loaded["VmRSS"]
    for t in texts[-10:]:  # warm-up: first calls allocate
        searcher.search_text(t, k=10, n_candidates=100)
    total = []
    la_start = os.getloadavg()
    for t in texts[:n_queries]:
        t0 = time.perf_counter()
        hits = searcher.search_text(t, k=10, n_candidates=100)
        total.append((time.perf_counter() - t0) * 1000)
    assert len(hits) == 10, hits
    la_end = os.getloadavg()
    enc_ms, faiss_ms, cand_ms, faiss_per_shard, nohint_ms = [], [], [], [], []
    for t in texts[:n_queries]:  # the stages on their own (FAISS once more per query: warm lists)
        t0 = time.perf_counter()
        enc = encode_texts(model.net, [t])
        t1 = time.perf_counter()
        per = []
        for p in searcher.clips.parts:
            a = time.perf_counter()
            faiss_index.search(p.index, enc.vectors, 100)
            per.append((time.perf_counter() - a) * 1000)
        t2 = time.perf_counter()
        searcher.clips.search(enc.vectors, 100, prefetch=True)  # every shard's top-100, merged, read hints
        t3 = time.perf_counter()
        searcher.clips.search(enc.vectors, 100, prefetch=False)  # the same without the read hints
        nohint_ms.append((time.perf_counter() - t3) * 1000)
        enc_ms.append((t1 - t0) * 1000)
        faiss_ms.append(sum(per))
        faiss_per_shard.append(np.mean(per))
        cand_ms.append((t3 - t2) * 1000)
    ab = {}
    if extra and len(more) >= 300:
        # read hints A/B on sentences not searched before, interleaved (both see the same cache state):
        # odd ones with the hints (the default), even ones without
        real = [p.store.prefetch for p in searcher.clips.parts]
        hint, no_hint = [], []
        for i, t in enumerate(more[:200]):
            for p, f in zip(searcher.clips.parts, real):
                p.store.prefetch = f if i % 2 else (lambda *a: None)
            t0 = time.perf_counter()
            searcher.search_text(t, k=10, n_candidates=100)
            (hint if i % 2 else no_hint).append((time.perf_counter() - t0) * 1000)
        for p, f in zip(searcher.clips.parts, real):
            p.store.prefetch = f
        ab = {"ab_hints_p50_ms": percentiles(hint)[0], "ab_hints_p99_ms": percentiles(hint)[1],
              "ab_no_hints_p50_ms": percentiles(no_hint)[0], "ab_no_hints_p99_ms": percentiles(no_hint)[1],
              "profile_ms_per_query": profile_queries(searcher, more[200:300])}
    st = vm_status()
    p50, p99 = percentiles(total)
    return {"set": str(set_dir), "shards": len(searcher.shards), "clips": len(searcher),
            "version": searcher.version[:200], "load_s": round(load_s, 2),
            "rss_start_gb": rss_start / 2**30, "rss_model_gb": rss_model / 2**30,
            "rss_loaded_gb": rss_loaded / 2**30, "rss_index_gb": (rss_loaded - rss_model) / 2**30,
            "rss_end_gb": st["VmRSS"] / 2**30, "hwm_gb": st["VmHWM"] / 2**30,
            "anon_loaded_gb": st_loaded["RssAnon"] / 2**30, "file_loaded_gb": st_loaded["RssFile"] / 2**30,
            "anon_end_gb": st["RssAnon"] / 2**30, "file_end_gb": st["RssFile"] / 2**30,
            "queries": n_queries, "threads": threads, "t2v_p50_ms": p50, "t2v_p99_ms": p99, "t2v_mean_ms": float(np.mean(total)),
            "encode_p50_ms": percentiles(enc_ms)[0], "faiss_sum_p50_ms": percentiles(faiss_ms)[0],
            "faiss_sum_p99_ms": percentiles(faiss_ms)[1], "faiss_per_shard_p50_ms": percentiles(faiss_per_shard)[0],
            "candidates_p50_ms": percentiles(cand_ms)[0], "candidates_no_hints_p50_ms": percentiles(nohint_ms)[0],
            "rerank_rest_p50_ms_est": p50 - percentiles(enc_ms)[0] - percentiles(cand_ms)[0],
            "load_avg_start": la_start, "load_avg_end": la_end, **ab}


def run_measure(set_dir: Path, model_dir: Path, n_queries: int, rss_limit: float, extra: bool = False,
                threads: int = 1) -> dict:
    """measure() in a fresh process, killed (and reported) if its anonymous RSS (heap; not the token
    files' pages, which the kernel reclaims) passes rss_limit bytes: the machine is shared."""
    cmd = [sys.executable, __file__, "--measure", str(set_dir), "--model", str(model_dir),
           "--queries", str(n_queries), "--threads", str(threads)] + (["--profile"] if extra else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = peak_rss = 0
    killed = False
    while proc.poll() is None:
        try:
            st = vm_status(str(proc.pid))
            peak, peak_rss = max(peak, st.get("RssAnon", 0)), max(peak_rss, st.get("VmRSS", 0))
        except (OSError, ValueError):
            pass
        if peak > rss_limit:
            proc.kill()
            killed = True
            break
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    wall = round(time.perf_counter() - t0, 1)
    if killed or proc.returncode:
        sys.stderr.write(stderr[-5000:])
        return {"set": str(set_dir), "failed": f"killed at anonymous RSS {peak / 2**30:.2f} GB (RSS "
                f"{peak_rss / 2**30:.2f}; limit {rss_limit / 2**30:.1f})"
                if killed else f"exit {proc.returncode}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}",
                "watch_peak_anon_gb": peak / 2**30, "watch_peak_rss_gb": peak_rss / 2**30, "measure_wall_s": wall}
    row = json.loads(stdout.strip().splitlines()[-1])
    row["measure_wall_s"] = wall
    row["watch_peak_anon_gb"], row["watch_peak_rss_gb"] = peak / 2**30, peak_rss / 2**30
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--clips", type=int, default=1_000_000, help="clips per shard")
    ap.add_argument("--queries", type=int, default=200, help="T2V queries timed per set (after 10 warm-ups)")
    ap.add_argument("--sets", default="1,3,all", help="numbers of shards to measure as one set ('all': --shards)")
    ap.add_argument("--index-type", default="auto",
                    help="auto: choose_index's pick under the budget; sq8: IVF{nlist},SQ8; or an --index-type value")
    ap.add_argument("--codec-cache", default=None, help="save the trained token codec here / read it from here")
    ap.add_argument("--rss-limit-gb", type=float, default=10.0,
                    help="kill a measurement whose anonymous RSS passes this")
    ap.add_argument("--max-memory", type=int, default=None,
                    help="FAISS memory budget per shard, bytes (default 128 MiB per 1M clips)")
    ap.add_argument("--out", default="/work/shardscale", help="data folder (deleted at the end unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the data folder")
    ap.add_argument("--reuse", action="store_true", help="keep shards an earlier run built in --out")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--json", default=None, help="write every result to this JSON file")
    ap.add_argument("--profile", action="store_true",
                    help="also per set: end to end with / without read hints (100 + 100 unseen queries, interleaved) "
                         "and a cProfile breakdown of 100 more")
    ap.add_argument("--threads", type=int, default=1,
                    help="Searcher threads: above 1, a set's shards are searched at once (one per thread)")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: one set, in a subprocess
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.measure:
        print(json.dumps(measure(Path(args.measure), Path(args.model), args.queries, args.profile, args.threads)),
              flush=True)
        return

    out = Path(args.out)
    if not args.reuse:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    log = {"args": vars(args), "faiss": faiss.__version__, "cpus": os.cpu_count(),
           "load_avg_start": os.getloadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps(log), flush=True)
    t0 = time.perf_counter()
    shards = build(args, out, log)
    log["build_s"] = round(time.perf_counter() - t0, 1)
    per_shard = [sum(folder_bytes(f).values()) for f in shards]
    log["shard_bytes"] = per_shard
    results = []
    if not args.build_only:
        sizes = [args.shards if s == "all" else int(s) for s in args.sets.split(",")]
        for k in sorted({s for s in sizes if 0 < s <= args.shards}):
            set_dir = subset(out, shards, k)
            row = run_measure(set_dir, Path(log["model_dir"]), args.queries, args.rss_limit_gb * 2**30, args.profile,
                              args.threads)
            row.update(n_shards=k, disk_bytes=sum(per_shard[:k]), clips_per_shard=args.clips)
            results.append(row)
            print(json.dumps(row), flush=True)
            if args.json:  # partial results survive a later failure
                Path(args.json).write_text(json.dumps({"log": log, "results": results}, indent=1))
    log["load_avg_end"] = os.getloadavg()
    log["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.json:
        Path(args.json).write_text(json.dumps({"log": log, "results": results}, indent=1))
    print_table(log, results)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)


def print_table(log: dict, results: list[dict]) -> None:
    print(f"\nFAISS: {log['index_factory']} (choose_index's pick: {log['choose_index_pick']}; "
          f"budget {format_bytes(log['budget_bytes'])} a shard), nprobe {log.get('tuning', {}).get('params')}; "
          f"tokens: {log['codec']} ({log['code_size']} bytes a token)")
    print("\n| shards | clips | disk GB | RSS after load GB (index only) | RSS at end: heap + token pages GB | "
          "load s | T2V p50 / p99 ms | "
          "encode p50 ms | FAISS stage p50 ms (sum over shards) | candidates (FAISS+merge+hints) p50 ms | "
          "re-rank (rest) p50 ms | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "failed" in r:
            print(f"| {r['n_shards']} | {r['n_shards'] * r['clips_per_shard']:,} | {r['disk_bytes'] / 1e9:.2f} | "
                  f"{r['failed']} | | | | | | | | |")
            continue
        print(f"| {r['shards']} | {r['clips']:,} | {r['disk_bytes'] / 1e9:.2f} | {r['rss_loaded_gb']:.2f} "
              f"({r['rss_index_gb']:.2f}) | {r['anon_end_gb']:.2f} + {r['file_end_gb']:.2f} | {r['load_s']:.1f} | "
              f"{r['t2v_p50_ms']:.1f} / {r['t2v_p99_ms']:.1f} | "
              f"{r['encode_p50_ms']:.1f} | {r['faiss_sum_p50_ms']:.2f} | {r['candidates_p50_ms']:.2f} | "
              f"{r['rerank_rest_p50_ms_est']:.1f} | {r['load_avg_start'][0]:.1f}-{r['load_avg_end'][0]:.1f} |")


if __name__ == "__main__":
    main()
