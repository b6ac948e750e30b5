"""`Searcher`: load an index once, answer many queries.

    query -> encode (text tower / video tower) -> FAISS top-N on global vectors
          -> CiCo fine-grained score against the N candidates' stored token states
          -> + the gloss lexicon's score (models that have one; T2V and V2T)
          -> + the decoder's likelihood on the first 20 (models calibrated for it) -> top k

T2V searches the clips with a sentence; V2T searches the corpus sentences with a clip; V2V
(`target="clips"`) searches clips with a clip, scoring video tokens against video tokens.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from slsearch.errors import InputError, SlsearchError
from slsearch.index import faiss_index
from slsearch.index.rerank import cico_one_to_many
from slsearch.index.store import Collection, StoredIndex, TokenStore, load_index

DEFAULT_CANDIDATES = 100  # FAISS top-N that the CiCo score re-ranks
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
    score: float  # re-rank score: CiCo, or CiCo fused with the gloss lexicon (dev-standardised units),
    # plus the decoder likelihood's share for the first 20; the cosine of global vectors with rerank=False
    id: str  # clip id; for sentence results, the first clip that carries the sentence
    path: str | None
    text: str | None
    glosses: str | None = None  # a clip result's gloss reading (models with a gloss head), why it matched

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Target:
    """One searchable collection, ready for queries: FAISS index, token store and display columns."""

    def __init__(self, coll: Collection, store: TokenStore,
                 labels: list[tuple[str, str | None, str | None, str | None]]):
        self.coll = coll
        self.index = faiss_index.to_search_device(coll.index, coll.info.get("search_params") or {})
        self.store = store
        self.segment = coll.column("token_segment")
        self.offset = coll.column("token_offset")
        self.count = coll.column("token_count")
        self.labels = labels  # per meta row: (id, path, text, gloss reading)
        readings = coll.column("gloss_reading") if "id" in coll.meta.column_names else None
        # clips' gloss readings for the lexicon's T2V score; None where the index has none
        self.readings = None if readings is None or any(r is None for r in readings) else readings
        reading_priors = coll.column("reading_prior") if "reading_prior" in coll.meta.column_names else None
        # clips' log p(reading) for the lexicon's T2V reverse channel; None: computed when needed
        self.reading_priors = (None if reading_priors is None or np.isnan(reading_priors.astype(np.float64)).any()
                               else reading_priors.astype(np.float32))
        priors = coll.column("sentence_prior") if "sentence_prior" in coll.meta.column_names else None
        # sentences' log p(s) for V2T likelihood re-ranking; None: computed per query
        self.priors = None if priors is None or np.isnan(priors.astype(np.float64)).any() else priors

    def __len__(self) -> int:
        return len(self.coll)


class Searcher:
    """Search an index folder with text or video. Loads the index and the model once.

    `model` defaults to the checkpoint recorded in index.json; a model whose checkpoint hash differs
    from the index's is refused (its vectors would not be comparable).
    """

    def __init__(self, index_dir: str | Path, model: Any = None, threads: int | None = DEFAULT_THREADS):
        self.threads = threads  # torch/FAISS threads per query; None leaves the process settings alone
        self.index_dir = Path(index_dir)
        self.index: StoredIndex = load_index(index_dir)
        info = self.index.info
        expected = info["checkpoint"]["hash"]
        if model is None or isinstance(model, (str, Path)):
            model = self._load_model(model, info, index_dir)
        if getattr(model, "checkpoint_hash", None) != expected:
            raise SlsearchError(f"{index_dir}: the index was built with checkpoint {expected}, the model given is "
                                f"{getattr(model, 'checkpoint_hash', None)}; its vectors would not match. Use the "
                                "index's model or rebuild the index with this one")
        self.model = model
        lexicon = getattr(model, "lexicon", None)
        self.lexicon = lexicon if lexicon is not None and lexicon.fusion else None
        self.likelihood = getattr(model, "likelihood", None)  # LikelihoodReranker or None
        clips = self.index.clips
        ids, paths, texts = clips.column("id").tolist(), clips.column("path").tolist(), clips.column("text").tolist()
        readings = clips.column("gloss_reading").tolist()
        self.clips = _Target(clips, self.index.token_store("clips"), list(zip(ids, paths, texts, readings)))
        if self.lexicon is not None and info.get("lexicon") != self.lexicon.fingerprint:
            self.clips.reading_priors = None  # another lexicon's (or none): computed per candidate instead
        self._reading_prior_memo: dict[int, float] = {}
        self.texts: _Target | None = None
        if self.index.texts is not None:
            first_clip: dict[str, tuple[str, str]] = {}
            for cid, p, t in zip(ids, paths, texts):
                if t is not None:
                    first_clip.setdefault(t, (cid, p))
            labels = [(*first_clip.get(t, ("", None)), t, None) for t in self.index.texts.column("text").tolist()]
            self.texts = _Target(self.index.texts, self.index.token_store("texts"), labels)

    @staticmethod
    def _load_model(path: str | Path | None, info: dict[str, Any], index_dir: str | Path):
        from slsearch.models.checkpoint import load_model

        if path is None:
            path = info["checkpoint"].get("path")
            if not path or not Path(path).exists():
                raise SlsearchError(f"{index_dir}: the checkpoint it was built with ({path}) is not there; "
                                    "pass --model")
        return load_model(path)  # an explicit path that is wrong fails here, naming that path

    def __len__(self) -> int:
        return len(self.clips)

    # --- queries ------------------------------------------------------------------------------
    def search_text(self, query: str | Sequence[str], k: int = 10, n_candidates: int = DEFAULT_CANDIDATES,
                    rerank: bool = True) -> list[SearchHit] | list[list[SearchHit]]:
        """Sentence(s) -> ranked clips (T2V). One query gives a list of hits, a list of queries a list of lists."""
        from slsearch.encode import encode_texts

        single = isinstance(query, str)
        queries = [query] if single else list(query)
        if not queries:
            raise SlsearchError("no queries given")
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise SlsearchError(f"empty query {q!r}: type some words to search for")
        _check_k(k, n_candidates)
        queries = [q.strip() for q in queries]
        lexical = None
        if self.lexicon is not None and self.clips.readings is not None:
            def lexical(qi: int, rows: np.ndarray, cico: np.ndarray) -> np.ndarray:
                readings = self.clips.readings[rows]
                lex = self.lexicon.clip_scores([queries[qi]], readings, self._reading_priors(rows))[0]
                return self.lexicon.fuse(cico, lex, "t2v")
        likelihood = None
        if self._likelihood_applies("t2v"):
            def likelihood(qi: int, rows: np.ndarray) -> np.ndarray:
                counts = self.clips.count[rows]
                flat = self.clips.store.gather_flat(self.clips.segment[rows], self.clips.offset[rows], counts)
                clips = np.split(flat, np.cumsum(counts)[:-1])
                return self.likelihood.raw_scores(self.model, "t2v", clips, [queries[qi]] * len(rows))
        with _threads(self.threads):
            enc = encode_texts(self.model, queries)
            hits = self._search(self.clips, enc.vectors, enc.tokens, k, n_candidates, rerank, lexical,
                                likelihood, "t2v")
        return hits[0] if single else hits

    def search_video(self, video: Any, k: int = 10, target: str = "texts", n_candidates: int = DEFAULT_CANDIDATES,
                     rerank: bool = True) -> list[SearchHit]:
        """A clip (path, Clip or pose array (T, 543, 3)) -> ranked corpus sentences (V2T, target="texts")
        or similar clips (V2V, target="clips")."""
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
        pose = load_pose(video)
        with _threads(self.threads):
            try:
                enc = encode_videos(self.model, [pose.data])
            except ValueError as e:
                raise InputError(str(video) if not isinstance(video, np.ndarray) else "<array>", str(e)) from None
            lexical = None
            if self.lexicon is not None and target == "texts" and enc.readings is not None:
                def lexical(qi: int, rows: np.ndarray, cico: np.ndarray) -> np.ndarray:
                    texts = [searched.labels[r][2] for r in rows]
                    lex = self.lexicon.readings_given_texts([enc.readings[0]], texts)[0]
                    return self.lexicon.fuse(cico, lex, "v2t")
            likelihood = None
            if target == "texts" and self._likelihood_applies("v2t"):
                def likelihood(qi: int, rows: np.ndarray) -> np.ndarray:
                    texts = [searched.labels[r][2] for r in rows]
                    priors = None if searched.priors is None else searched.priors[rows]
                    return self.likelihood.raw_scores(self.model, "v2t", [enc.tokens[0]] * len(rows), texts, priors)
            return self._search(searched, enc.vectors, enc.tokens, k, n_candidates, rerank, lexical,
                                likelihood, "v2t")[0]

    def _reading_priors(self, rows: np.ndarray) -> np.ndarray | None:
        """The candidates' log p(reading) for the lexicon's reverse channel: stored by the index, or (an
        index built before them or with another lexicon) computed once per clip and remembered."""
        if not self.lexicon.fusion.get("t2v", {}).get("reverse_weight"):
            return None  # not used
        if self.clips.reading_priors is not None:
            return self.clips.reading_priors[rows]
        todo = [r for r in dict.fromkeys(rows.tolist()) if r not in self._reading_prior_memo]
        if todo:
            priors = self.lexicon.reading_priors(self.clips.readings[np.array(todo)])
            self._reading_prior_memo.update(zip(todo, priors.tolist()))
        return np.array([self._reading_prior_memo[r] for r in rows.tolist()], np.float32)

    def _likelihood_applies(self, direction: str) -> bool:
        # it re-ranks what CiCo + lexicon ordered: an index without gloss readings has no such order
        return (self.likelihood is not None and self.likelihood.applies(direction)
                and (self.lexicon is None or self.clips.readings is not None))

    # --- the two stages -------------------------------------------------------------------------
    def _search(self, target: _Target, q_vectors: np.ndarray, q_tokens: list[np.ndarray], k: int,
                n_candidates: int, rerank: bool, lexical=None, likelihood=None,
                direction: str = "") -> list[list[SearchHit]]:
        """`lexical(query number, candidate rows, CiCo scores) -> fused scores`, when the model's gloss
        lexicon applies to this search; `likelihood(query number, candidate rows) -> raw scores` of the
        decoder-likelihood stage in `direction`, when the model is calibrated for it."""
        n = min(max(n_candidates, k) if rerank else k, len(target))
        scores, ids = faiss_index.search(target.index, q_vectors, n)  # (Q, n)
        temperature = getattr(getattr(self.model, "config", None), "cico_temperature", 0.07)
        if rerank:  # start the token reads of every query's candidates before the first is needed
            rows = target.coll.row_of_id[ids[ids >= 0]]
            target.store.prefetch(target.segment[rows], target.offset[rows], target.count[rows])
        results = []
        for qi in range(len(q_vectors)):
            valid = ids[qi] >= 0
            rows = target.coll.row_of_id[ids[qi][valid]]  # meta rows of the candidates
            s = scores[qi][valid]
            if rerank and len(rows):
                counts = target.count[rows]
                cand = target.store.gather_flat(target.segment[rows], target.offset[rows], counts)  # (sum L, d)
                # CiCo is symmetric in its sides: one code path for T2V, V2T and V2V
                s = cico_one_to_many(q_tokens[qi], cand, counts, temperature)
                if lexical is not None:
                    s = lexical(qi, rows, s)
            if rerank and len(rows) and likelihood is not None:
                order, s = self.likelihood.rerank(s, direction, lambda pos: likelihood(qi, rows[pos]))
                order = order[:k]
            else:
                order = np.argsort(-s, kind="stable")[:k]
            results.append([SearchHit(rank + 1, float(s[j]), *target.labels[rows[j]])
                            for rank, j in enumerate(order)])
        return results


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
    queries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not queries:
        raise InputError(path, "queries file holds no queries")
    return queries


def query_index(index_dir: str | Path, text: str | None = None, video: str | None = None,
                queries_file: str | Path | None = None, k: int = 10, n_candidates: int = DEFAULT_CANDIDATES,
                clips: bool = False, model: Any = None) -> list[dict[str, Any]]:
    """What `slsearch query` does: one text, a file of texts (batched) or one video against an index.

    Returns one record per query: {"query", "mode" (t2v | v2t | v2v), "results": [hit dicts]}.
    """
    given = [x is not None for x in (text, video, queries_file)]
    if sum(given) != 1:
        raise SlsearchError("give exactly one of: a query text, --video CLIP or --queries FILE")
    if text is not None and not text.strip():
        raise SlsearchError("empty query: type some words to search for")
    _check_k(k, n_candidates)
    if video is not None and not Path(video).exists():
        raise InputError(video, "file not found")
    queries = read_queries(queries_file) if queries_file is not None else None
    searcher = Searcher(index_dir, model=model)
    if video is not None:
        mode = "v2v" if clips else "v2t"
        hits = searcher.search_video(video, k=k, target="clips" if clips else "texts", n_candidates=n_candidates)
        return [{"query": str(video), "mode": mode, "results": [h.to_dict() for h in hits]}]
    queries = queries or [text]  # type: ignore[list-item]
    all_hits = searcher.search_text(queries, k=k, n_candidates=n_candidates)
    return [{"query": q, "mode": "t2v", "results": [h.to_dict() for h in hits]} for q, hits in zip(queries, all_hits)]
