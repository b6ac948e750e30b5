"""`slsearch eval --recall`: dense score matrices over a test set, then R@K / MedR / MeanR.

Two sources: an index folder (its stored token states and vectors, so nothing is re-encoded; its
checkpoint, when still there with the same weights, lends the lexicon and the decoder) or a checkpoint
plus a manifest (encoded here). The matrices come from the ranking cascade (`slsearch.rank`), the same
code a search ranks with. Scores: `full` (CiCo + gloss lexicon, then the decoder likelihood on each
query's first candidates: what search ranks by when the model has every stage), `fused` (CiCo + gloss
lexicon), `cico`, `lexical` (the lexicon alone) and `global` (first-stage vectors). The default is the
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


def evaluate_index(index_dir: str | Path, ks: Sequence[int] = DEFAULT_KS, split: str | None = None,
                   score: str | None = None, progress: Progress | None = None,
                   prefer_split: str | None = None) -> dict[str, Any]:
    """R@K both directions over the indexed clips that have text (optionally one split). Without
    `split`, `prefer_split` (e.g. "test") is used when the index has clips with text in it, else every
    clip with text (`slsearch eval` with no options)."""
    from slsearch.index.store import StoredTokens, load_index

    t0 = time.perf_counter()
    idx = load_index(index_dir)
    clips = idx.clips
    if idx.texts is None:
        raise SlsearchError(f"{index_dir}: the index has no sentences (built without a manifest with text)")
    text_id = clips.column("text_id")
    keep = text_id >= 0
    note = None
    if split is None and prefer_split is not None:
        if (keep & np.array([s == prefer_split for s in clips.column("split")])).any():
            split, note = prefer_split, f"the index's {prefer_split} split (the default)"
        else:
            note = f"every clip with a sentence (the default: the index has no {prefer_split} split)"
    if split is not None:
        splits = clips.column("split")
        keep &= np.array([s == split for s in splits])
        if not keep.any():
            known = sorted({str(s) for s in splits if s is not None})
            raise SlsearchError(f"{index_dir}: no clips with text in split {split!r} (splits: {', '.join(known) or 'none'})")
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise SlsearchError(f"{index_dir}: no indexed clip has a sentence to evaluate against")
    # Distinct sentences are scored once; clip i's paired column is its own sentence's row.
    distinct, column = np.unique(idx.texts.row_of_id[text_id[rows]], return_inverse=True)
    readings = clips.column("gloss_reading")[rows]
    readings = None if any(r is None for r in readings) else [str(r) for r in readings]
    pipeline = _index_pipeline(idx.info)
    dims, net = idx.info["dims"], pipeline.model.net if pipeline.model is not None else None
    if net is not None and (net.embed_dim, net.token_dim) != (dims["global"], dims["token"]):
        raise InputError(index_dir, f"index.json records vectors of {dims['global']} and token states of "
                                    f"{dims['token']} dimensions, its checkpoint makes {net.embed_dim} and "
                                    f"{net.token_dim}; the index is damaged, rebuild it")
    score = pipeline.resolve_score(score, readings is not None, str(index_dir))
    lexicon = pipeline.lexicon
    priors = clips.column("reading_prior")[rows].astype(np.float32)
    stored_priors = (lexicon is not None and idx.info.get("lexicon") == lexicon.lexicon.fingerprint
                     and not np.isnan(priors).any())
    tcoll = idx.texts
    sentence_priors = tcoll.column("sentence_prior")[distinct].astype(np.float32)
    clip_side = ClipSide(
        StoredTokens(idx.token_store("clips"), *(clips.column(c)[rows] for c in ("token_segment", "token_offset",
                                                                                  "token_count"))),
        readings, priors if stored_priors else None,
        _reconstruct(clips.index, clips.column("faiss_id")[rows]) if score == "global" else None)
    text_side = TextSide(
        [str(t) for t in tcoll.column("text")[distinct]],
        StoredTokens(idx.token_store("texts"), *(tcoll.column(c)[distinct] for c in ("token_segment", "token_offset",
                                                                                      "token_count"))),
        None if np.isnan(sentence_priors).any() else sentence_priors,
        _reconstruct(tcoll.index, tcoll.column("faiss_id")[distinct]) if score == "global" else None)
    texts = [str(t) for t in clips.column("text")[rows]]
    metrics = _metrics(pipeline, clip_side, text_side, column, texts, ks, score, progress)
    return {"metrics": metrics, "source": str(index_dir), "checkpoint": (idx.info.get("checkpoint") or {}).get("hash"),
            "split": split, "score": score, "ks": list(ks), "count": len(rows),
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
    metrics = _metrics(pipeline, ClipSide(v.tokens, v.readings, vectors=v.vectors),
                       TextSide(distinct, t.tokens, vectors=t.vectors), column, texts, ks, score, progress)
    return {"metrics": metrics, "source": str(manifest), "checkpoint": model.hash, "split": split,
            "score": score, "ks": list(ks), "count": len(clips), "seconds": round(time.perf_counter() - t0, 2)}
