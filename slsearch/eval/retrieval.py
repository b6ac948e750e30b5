"""`slsearch eval --recall`: dense score matrices over a test set, then R@K / MedR / MeanR.

Two sources: an index folder (its stored token states and vectors, so nothing is re-encoded; its
checkpoint, when still there with the same weights, lends the lexicon and the decoder) or a checkpoint
plus a manifest (encoded here). The matrices come from the ranking cascade (`slsearch.rank`), the same
code a search ranks with. Scores: `full` (CiCo + gloss lexicon, V2T less each sentence's hubness, then the
decoder likelihood on each query's first candidates, and V2T re-read by a reader stage where the clips are
encoded here: what search ranks by when the model has every stage),
`fused` (CiCo + gloss lexicon, V2T less hubness), `cico`, `lexical` (the lexicon alone) and `global` (first-stage vectors). The default is the
best the model has.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from slsearch.errors import InputError, SlsearchError
from slsearch.eval.metrics import DEFAULT_KS, retrieval_metrics
from slsearch.progress import Progress
from slsearch.rank import ClipSide, RankingPipeline, RetrievalModel, TextSide



def _reconstruct(index, ids: np.ndarray) -> np.ndarray:
    """Stored vectors back from a FAISS index (exact for Flat/HNSW/IVF-Flat, approximate for PQ)."""
    import faiss

    ivf = None
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        pass
    if ivf is not None:
        ivf.make_direct_map()
    try:
        return np.stack([index.reconstruct(int(i)) for i in ids]).astype(np.float32)
    except RuntimeError as e:
        raise SlsearchError(f"this index cannot return its vectors for --score global ({str(e).splitlines()[-1]}); "
                            "evaluate with --model and --manifest instead") from None


def _index_pipeline(info: dict[str, Any]) -> RankingPipeline:
    """The cascade of the checkpoint that built the index, if it is still there with the same weights (the
    stored gloss readings and token states are those weights'); CiCo alone at its temperature otherwise."""
    from slsearch.models.checkpoint import WEIGHTS_FILE, file_hash
    from slsearch.models.similarity import CICO_TEMPERATURE
    from slsearch.rank import load_retrieval_model

    ckpt = info.get("checkpoint") or {}
    path = ckpt.get("path")
    if path and (Path(path) / WEIGHTS_FILE).is_file() and file_hash(Path(path) / WEIGHTS_FILE) == ckpt.get("hash"):
        return RankingPipeline(load_retrieval_model(path))
    try:
        temperature = float(json.loads((Path(path or "") / "config.json").read_text())["model"]["cico_temperature"])
    except (OSError, KeyError, ValueError, TypeError):
        temperature = CICO_TEMPERATURE
    return RankingPipeline(None, temperature)


def _metrics(pipeline: RankingPipeline, clips: ClipSide, texts: TextSide, column: np.ndarray,
             clip_texts: list[str], ks: Sequence[int], score: str, progress: Progress | None) -> dict[str, float]:
    """R@K of both directions; texts are the distinct sentences, `column[i]` clip i's own."""
    s = pipeline.score_matrix(clips, texts, score, progress=progress or None)
    return retrieval_metrics(s["t2v"][:, column], clip_texts, ks, v2t_scores=s["v2t"][:, column])


class _Chained(Sequence):
    """Several sequences of token arrays read as one (the shards of a set, in order); a slice reads each
    part's share at once, as StoredTokens does."""

    def __init__(self, parts: Sequence[Sequence[np.ndarray]]):
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i):
        if isinstance(i, slice):
            lo, hi, step = i.indices(len(self))
            if step != 1:
                return [self[j] for j in range(lo, hi, step)]
            out: list[np.ndarray] = []
            for part, start in zip(self.parts, self.starts[:-1]):
                a, b = max(lo - start, 0), min(hi - start, len(part))
                if a < b:
                    out += list(part[int(a):int(b)])
            return out
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} of {len(self)}")
        i %= len(self)
        k = int(np.searchsorted(self.starts, i, side="right") - 1)
        return self.parts[k][i - int(self.starts[k])]


def _tokens(collections: list[tuple[Any, Any]], rows_per: list[np.ndarray]) -> Sequence[np.ndarray]:
    """The stored token states of the chosen rows of each (collection, token store), in order."""
    from slsearch.index.store import StoredTokens

    parts = [StoredTokens(store, *(coll.column(c)[rows] for c in ("token_segment", "token_offset", "token_count")))
             for (coll, store), rows in zip(collections, rows_per)]
    return parts[0] if len(parts) == 1 else _Chained(parts)


def evaluate_index(index_dir: str | Path, ks: Sequence[int] = DEFAULT_KS, split: str | None = None,
                   score: str | None = None, progress: Progress | None = None,
                   prefer_split: str | None = None) -> dict[str, Any]:
    """R@K both directions over the indexed clips that have text (optionally one split). Without
    `split`, `prefer_split` (e.g. "test") is used when the index has clips with text in it, else every
    clip with text (`slsearch eval` with no options). A shard set is evaluated as one index over all its
    shards' clips (a sentence several shards hold is one sentence)."""
    from slsearch.index.shards import is_shard_set, shard_folders
    from slsearch.index.store import load_index

    t0 = time.perf_counter()
    shards = [load_index(folder) for _, folder in shard_folders(index_dir, local_only="eval")]
    idx = shards[0]
    if len({ix.info["checkpoint"]["hash"] for ix in shards}) > 1:
        raise SlsearchError(f"{index_dir}: its shards were built with different checkpoints "
                            f"({', '.join(sorted({ix.info['checkpoint']['hash'] for ix in shards}))}); "
                            "vectors of two models are not comparable")
    with_texts = [ix for ix in shards if ix.texts is not None]
    if not with_texts:
        raise SlsearchError(f"{index_dir}: the index has no sentences (built without a manifest with text)")

    def clip_column(name: str) -> np.ndarray:
        return np.concatenate([ix.clips.column(name) for ix in shards]) if len(shards) > 1 else idx.clips.column(name)

    # each clip's row among the sentences: by id in one index; by the sentence itself across shards
    if not is_shard_set(index_dir):
        text_row = np.where(clip_column("text_id") >= 0, idx.texts.row_of_id[np.maximum(clip_column("text_id"), 0)], -1)
    else:
        row_of_text: dict[str, int] = {}
        for r, t in enumerate(np.concatenate([ix.texts.column("text") for ix in with_texts]).tolist()):
            row_of_text.setdefault(t, r)
        text_row = np.array([row_of_text.get(t, -1) if t is not None else -1 for t in clip_column("text").tolist()],
                            dtype=np.int64)
    keep = text_row >= 0
    note = None
    if split is None and prefer_split is not None:
        if (keep & np.array([s == prefer_split for s in clip_column("split")])).any():
            split, note = prefer_split, f"the index's {prefer_split} split (the default)"
        else:
            note = f"every clip with a sentence (the default: the index has no {prefer_split} split)"
    if split is not None:
        splits = clip_column("split")
        keep &= np.array([s == split for s in splits])
        if not keep.any():
            known = sorted({str(s) for s in splits if s is not None})
            raise SlsearchError(f"{index_dir}: no clips with text in split {split!r} (splits: {', '.join(known) or 'none'})")
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise SlsearchError(f"{index_dir}: no indexed clip has a sentence to evaluate against")
    # Distinct sentences are scored once; clip i's paired column is its own sentence's row.
    distinct, column = np.unique(text_row[rows], return_inverse=True)
    readings = clip_column("gloss_reading")[rows]
    readings = None if any(r is None for r in readings) else [str(r) for r in readings]
    pipeline = _index_pipeline(idx.info)
    dims, net = idx.info["dims"], pipeline.model.net if pipeline.model is not None else None
    if net is not None and (net.embed_dim, net.token_dim) != (dims["global"], dims["token"]):
        raise InputError(index_dir, f"index.json records vectors of {dims['global']} and token states of "
                                    f"{dims['token']} dimensions, its checkpoint makes {net.embed_dim} and "
                                    f"{net.token_dim}; the index is damaged, rebuild it")
    score = pipeline.resolve_score(score, readings is not None, str(index_dir))
    lexicon = pipeline.lexicon
    priors = clip_column("reading_prior")[rows].astype(np.float32)
    stored_priors = (lexicon is not None and all(ix.info.get("lexicon") == lexicon.lexicon.fingerprint for ix in shards)
                     and not np.isnan(priors).any())
    # the chosen rows of each shard (rows are ascending, so shard by shard)
    clip_starts = np.cumsum([0] + [len(ix.clips) for ix in shards])
    clip_rows = [rows[(rows >= a) & (rows < b)] - a for a, b in zip(clip_starts[:-1], clip_starts[1:])]
    text_starts = np.cumsum([0] + [len(ix.texts) for ix in with_texts])
    text_rows = [distinct[(distinct >= a) & (distinct < b)] - a for a, b in zip(text_starts[:-1], text_starts[1:])]

    def text_column(name: str) -> np.ndarray:
        return np.concatenate([ix.texts.column(name)[r] for ix, r in zip(with_texts, text_rows)])

    def vectors(collections, rows_per) -> np.ndarray | None:
        if score != "global":
            return None
        return np.concatenate([_reconstruct(c.index, c.column("faiss_id")[r]) for c, r in zip(collections, rows_per)])

    sentence_priors = text_column("sentence_prior").astype(np.float32)
    clip_side = ClipSide(_tokens([(ix.clips, ix.token_store("clips")) for ix in shards], clip_rows),
                         readings, priors if stored_priors else None,
                         vectors([ix.clips for ix in shards], clip_rows))
    text_side = TextSide([str(t) for t in text_column("text")],
                         _tokens([(ix.texts, ix.token_store("texts")) for ix in with_texts], text_rows),
                         None if np.isnan(sentence_priors).any() else sentence_priors,
                         vectors([ix.texts for ix in with_texts], text_rows))
    texts = [str(t) for t in clip_column("text")[rows]]
    metrics = _metrics(pipeline, clip_side, text_side, column, texts, ks, score, progress)
    return {"metrics": metrics, "source": str(index_dir), "checkpoint": (idx.info.get("checkpoint") or {}).get("hash"),
            "split": split, "score": score, "stages": pipeline.stages(score, reader_tokens=False), "ks": list(ks),
            "count": len(rows),
            **({"split_note": note} if note else {}), "seconds": round(time.perf_counter() - t0, 2)}


def evaluate_model(model: RetrievalModel | str | Path, manifest: str | Path, ks: Sequence[int] = DEFAULT_KS,
                   split: str | None = None, score: str | None = None, batch_size: int = 32,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Encode the manifest's clips and sentences with a checkpoint, then R@K as `evaluate_index`."""
    from slsearch.data.manifest import read_manifest
    from slsearch.encode import encode_texts, encode_videos
    from slsearch.rank import load_retrieval_model

    t0 = time.perf_counter()
    clips = [c for c in read_manifest(manifest) if c.text and (split is None or c.split == split)]
    if not clips:
        raise SlsearchError(f"{manifest}: no clips with text{f' in split {split!r}' if split else ''}")
    if not isinstance(model, RetrievalModel):
        model = load_retrieval_model(model)
    pipeline = RankingPipeline(model)
    score = pipeline.resolve_score(score, model.reads_glosses, str(model.path or "model"))
    texts = [c.text for c in clips]
    distinct = sorted(set(texts))
    position = {t: i for i, t in enumerate(distinct)}
    column = np.array([position[t] for t in texts])
    v = encode_videos(model.net, clips, batch_size=batch_size, progress=progress or None)
    t = encode_texts(model.net, distinct, progress=progress or None)
    reader_tokens = model.reader.encode(clips, progress or None) if pipeline.reads_clips_again(score) else None
    metrics = _metrics(pipeline, ClipSide(v.tokens, v.readings, vectors=v.vectors, reader_tokens=reader_tokens),
                       TextSide(distinct, t.tokens, vectors=t.vectors), column, texts, ks, score, progress)
    return {"metrics": metrics, "source": str(manifest), "checkpoint": model.hash, "split": split,
            "score": score, "stages": pipeline.stages(score), "ks": list(ks), "count": len(clips),
            "seconds": round(time.perf_counter() - t0, 2)}
