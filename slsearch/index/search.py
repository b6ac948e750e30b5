"""`Searcher`: load an index once, answer many queries.

    query -> encode (text tower / video tower) -> FAISS top-N on global vectors
          -> the ranking cascade of slsearch.rank (CiCo, gloss lexicon, decoder likelihood) -> top k

T2V searches the clips with a sentence; V2T searches the corpus sentences with a clip; V2V
(`target="clips"`) searches clips with a clip, scoring video tokens against video tokens. This module
finds the candidates and reads their stored states; `slsearch.rank.RankingPipeline` ranks them.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.compute as pc
import torch

from slsearch.errors import InputError, SlsearchError
from slsearch.index import faiss_index
from slsearch.index.shards import is_shard_set, read_shard_set, shard_folders
from slsearch.index.store import Collection, StoredIndex, TextColumn, TokenStore, load_index
from slsearch.models.video_tower import TEMPORAL_STRIDE
from slsearch.rank import ClipSide, RankingPipeline, RetrievalModel, TextSide, load_retrieval_model
from slsearch.rank.cico import Ragged
from slsearch.rank.span import match_span

DEFAULT_CANDIDATES = 100  # FAISS top-N that the cascade re-ranks
# gloss search: the BM25 x order score's weight beside the posterior spotting score (nats); it orders
# clips the posteriors cannot tell apart (picked on the demo's dev split, benchmarks/RESULTS.md)
BM25_SHARE = 0.1
GLOSS_SCORE_STEP = 512  # gloss search: clips scored exactly at first, in the order of their bounds (doubling)
# One query is a few milliseconds of small matrix products: intra-op threads cannot speed that up,
# and on a busy machine their spin-waiting made it 100x slower (benchmarks/RESULTS.md).
DEFAULT_THREADS = 1


@contextmanager
def _threads(n: int | None):
    """Run torch and FAISS with n threads inside the block, restoring the caller's settings."""
    if not n:
        yield
        return
    import faiss

    old_torch, old_faiss = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        faiss.omp_set_num_threads(old_faiss)


@dataclass
class SearchHit:
    rank: int  # 1-based
    score: float  # the cascade's score (slsearch.rank); the cosine of global vectors with rerank=False
    id: str  # clip id; for sentence results, the first clip that carries the sentence
    path: str | None
    text: str | None
    glosses: str | None = None  # a clip result's gloss reading (models with a gloss head), why it matched
    # T2V hits: (start, end) seconds in the media file where the query matched best (slsearch.rank.span);
    # None for V2T / V2V / gloss hits
    span: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Part:
    """One collection of one index (a shard): its FAISS index on the search device, its metadata and its
    token store. slsearch.index.remote.RemotePart answers the same for a shard served by another process."""

    def __init__(self, coll: Collection, store: TokenStore, where: str | Path):
        self.coll, self.store, self.where = coll, store, where
        self.index = faiss_index.to_search_device(coll.index, coll.info.get("search_params") or {})
        self.segment = coll.column("token_segment")
        self.offset = coll.column("token_offset")
        self.count = coll.column("token_count")
        self.dim = store.dim

    def __len__(self) -> int:
        return len(self.coll)

    def column(self, name: str) -> np.ndarray:
        return self.coll.column(name)

    def meta_rows(self, rows: np.ndarray) -> list[dict[str, Any]]:
        return self.coll.meta.take(rows).to_pylist()

    def info(self, key: str) -> Any:
        return self.coll.info.get(key)

    def search(self, q_vectors: np.ndarray, m: int, prefetch: bool) -> tuple[np.ndarray, np.ndarray]:
        """(scores (Q, m), rows (Q, m), -1 where FAISS found fewer) of each query's top m."""
        scores, ids = faiss_index.search(self.index, q_vectors, m)
        rows = self.coll.row_of_id[ids]
        if (rows[ids >= 0] < 0).any():  # an id the metadata lacks: never another row
            raise InputError(self.where, "the FAISS index returned ids that its metadata lacks; the index is "
                                         "damaged, rebuild it")
        rows = np.where(ids >= 0, rows, -1)
        if prefetch:  # start the token reads of every query's candidates before the first is needed
            self.prefetch(rows[rows >= 0])
        return scores, rows

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(token states stacked (sum L, d), counts) of these rows, in order."""
        counts = self.count[rows]
        return self.store.gather_flat(self.segment[rows], self.offset[rows], counts), counts

    def prefetch(self, rows: np.ndarray) -> None:
        self.store.prefetch(self.segment[rows], self.offset[rows], self.count[rows])


class _Target:
    """One searchable collection, ready for queries: the clips (or sentences) of one index, or of every
    shard of a set, numbered globally shard after shard, with their display columns.

    `searchable`: per global row, whether FAISS hits on it count; a set leaves out the second copy of a
    sentence that two shards hold (the same sentence under one model: the same vectors and tokens)."""

    def __init__(self, parts: list[_Part], searchable: np.ndarray | None = None):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
        self.labels: _Labels | None = None  # per global row: (id, path, text, gloss reading)
        self.searchable = searchable
        self._columns: dict[str, np.ndarray | TextColumn] = {}
        self.workers = 1  # threads that search local parts at once (Searcher(threads=N) on a shard set)
        self._pool = None  # (its size, the ThreadPoolExecutor), made at the first query that needs it

    def __len__(self) -> int:
        return int(self.starts[-1])

    def column(self, name: str) -> np.ndarray | TextColumn:
        """A metadata column over every part, in global row order (strings stay in Arrow: TextColumn)."""
        if name not in self._columns:
            cols = [p.column(name) for p in self.parts]
            if len(cols) == 1:
                self._columns[name] = cols[0]
            else:
                self._columns[name] = TextColumn.concat(cols) if isinstance(cols[0], TextColumn) else np.concatenate(cols)
        return self._columns[name]

    def meta_rows(self, rows: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Metadata rows as dicts (all of them when rows is None), in the order asked."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        out: list[dict[str, Any] | None] = [None] * len(rows)
        for i, pos, local in self._by_part(rows):
            for j, row in zip(pos, self.parts[i].meta_rows(local)):
                out[j] = row
        return out  # type: ignore[return-value]

    def _by_part(self, rows: np.ndarray):
        """(part, positions in rows, local rows) for each part that rows reach."""
        if len(self.parts) == 1:
            yield 0, np.arange(len(rows)), rows
            return
        part = np.searchsorted(self.starts, rows, side="right") - 1
        for i in np.unique(part):
            pos = np.flatnonzero(part == i)
            yield int(i), pos, rows[pos] - self.starts[i]

    def tokens(self, rows: np.ndarray) -> Ragged:
        rows = np.asarray(rows, dtype=np.int64)
        pieces: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * len(rows)
        counts = np.zeros(len(rows), dtype=np.int64)
        by_part = list(self._by_part(rows))
        gathered = self._each(lambda job: self.parts[job[0]].gather(job[2]), by_part)
        for (i, pos, local), (flat, c) in zip(by_part, gathered):
            if len(self.parts) == 1:
                return Ragged(flat, c)
            ends = np.cumsum(c)
            for j, a, b in zip(pos, ends - c, ends):
                pieces[j] = flat[a:b]
            counts[pos] = c
        dim = self.parts[0].dim
        return Ragged(np.concatenate(pieces) if len(rows) else np.zeros((0, dim), np.float32), counts)

    def _each(self, fn, jobs: list) -> list:
        """fn over jobs, in order: at once when some part is another process's (their round trips overlap)
        or when the searcher has several threads (FAISS releases the GIL, so N local shards search on N
        cores); one after another on the query's one thread otherwise."""
        remote = any(type(p) is not _Part for p in self.parts)
        workers = min(len(jobs), 16 if remote else self.workers)
        if workers < 2:
            return [fn(job) for job in jobs]
        if self._pool is None or self._pool[0] < workers:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = workers, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slsearch-shard")
        return list(self._pool[1].map(fn, jobs))

    def prefetch(self, rows: np.ndarray) -> None:
        for i, _, local in self._by_part(np.asarray(rows, dtype=np.int64)):
            self.parts[i].prefetch(local)

    def search(self, q_vectors: np.ndarray, n: int, prefetch: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: (global rows of its FAISS top-n over every part, their global scores), best first.
        Each part answers its own top-n; the global top-n lies within their union (a row in the global
        top-n has fewer than n better rows anywhere, so fewer in its own part)."""
        asked = [(i, p, min(n, len(p))) for i, p in enumerate(self.parts) if len(p)]
        # one part hints its own candidates' token reads; several hint only the merged top-n (below)
        alone = prefetch and len(asked) == 1
        answers = self._each(lambda job: job[1].search(q_vectors, job[2], alone), asked)  # (Q, m) each
        found = [(np.where(rows >= 0, rows + self.starts[i], -1), scores)
                 for (i, _, _), (scores, rows) in zip(asked, answers)]
        out = []
        for qi in range(len(q_vectors)):
            rows = np.concatenate([r[qi] for r, _ in found]) if found else np.zeros(0, np.int64)
            scores = np.concatenate([s[qi] for _, s in found]).astype(np.float32) if found else np.zeros(0, np.float32)
            keep = rows >= 0
            if self.searchable is not None:
                keep &= self.searchable[np.maximum(rows, 0)]
            rows, scores = rows[keep], scores[keep]
            if len(found) > 1:  # each part's list is sorted; their union is not
                order = np.argsort(-scores, kind="stable")[:n]
                rows, scores = rows[order], scores[order]
            out.append((rows, scores))
        if prefetch and len(asked) > 1:  # start the reads of every query's merged candidates at once
            self.prefetch(np.concatenate([rows for rows, _ in out]))
        return out


class _Labels:
    """What a hit shows of a row, (id, path, text, gloss reading), read from the metadata columns when a hit
    needs it. Sentence rows show the first clip that says them (`clip_rows`: per sentence, that clip's
    row, -1 for none) and no reading."""

    def __init__(self, ids: TextColumn, paths: TextColumn, texts: TextColumn, readings: TextColumn | None,
                 clip_rows: np.ndarray | None = None):
        self.ids, self.paths, self.texts, self.readings, self.clip_rows = ids, paths, texts, readings, clip_rows

    def __getitem__(self, row: int) -> tuple[str, str | None, str | None, str | None]:
        text = self.texts[row]
        if self.clip_rows is not None:
            clip = int(self.clip_rows[row])
            return (self.ids[clip], self.paths[clip], text, None) if clip >= 0 else ("", None, text, None)
        return self.ids[row], self.paths[row], text, self.readings[row]


def _column_or_none(values: np.ndarray | TextColumn) -> np.ndarray | TextColumn | None:
    """A column, or None when any row lacks its value (a model without that stage)."""
    if isinstance(values, TextColumn):
        return values if values.complete else None
    return None if np.isnan(values.astype(np.float64)).any() else values.astype(np.float32)


def _set_info(shards: list[tuple[str, StoredIndex]], is_set: bool) -> dict[str, Any]:
    """What index.json says, for one index; for a shard set, the same keys over its shards (they share
    the checkpoint, dims and readings, which Searcher checks) and the shards themselves."""
    if not is_set:
        return shards[0][1].info
    infos = [ix.info for _, ix in shards]
    first = infos[0]
    lexicons = {i.get("lexicon") for i in infos}
    return {"checkpoint": first["checkpoint"], "dims": first["dims"], "readings": first.get("readings"),
            "lexicon": lexicons.pop() if len(lexicons) == 1 else None,
            "created": min(i.get("created") or "" for i in infos) or None,
            "updated": max(i.get("updated") or "" for i in infos) or None,
            "shards": [{"name": name, "version": _version(ix), "clips": len(ix.clips),
                        "texts": len(ix.texts) if ix.texts is not None else 0} for name, ix in shards]}


def _open_shard(source: Path | str):
    """A shard's loaded version: an index folder (StoredIndex) or a shard server (remote.RemoteShard)."""
    from slsearch.index.remote import RemoteShard, is_url

    return RemoteShard(source) if is_url(source) else load_index(source)


def _part(ix, collection: str):
    if isinstance(ix, StoredIndex):
        return _Part(getattr(ix, collection), ix.token_store(collection), ix.path)
    return ix.part(collection)


def _version(ix) -> str:
    return version_name(ix.path) if isinstance(ix, StoredIndex) else ix.version


def _key(ix) -> str:
    return str(ix.path) if isinstance(ix, StoredIndex) else ix.key


def _where(ix) -> str:
    return str(ix.path) if isinstance(ix, StoredIndex) else ix.url


def version_name(folder: Path) -> str:
    """`.news.v3` -> "v3"; a folder that is not a version folder (copied by hand) keeps its name."""
    m = re.search(r"\.(v\d+(?:-[0-9a-f]+)?)$", folder.name)
    return m.group(1) if m else folder.name


class Searcher:
    """Search an index folder, or a shard set (slsearch.index.shards), with text or video. Loads the
    index and the model once.

    `model` (a RetrievalModel or a checkpoint path) defaults to the checkpoint recorded in index.json;
    a model whose checkpoint hash differs from the index's is refused (its vectors would not match).
    A shard set is searched as one index: each shard's FAISS candidates are merged into the global
    top-N, ranked once, so its top-k is the one an index holding every shard's clips would give.
    """

    def __init__(self, index_dir: str | Path, model: RetrievalModel | str | Path | None = None,
                 threads: int | None = DEFAULT_THREADS, score: str | None = None):
        self.threads = threads  # torch/FAISS threads per query; None leaves the process settings alone
        self.index_dir = Path(index_dir)
        self.is_set = is_shard_set(index_dir)
        # (name, loaded version) per shard; a plain index is one shard named after its folder
        self.shards: list[tuple[str, Any]] = [(name, _open_shard(source)) for name, source in shard_folders(index_dir)]
        self._check_shards()
        self.info = info = _set_info(self.shards, self.is_set)
        expected = info["checkpoint"]["hash"]
        if not isinstance(model, (RetrievalModel, str, Path, type(None))):
            raise SlsearchError(f"Searcher takes a RetrievalModel or a checkpoint path, not {type(model).__name__} "
                                "(wrap a network in slsearch.rank.RetrievalModel)")
        if not isinstance(model, RetrievalModel):
            model = self._load_model(model, info, index_dir)
        if model.hash != expected:
            raise SlsearchError(f"{index_dir}: the index was built with checkpoint {expected}, the model given is "
                                f"{model.hash}; its vectors would not match. Use the index's model or rebuild the "
                                "index with this one")
        dims = info["dims"]
        if (model.net.embed_dim, model.net.token_dim) != (dims["global"], dims["token"]):
            raise InputError(index_dir, f"index.json records vectors of {dims['global']} and token states of "
                                        f"{dims['token']} dimensions, the model makes {model.net.embed_dim} and "
                                        f"{model.net.token_dim}; the index is damaged, rebuild it")
        self.model = model
        self.pipeline = RankingPipeline(model)
        parts = [_part(ix, "clips") for _, ix in self.shards]
        self.clips = _Target(parts)
        self.clips.workers = max(1, threads or 1)
        ids, paths, texts = (self.clips.column(c) for c in ("id", "path", "text"))
        self.clips.labels = _Labels(ids, paths, texts, self.clips.column("gloss_reading"))
        self.readings = _column_or_none(self.clips.column("gloss_reading"))  # None: the model reads no glosses
        self.reader = None  # the recogniser the index's readings come from (`index --readings`), read lazily
        # log p(reading) for the lexicon's T2V reverse channel: stored for the lexicon index.json names (NaN
        # for a shard built with another lexicon of this checkpoint); missing ones are computed per
        # candidate, once each
        lexicon = self.pipeline.lexicon
        stored = [lexicon is not None and ix.info.get("lexicon") == lexicon.lexicon.fingerprint for _, ix in self.shards]
        self.reading_priors = None
        if any(stored):
            self.reading_priors = np.concatenate([
                ix.clips.column("reading_prior").astype(np.float32) if ok else np.full(len(ix.clips), np.nan, np.float32)
                for ok, (_, ix) in zip(stored, self.shards)])
        self._reading_prior_memo: dict[int, float] = {}
        # what hits are ranked by: the best the model has, or a cheaper cascade asked for (slsearch.rank.SCORES;
        # 'fused' skips the decoder-likelihood stage, 11-18 ms of a query on one core)
        if score == "global":
            raise SlsearchError("--score global is the first stage's order, for `slsearch eval`; a search re-ranks its "
                                "FAISS candidates with full, fused, cico or lexical")
        self.score = self.pipeline.resolve_score(score, self.readings is not None, str(index_dir))
        self.texts: _Target | None = None
        self.sentence_priors = None
        with_texts = [ix for _, ix in self.shards if ix.texts is not None]
        if with_texts:
            self.texts = _Target([_part(ix, "texts") for ix in with_texts])
            self.texts.workers = self.clips.workers
            sentences = self.texts.column("text")
            # a sentence result shows the first clip that says it
            first = pc.index_in(sentences.values, value_set=texts.values, skip_nulls=True)
            self.texts.labels = _Labels(ids, paths, sentences, None, first.fill_null(-1).to_numpy())
            if len(with_texts) > 1:  # a sentence several shards hold is one result: its first row
                first_row = pc.index_in(sentences.values, value_set=sentences.values).to_numpy()
                self.texts.searchable = first_row == np.arange(len(sentences))
            self.sentence_priors = _column_or_none(self.texts.column("sentence_prior"))

    def _check_shards(self) -> None:
        """The shards of a set must share the set's checkpoint and gloss-readings source."""
        if not self.is_set:
            return
        shard_set = read_shard_set(self.index_dir)
        want, readings = shard_set.checkpoint["hash"], (shard_set.readings or {}).get("hash")
        for name, ix in self.shards:
            got = ix.info["checkpoint"]["hash"]
            if got != want:
                raise SlsearchError(f"{self.index_dir}: shard {name} ({_where(ix)}) was built with checkpoint {got}, the "
                                    f"set searches {want}; vectors of two models are not comparable. Rebuild the "
                                    f"shard with the set's model, or drop it (`slsearch shards {self.index_dir} "
                                    f"--drop {name}`)")
            if (ix.info.get("readings") or {}).get("hash") != readings:
                raise SlsearchError(f"{self.index_dir}: shard {name} reads glosses with another recogniser than the "
                                    "set (`index --readings`); rebuild it the set's way or drop it")

    def clip_count(self) -> int:
        return len(self.clips)

    def sentence_count(self) -> int:
        """Distinct sentences (a sentence two shards hold counts once)."""
        if self.texts is None:
            return 0
        return len(self.texts) if self.texts.searchable is None else int(self.texts.searchable.sum())

    @property
    def version_key(self) -> str:
        """The loaded versions' folders, as `shards.version_key` names the folder's current ones."""
        return "|".join(_key(ix) for _, ix in self.shards) if self.is_set else str(self.shards[0][1].path)

    @property
    def version(self) -> str:
        """Which versions answer: "v3" for an index, "NAME@v3 NAME@v1 ..." for a shard set."""
        if not self.is_set:
            return version_name(self.shards[0][1].path)
        return " ".join(f"{name}@{_version(ix)}" for name, ix in self.shards)

    @staticmethod
    def _load_model(path: str | Path | None, info: dict[str, Any], index_dir: str | Path) -> RetrievalModel:
        if path is None:
            path = info["checkpoint"].get("path")
            if not path or not Path(path).exists():
                raise SlsearchError(f"{index_dir}: the checkpoint it was built with ({path}) is not there; "
                                    "pass --model")
            # a path an index folder names is untrusted: its weights must be the ones the index records
            # before anything of it is loaded
            from slsearch.models.checkpoint import WEIGHTS_FILE, file_hash

            weights = Path(path) / WEIGHTS_FILE
            if not weights.is_file() or file_hash(weights) != info["checkpoint"].get("hash"):
                raise SlsearchError(f"{index_dir}: the checkpoint it names ({path}) does not hold the weights the "
                                    "index was built with; pass --model with that checkpoint, or rebuild the index")
        return load_retrieval_model(path)  # an explicit path that is wrong fails here, naming that path

    def __len__(self) -> int:
        return len(self.clips)

    # --- queries ------------------------------------------------------------------------------
    def search_text(self, query: str | Sequence[str], k: int = 10, n_candidates: int = DEFAULT_CANDIDATES,
                    rerank: bool = True) -> list[SearchHit] | list[list[SearchHit]]:
        """Sentence(s) -> ranked clips (T2V). One query gives a list of hits, a list of queries a list of lists."""
        from slsearch.encode import encode_texts
        from slsearch.text import normalise_query

        single = isinstance(query, str)
        queries = [query] if single else list(query)
        if not queries:
            raise SlsearchError("no queries given")
        # NFC, no control / zero-width / bidi characters, one space between words; else an InputError
        queries = [normalise_query(q) for q in queries]
        _check_k(k, n_candidates)
        with _threads(self.threads):
            enc = encode_texts(self.model.net, queries)
            candidates = self._candidates(self.clips, enc.vectors, k, n_candidates, rerank)
            results = []
            for qi, (rows, first) in enumerate(candidates):
                tokens = None
                if rerank and len(rows):
                    tokens = self.clips.tokens(rows)
                    clips = ClipSide(tokens,
                                     None if self.readings is None else self.readings[rows],
                                     self._reading_priors(rows))
                    order, scores = self.pipeline.rank("t2v", clips, TextSide([queries[qi]], [enc.tokens[qi]]),
                                                       self.score)
                else:
                    order, scores = np.argsort(-first, kind="stable"), first
                top, spans = self._distinct_in_time(rows, order, k, enc.tokens[qi], tokens)
                hits = self._hits(self.clips, rows, top, scores)
                for hit, span in zip(hits, spans):
                    hit.span = span
                results.append(hits)
        return results[0] if single else results

    def _distinct_in_time(self, rows: np.ndarray, order: np.ndarray, k: int, query_tokens: np.ndarray,
                          tokens: Ragged | None = None) -> tuple[np.ndarray, list[tuple[float, float] | None]]:
        """The first k of `order` with the seconds where the query matched each (match_span), skipping a
        cut of a file whose span overlaps a better cut's span in the same file: overlapping windows of one
        programme match the same signing, which is one result, not two. `tokens`: the candidates' token
        states when the re-rank already read them (else they are read here, a block at a time)."""
        paths, fps = self.clips.column("path"), self.clips.column("fps")
        duration, starts = self.clips.column("duration"), self.clips.column("start")
        chosen: list[int] = []
        spans: list[tuple[float, float] | None] = []
        taken: dict[str, list[tuple[float, float]]] = {}
        for lo in range(0, len(order), 2 * k):  # token reads in blocks: most queries need one
            block = order[lo:lo + 2 * k]
            for j, tok in zip(block, self.clips.tokens(rows[block]) if tokens is None else (tokens[j] for j in block)):
                r = rows[j]
                f = fps[r]
                span = None
                if len(tok) and f and np.isfinite(float(f)):
                    first, last = match_span(query_tokens, tok, self.pipeline.temperature)
                    cut = starts[r] is not None and np.isfinite(float(starts[r]))
                    span = span_seconds(first, last, float(f), float(duration[r]), float(starts[r]) if cut else None)
                    if cut:  # segments (and manifest cuts) of one file; a whole-file clip is its own result
                        same_file = taken.setdefault(str(paths[r]), [])
                        if any(span[0] < b and a < span[1] for a, b in same_file):
                            continue
                        same_file.append(span)
                chosen.append(int(j))
                spans.append(span)
                if len(chosen) == k:
                    return np.array(chosen, dtype=np.int64), spans
        return np.array(chosen, dtype=np.int64), spans

    def search_video(self, video: Any, k: int = 10, target: str = "texts", n_candidates: int = DEFAULT_CANDIDATES,
                     rerank: bool = True) -> list[SearchHit]:
        """A clip (path, Clip, pose array (T, 543, 3) or PoseSequence read already) -> ranked corpus sentences
        (V2T, target="texts") or similar clips (V2V, target="clips")."""
        from slsearch.data.pose_files import PoseSequence
        from slsearch.data.poses import load_pose
        from slsearch.encode import encode_videos

        if target not in ("texts", "clips"):
            raise SlsearchError(f"target must be 'texts' or 'clips', not {target!r}")
        _check_k(k, n_candidates)
        searched = self.clips if target == "clips" else self.texts
        if searched is None:
            raise SlsearchError(f"{self.index_dir}: no sentences in this index (it was built without texts); "
                                "search clips instead (--clips)")
        if isinstance(video, (str, Path)) and not Path(video).exists():
            raise InputError(video, "file not found")
        pose = video if isinstance(video, PoseSequence) else \
            load_pose(video, crops=self.model.net.video.front_end.needs_crops)
        with _threads(self.threads):
            try:
                enc = encode_videos(self.model.net, [pose])
            except ValueError as e:
                raise InputError(str(video) if not isinstance(video, np.ndarray) else "<array>", str(e)) from None
            [(rows, first)] = self._candidates(searched, enc.vectors, k, n_candidates, rerank)
            if not rerank or not len(rows):
                order, scores = np.argsort(-first, kind="stable"), first
            elif target == "clips":
                order, scores = self.pipeline.rank_clips(enc.tokens[0], ClipSide(searched.tokens(rows)))
            else:
                texts = TextSide([searched.labels[r][2] for r in rows], searched.tokens(rows),
                                 None if self.sentence_priors is None else self.sentence_priors[rows])
                # the lexicon reads the query clip's gloss reading; an index without readings ranks without it
                query = ClipSide([enc.tokens[0]], self._query_reading(pose.data, enc.readings)
                                 if self.readings is not None else None,
                                 reader_tokens=self.model.reader.encode([pose])
                                 if self.pipeline.reads_clips_again(self.score) else None)
                order, scores = self.pipeline.rank("v2t", query, texts, self.score)
            return self._hits(searched, rows, order[:k], scores)

    def _query_reading(self, pose: np.ndarray, own: list[str] | None) -> list[str] | None:
        """The query clip's gloss reading, by whatever read the index's clips: the model's gloss head
        (`own`), or the recogniser index.json names."""
        source = self.info.get("readings")
        if not source:
            return own
        if self.reader is None:
            from slsearch.recognition import load_gloss_reader

            reader = load_gloss_reader(source["path"])
            if reader.checkpoint_hash != source["hash"]:
                raise SlsearchError(f"{self.index_dir}: its gloss readings came from {source['path']} with weights "
                                    f"{source['hash']}, which now has {reader.checkpoint_hash}; rebuild the index")
            self.reader = reader
        from slsearch.recognition import read_poses

        return read_poses(self.reader, [pose])

    def search_glosses(self, glosses: str, k: int = 10) -> list[SearchHit]:
        """A gloss sequence ("MORGEN REGEN") -> clips ranked by what the recogniser saw in them (G2V).

        Glosses are upper-cased and split on whitespace; glosses the model's vocabulary lacks are dropped
        (`split_gloss_query` names them; a query of only unknown glosses is an InputError). The readings'
        score is BM25 over their gloss tokens times (1 + the share of the query's glosses that the reading
        has in the query's order, their longest common subsequence): a reading that holds the query's
        glosses in order ranks above one that holds them in another order. An index that keeps each
        clip's gloss posteriors ranks by the query spotted in them (slsearch.rank.gloss_spotting: 0 when
        the greedy reading holds it in order, below by how much less likely its glosses were) plus
        BM25_SHARE x the readings' score, so a gloss the greedy reading dropped still counts; clips are
        scored in the order of a bound of their score until none left can enter the top k
        (`top_gloss_rows`). Ties go by index row.
        """
        _check_k(k, 1)
        if self.readings is None:
            raise InputError(self.index_dir, "the model of this index reads no glosses (no gloss head), so it "
                                             "cannot be searched by gloss")
        vocabulary = self.model.net.config.glosses
        known, _ = split_gloss_query(glosses, vocabulary)
        scorer = self._gloss_scorer()
        posteriors = self._posteriors() if vocabulary else None
        rows = np.arange(scorer.n)
        if posteriors is None:
            scores = scorer.scores(known)
            order = np.lexsort((rows, -scores))  # score descending, then row
            return self._hits(self.clips, rows, self._distinct_segments(order, k), scores)
        classes = {g: i + 1 for i, g in enumerate(vocabulary)}
        order, scores = top_gloss_rows(posteriors, scorer, known, [classes[g] for g in known], k,
                                       self._distinct_segments)
        return self._hits(self.clips, rows, order, scores)

    def _distinct_segments(self, order: np.ndarray, k: int) -> np.ndarray:
        """The first k rows of `order`, skipping a clip that shares more than a quarter of its extent with
        a better one of the same file (overlapping windows of a programme read the same signing)."""
        paths, starts, ends, durations = (self.clips.column(c) for c in ("path", "start", "end", "duration"))
        chosen: list[int] = []
        taken: dict[str, list[tuple[float, float]]] = {}
        for r in order:
            start = starts[r] if r < len(starts) and starts[r] is not None and np.isfinite(starts[r]) else None
            if start is not None:  # a cut of a longer file
                end = ends[r] if ends[r] is not None and np.isfinite(ends[r]) else start + float(durations[r])
                same_file = taken.setdefault(str(paths[r]), [])
                if any(min(b, end) - max(a, start) > 0.25 * min(b - a, end - start) for a, b in same_file):
                    continue
                same_file.append((float(start), float(end)))
            chosen.append(int(r))
            if len(chosen) == k:
                break
        return np.array(chosen, dtype=np.int64)

    def _posteriors(self):
        """Every clip's stored top glosses per token (slsearch.rank.gloss_spotting), read once; None when
        some clip has none (an index built before they were kept: readings alone rank then)."""
        if getattr(self, "_posteriors_memo", None) is None:
            from slsearch.rank.gloss_spotting import Posteriors

            blobs = self.clips.column("gloss_posteriors")
            if not blobs.complete:
                self._posteriors_memo = False
            else:
                try:
                    self._posteriors_memo = Posteriors(blobs)
                except ValueError as e:
                    raise InputError(self.index_dir, f"damaged gloss posteriors ({e}); rebuild the index") from None
        return self._posteriors_memo or None

    def _gloss_scorer(self) -> "GlossScorer":
        if getattr(self, "_gloss_scorer_memo", None) is None:
            self._gloss_scorer_memo = GlossScorer(self.readings.tolist())
        return self._gloss_scorer_memo

    def _candidates(self, target: _Target, q_vectors: np.ndarray, k: int, n_candidates: int,
                    rerank: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        """The first stage: per query, (rows of its FAISS candidates, their global scores)."""
        n = min(max(n_candidates, k) if rerank else k, len(target))
        return target.search(q_vectors, n, prefetch=rerank)

    @staticmethod
    def _hits(target: _Target, rows: np.ndarray, order: np.ndarray, scores: np.ndarray) -> list[SearchHit]:
        return [SearchHit(rank + 1, float(scores[j]), *target.labels[rows[j]]) for rank, j in enumerate(order)]

    def _reading_priors(self, rows: np.ndarray) -> np.ndarray | None:
        """The candidates' log p(reading) for the lexicon's reverse channel: stored by the index, or (an
        index built with another lexicon of this checkpoint) computed once per clip and remembered."""
        lexicon = self.pipeline.lexicon
        if lexicon is None or not lexicon.uses_reading_priors or self.readings is None:
            return None
        stored = self.reading_priors[rows] if self.reading_priors is not None else None
        if stored is not None and not np.isnan(stored).any():
            return stored
        todo = [r for r in dict.fromkeys(rows.tolist())
                if r not in self._reading_prior_memo and (stored is None or np.isnan(self.reading_priors[r]))]
        if todo:
            priors = lexicon.lexicon.reading_priors(self.readings[np.array(todo)])
            self._reading_prior_memo.update(zip(todo, priors.tolist()))
        computed = np.array([self._reading_prior_memo.get(r, np.nan) for r in rows.tolist()], np.float32)
        return computed if stored is None else np.where(np.isnan(stored), computed, stored)


def span_seconds(first: int, last: int, fps: float, duration: float,
                 start: float | None = None) -> tuple[float, float]:
    """Clip tokens first..last (inclusive) -> (start, end) seconds in the media file: token i covers
    frames [4i, 4i + 4) (the video tower's temporal stride) at `fps`, clamped to the clip's `duration`,
    offset by `start` when the clip is a cut of a longer file (None or NaN for a whole file)."""
    a = TEMPORAL_STRIDE * first / fps
    b = TEMPORAL_STRIDE * (last + 1) / fps
    if duration is not None and np.isfinite(duration) and duration > 0:
        a, b = min(a, duration), min(b, duration)
    offset = start if start is not None and np.isfinite(start) else 0.0
    return round(offset + a, 3), round(offset + b, 3)


def split_gloss_query(glosses: str, vocabulary: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """A gloss query -> (its glosses the model knows, in order; the unknown ones, each once).

    Upper-cased and split on whitespace. No known gloss at all is an InputError naming the unknown ones.
    """
    tokens = str(glosses).upper().split()
    if not tokens:
        raise InputError("--gloss", "empty gloss query")
    vocab = set(vocabulary or ())
    known = [g for g in tokens if not vocab or g in vocab]
    unknown = list(dict.fromkeys(g for g in tokens if vocab and g not in vocab))
    if not known:
        raise InputError("--gloss", f"the model knows none of these glosses: {' '.join(unknown)}")
    return known, unknown


def top_gloss_rows(posteriors, scorer: "GlossScorer", glosses: Sequence[str], classes: Sequence[int], k: int,
                   distinct=lambda order, k: order[:k]) -> tuple[np.ndarray, np.ndarray]:
    """The k best rows for a gloss query and the (N,) scores (-inf where not computed): the query spotted
    in the posteriors (slsearch.rank.gloss_spotting) + BM25_SHARE x the readings' BM25 x order, so BM25 x
    order orders equal spots. Clips are scored exactly in the order of an upper bound of their score
    until no unscored clip can enter the top k (`distinct` picks k rows from an order: the search skips
    overlapping windows of one file); the result is that of scoring every clip, ties by row."""
    n = scorer.n
    rows = np.arange(n)
    bm25 = scorer.bm25(glosses)
    bound = posteriors.upper_bounds(classes) + BM25_SHARE * 2 * bm25  # (1 + in-order share) <= 2
    step = max(k, GLOSS_SCORE_STEP)
    # only the best bounds ordered at first (a full sort of a million is most of a query's time); all of
    # them if the search gets that far
    head = min(n, 8 * step)
    if head < n:
        part = np.argpartition(-bound, head)
        by_bound, after = part[:head], bound[part[head]]  # `after`: no row outside the head is bound higher
        by_bound = by_bound[np.lexsort((by_bound, -bound[by_bound]))]
    else:
        by_bound, after = np.lexsort((rows, -bound)), None
    scores = np.full(n, -np.inf, np.float32)
    scored_mask = np.zeros(n, bool)
    done, order = 0, rows[:0]
    while True:
        batch = by_bound[done:done + step]
        batch = batch[~scored_mask[batch]]
        scores[batch] = posteriors.scores(classes, batch) + BM25_SHARE * scorer.scores(glosses, batch, bm25)
        scored_mask[batch] = True
        done = min(done + step, len(by_bound))
        step *= 2
        scored = by_bound[:done]
        order = distinct(scored[np.lexsort((scored, -scores[scored]))], k)
        following = bound[by_bound[done]] if done < len(by_bound) else after
        # (a margin for float16 values summed in another order)
        if len(order) == k and (following is None or scores[order[-1]] > following + 1e-3):
            break
        if done == len(by_bound):
            if after is None:  # every row scored
                break
            by_bound, after, done = np.lexsort((rows, -bound)), None, 0  # the rest too, in order; scored rows kept
    return order, scores


class GlossScorer:
    """Scores gloss queries against every clip's gloss reading: BM25 (Okapi, k1=1.5, b=0.75, negative idf
    floored at 0.25 x the mean idf, as the `rank_bm25` package scores it) over gloss tokens, times (1 +
    LCS(query, reading) / len(query)) with the longest common subsequence over tokens (rapidfuzz), so that
    order counts as much as BM25 itself.

    BM25 is computed here from postings (gloss -> the clips whose reading holds it, with counts): rank_bm25
    keeps a dict per reading and scores every reading in a Python loop, about a second a query at a million
    clips; the postings touch only the clips that hold a query gloss (`candidates`). A test checks the
    scores against rank_bm25's."""

    K1, B, EPSILON = 1.5, 0.75, 0.25

    def __init__(self, readings: Sequence[str]):
        self.readings = readings
        term_of: dict[str, int] = {}
        doc_ids, term_ids = [], []
        self.doc_len = np.zeros(len(readings), np.float64)
        for d, reading in enumerate(readings):
            tokens = (reading or "").split()
            self.doc_len[d] = len(tokens)
            for t in tokens:
                term_ids.append(term_of.setdefault(t, len(term_of)))
            doc_ids.extend([d] * len(tokens))
        self.term_of = term_of
        self.n = len(readings)
        pairs, tf = np.unique(np.array(term_ids, np.int64) * max(self.n, 1) + np.array(doc_ids, np.int64),
                              return_counts=True)  # sorted by term, then clip
        terms = pairs // max(self.n, 1)
        self.rows = (pairs % max(self.n, 1)).astype(np.int64)
        self.tf = tf.astype(np.float64)
        self.ptr = np.searchsorted(terms, np.arange(len(term_of) + 1))
        df = np.diff(self.ptr).astype(np.float64)
        idf = np.log(self.n - df + 0.5) - np.log(df + 0.5)
        self.idf = np.where(idf < 0, self.EPSILON * idf.mean(), idf) if len(idf) else idf
        self.avgdl = self.doc_len.mean() if self.n and self.doc_len.sum() else 0.0

    def _postings(self, gloss: str) -> slice | None:
        t = self.term_of.get(gloss)
        return None if t is None else slice(self.ptr[t], self.ptr[t + 1])

    def bm25(self, query: Sequence[str]) -> np.ndarray:
        """(N,) BM25 scores of the query's glosses (a repeated gloss counts each time, as in rank_bm25)."""
        out = np.zeros(self.n, np.float64)
        if not self.avgdl:
            return out
        for g in query:
            p = self._postings(g)
            if p is None:
                continue
            rows, tf = self.rows[p], self.tf[p]
            norm = self.K1 * (1 - self.B + self.B * self.doc_len[rows] / self.avgdl)
            out[rows] += self.idf[self.term_of[g]] * tf * (self.K1 + 1) / (tf + norm)
        return out

    def scores(self, query: Sequence[str], rows: np.ndarray | None = None,
               bm25: np.ndarray | None = None) -> np.ndarray:
        """(N,) scores of every reading, or (len(rows),) of the given ones (`bm25`: self.bm25(query), if
        already computed)."""
        from rapidfuzz.distance import LCSseq

        rows = np.arange(self.n) if rows is None else np.asarray(rows, np.int64)
        out = np.zeros(len(rows), np.float64)
        if not query:
            return out.astype(np.float32)
        bm25 = (self.bm25(query) if bm25 is None else bm25)[rows]
        for j in np.flatnonzero(bm25 > 0):
            reading = (self.readings[rows[j]] or "").split()
            out[j] = bm25[j] * (1.0 + LCSseq.similarity(list(query), reading) / len(query))
        return out.astype(np.float32)


def _check_k(k: int, n_candidates: int) -> None:
    if not isinstance(k, (int, np.integer)) or k <= 0:
        raise SlsearchError(f"k must be a positive number of results, got {k}")
    if n_candidates <= 0:
        raise SlsearchError(f"the number of candidates must be positive, got {n_candidates}")


def read_queries(path: str | Path) -> list[str]:
    """One query per line; blank lines and lines starting with # are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "queries file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(path, "queries file is not UTF-8 text") from None
    from slsearch.text import normalise_query

    queries = []
    for n, ln in enumerate(lines, 1):
        if not ln.strip() or ln.lstrip().startswith("#"):
            continue
        try:
            queries.append(normalise_query(ln))
        except InputError as e:
            if not e.reason.startswith("empty"):  # a line of only zero-width characters is a blank line
                raise InputError(path, f"line {n}: {e.reason}") from None
    if not queries:
        raise InputError(path, "queries file holds no queries")
    return queries


def query_index(index_dir: str | Path, text: str | None = None, video: str | None = None,
                queries_file: str | Path | None = None, k: int = 10, n_candidates: int = DEFAULT_CANDIDATES,
                clips: bool = False, model: Any = None, glosses: str | None = None,
                score: str | None = None) -> list[dict[str, Any]]:
    """What `slsearch query` does: one text, a file of texts (batched), one video or one gloss sequence
    against an index; `score`: what to rank by (Searcher; None: the best the model has).

    Returns one record per query: {"query", "mode" (t2v | v2t | v2v | g2v), "results": [hit dicts]};
    a g2v record also has "unknown_glosses" (the query's glosses the model does not know, left out).
    """
    given = [x is not None for x in (text, video, queries_file, glosses)]
    if sum(given) != 1:
        raise SlsearchError("give exactly one of: a query text, --video CLIP, --gloss GLOSSES or --queries FILE")
    if glosses is not None:
        _check_k(k, n_candidates)
        searcher = Searcher(index_dir, model=model)
        if searcher.readings is None:
            raise InputError(index_dir, "the model of this index reads no glosses (no gloss head), so it cannot "
                                        "be searched by gloss")
        known, unknown = split_gloss_query(glosses, searcher.model.net.config.glosses)
        hits = searcher.search_glosses(" ".join(known), k=k)
        return [{"query": " ".join(str(glosses).upper().split()), "mode": "g2v", "unknown_glosses": unknown,
                 "results": [h.to_dict() for h in hits]}]
    if text is not None:
        from slsearch.text import normalise_query

        text = normalise_query(text)  # judged before the model loads
    _check_k(k, n_candidates)
    if video is not None and not Path(video).exists():
        raise InputError(video, "file not found")
    queries = read_queries(queries_file) if queries_file is not None else None
    searcher = Searcher(index_dir, model=model, score=score)
    if video is not None:
        mode = "v2v" if clips else "v2t"
        hits = searcher.search_video(video, k=k, target="clips" if clips else "texts", n_candidates=n_candidates)
        return [{"query": str(video), "mode": mode, "results": [h.to_dict() for h in hits]}]
    queries = queries or [text]  # type: ignore[list-item]
    all_hits = searcher.search_text(queries, k=k, n_candidates=n_candidates)
    return [{"query": q, "mode": "t2v", "results": [h.to_dict() for h in hits]} for q, hits in zip(queries, all_hits)]
