"""`slsearch eval --recall`: dense score matrices over a test set, then R@K / MedR / MeanR.

Two sources: an index folder (its stored token states and vectors, so nothing is re-encoded; its
checkpoint, when still there with the same weights, lends the lexicon and the decoder) or a checkpoint plus a manifest (encoded here). Scores: `full` (what search
ranks by when the model has a decoder-likelihood stage: `fused`, or `cico` for a model without a
lexicon, with each query's first candidates re-ranked by the decoder likelihood; the default then),
`fused` (CiCo plus the gloss lexicon's score), `cico`, `lexical` (the lexicon alone) and `global`
(first-stage vectors). The default is the best the model has: full, else fused, else cico.
The CiCo matrix is computed in blocks of clips against the distinct sentences, so tens of thousands of clips never
hold a clips x sentences x tokens x tokens array, nor an N x N float64 matrix, at once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from slsearch.console import progress_bar
from slsearch.errors import SlsearchError
from slsearch.eval.metrics import DEFAULT_KS, retrieval_metrics
from slsearch.models.similarity import cico_similarity, pad_tokens

SCORES = ("full", "fused", "cico", "lexical", "global")
CLIP_BLOCK = 256  # clips per block of the CiCo matrix


def _cico_matrix(video_blocks, text_tokens: list[np.ndarray], n_videos: int, temperature: float,
                 progress: bool) -> np.ndarray:
    """(n_videos, n_texts) float32 CiCo scores; `video_blocks` yields (tokens (b, L, d), mask (b, L))."""
    tt, tm = pad_tokens(text_tokens)
    out = np.empty((n_videos, len(text_tokens)), np.float32)
    row = 0
    with progress_bar(transient=True) as bar:
        task = bar.add_task("CiCo scores", total=n_videos, rate="", visible=progress)
        with torch.no_grad():
            for vt, vm in video_blocks:
                s = cico_similarity(torch.as_tensor(vt), torch.as_tensor(vm), tt, tm, temperature)
                out[row:row + len(s)] = s.numpy()
                row += len(s)
                bar.update(task, advance=len(s))
    return out


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


def _checkpoint_temperature(info: dict[str, Any]) -> float:
    """tau' of the model that built the index (its config, when the checkpoint is still there)."""
    import json

    from slsearch.models.similarity import CICO_TEMPERATURE

    cfg = Path((info.get("checkpoint") or {}).get("path") or "") / "config.json"
    try:
        return float(json.loads(cfg.read_text())["model"]["cico_temperature"])
    except (OSError, KeyError, ValueError, TypeError):
        return CICO_TEMPERATURE


def _pick_score(score: str | None, lexicon, has_readings: bool, where: str, likelihood=None) -> str:
    """The score to rank by: the asked one, checked to be available, or the best available (what a
    search ranks by)."""
    calibrated = lexicon is not None and bool(lexicon.fusion)
    usable = calibrated and has_readings
    # the likelihood stage re-ranks the stage it was calibrated on: with the lexicon if the model has one
    full = likelihood is not None and bool(likelihood.fusion) and (usable or not calibrated)
    if score is None:
        return "full" if full else "fused" if usable else "cico"
    if score == "full" and not full:
        why = ("its model has no decoder-likelihood stage (joint runs with the LM loss calibrate one; "
               "`slsearch calibrate` adds it to an older checkpoint)" if likelihood is None or not likelihood.fusion
               else "it holds no gloss readings for the lexicon stage below it (rebuild it with this model)")
        raise SlsearchError(f"{where}: --score full is not available: {why}")
    if score in ("fused", "lexical") and not usable:
        why = ("its model has no gloss lexicon (joint runs on manifests with glosses learn one)"
               if lexicon is None or not lexicon.fusion else "it holds no gloss readings (rebuild it with this model)")
        raise SlsearchError(f"{where}: --score {score} is not available: {why}")
    return score


def _with_likelihood(model, t2v: np.ndarray, v2t: np.ndarray | None, clip_tokens, texts: Sequence[str],
                     progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """The stage-2 (clips, distinct texts) matrices re-ranked per query by the decoder likelihood, as a
    search does."""
    v2t = t2v if v2t is None else v2t
    reranker = model.likelihood
    return (reranker.rerank_matrix(model, t2v, clip_tokens, texts, "t2v", progress),
            reranker.rerank_matrix(model, v2t, clip_tokens, texts, "v2t", progress))


def _lexicon_scores(score: str, cico: np.ndarray | None, lexicon, readings: Sequence[str],
                    texts: Sequence[str], priors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T2V matrix, V2T matrix), clips x texts, for the lexical or fused score. `priors`: the clips'
    reading priors where an index stores them for this lexicon."""
    t2v = lexicon.lexical_matrix(readings, texts, "t2v", priors)
    v2t = lexicon.lexical_matrix(readings, texts, "v2t")
    if score == "lexical":
        return t2v, v2t
    return lexicon.fuse(cico, t2v, "t2v"), lexicon.fuse(cico, v2t, "v2t")


def _checkpoint_model(info: dict[str, Any]):
    """The checkpoint that built the index (with its lexicon and likelihood stage), if it is still there
    with the same weights (the stored gloss readings and token states are those weights')."""
    from slsearch.models.checkpoint import WEIGHTS_FILE, file_hash, load_model

    ckpt = info.get("checkpoint") or {}
    path = ckpt.get("path")
    if not path or not (Path(path) / WEIGHTS_FILE).is_file() or file_hash(Path(path) / WEIGHTS_FILE) != ckpt.get("hash"):
        return None
    return load_model(path)


def _report(metrics: dict[str, float], settings: dict[str, Any]) -> dict[str, Any]:
    return {"metrics": metrics, **settings}


def evaluate_index(index_dir: str | Path, ks: Sequence[int] = DEFAULT_KS, split: str | None = None,
                   score: str | None = None, progress: bool = True) -> dict[str, Any]:
    """R@K both directions over the indexed clips that have text (optionally one split)."""
    from slsearch.index.store import load_index

    if score is not None and score not in SCORES:
        raise SlsearchError(f"--score must be one of {', '.join(SCORES)}, got {score!r}")
    t0 = time.perf_counter()
    idx = load_index(index_dir)
    clips = idx.clips
    if idx.texts is None:
        raise SlsearchError(f"{index_dir}: the index has no sentences (built without a manifest with text)")
    text_id = clips.column("text_id")
    keep = text_id >= 0
    if split is not None:
        splits = clips.column("split")
        keep &= np.array([s == split for s in splits])
        if not keep.any():
            known = sorted({str(s) for s in splits if s is not None})
            raise SlsearchError(f"{index_dir}: no clips with text in split {split!r} (splits: {', '.join(known) or 'none'})")
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise SlsearchError(f"{index_dir}: no indexed clip has a sentence to evaluate against")
    texts = [str(t) for t in clips.column("text")[rows]]
    # Distinct sentences are scored once; clip i's paired column is its own sentence's row.
    trow_of_id = idx.texts.row_of_id
    sent_rows = trow_of_id[text_id[rows]]
    distinct, column = np.unique(sent_rows, return_inverse=True)
    model = _checkpoint_model(idx.info)
    lexicon = getattr(model, "lexicon", None)
    readings = [None if r is None else str(r) for r in clips.column("gloss_reading")[rows]]
    score = _pick_score(score, lexicon, None not in readings, str(index_dir), getattr(model, "likelihood", None))
    v2t = None
    if score in ("cico", "fused", "full"):
        cstore, tstore = idx.token_store("clips"), idx.token_store("texts")
        seg, off, cnt = (clips.column(c)[rows] for c in ("token_segment", "token_offset", "token_count"))
        tseg, toff, tcnt = (idx.texts.column(c)[distinct] for c in ("token_segment", "token_offset", "token_count"))
        text_tokens = [tstore.gather_flat(tseg[i:i + 1], toff[i:i + 1], tcnt[i:i + 1]) for i in range(len(distinct))]
        blocks = (cstore.gather(seg[i:i + CLIP_BLOCK], off[i:i + CLIP_BLOCK], cnt[i:i + CLIP_BLOCK])
                  for i in range(0, len(rows), CLIP_BLOCK))
        temperature = _checkpoint_temperature(idx.info)
        s = _cico_matrix(blocks, text_tokens, len(rows), temperature, progress)
    elif score == "global":
        v = _reconstruct(clips.index, clips.column("faiss_id")[rows])
        t = _reconstruct(idx.texts.index, idx.texts.column("faiss_id")[distinct])
        s = v @ t.T
    distinct_texts = [str(t) for t in idx.texts.column("text")[distinct]]
    if score in ("fused", "lexical") or (score == "full" and lexicon is not None and lexicon.fusion):
        priors = clips.column("reading_prior")[rows].astype(np.float32)
        stored = idx.info.get("lexicon") == lexicon.fingerprint and not np.isnan(priors).any()
        s, v2t = _lexicon_scores(score, s if score != "lexical" else None, lexicon, readings, distinct_texts,
                                 priors if stored else None)
    if score == "full":
        clip_tokens = [cstore.gather_flat(seg[i:i + 1], off[i:i + 1], cnt[i:i + 1]) for i in range(len(rows))]
        s, v2t = _with_likelihood(model, s, v2t, clip_tokens, distinct_texts, progress)
    if v2t is not None:
        v2t = v2t[:, column]
    metrics = retrieval_metrics(s[:, column], texts, ks, v2t_scores=v2t)
    return _report(metrics, {"source": str(index_dir), "checkpoint": (idx.info.get("checkpoint") or {}).get("hash"),
                             "split": split, "score": score, "ks": list(ks), "count": len(rows),
                             "seconds": round(time.perf_counter() - t0, 2)})


def evaluate_model(model_dir: str | Path, manifest: str | Path, ks: Sequence[int] = DEFAULT_KS,
                   split: str | None = None, score: str | None = None, batch_size: int = 32,
                   progress: bool = True) -> dict[str, Any]:
    """Encode the manifest's clips and sentences with a checkpoint, then R@K as `evaluate_index`."""
    from slsearch.data.manifest import read_manifest
    from slsearch.encode import encode_texts, encode_videos
    from slsearch.models.checkpoint import load_model

    if score is not None and score not in SCORES:
        raise SlsearchError(f"--score must be one of {', '.join(SCORES)}, got {score!r}")
    t0 = time.perf_counter()
    clips = [c for c in read_manifest(manifest) if c.text and (split is None or c.split == split)]
    if not clips:
        raise SlsearchError(f"{manifest}: no clips with text{f' in split {split!r}' if split else ''}")
    model = load_model(model_dir)
    score = _pick_score(score, model.lexicon, model.video.gloss_head is not None, str(model_dir), model.likelihood)
    texts = [c.text for c in clips]
    distinct = sorted(set(texts))
    position = {t: i for i, t in enumerate(distinct)}
    column = np.array([position[t] for t in texts])
    v = encode_videos(model, clips, batch_size=batch_size, progress=progress)
    t = encode_texts(model, distinct, progress=progress)
    v2t = None
    if score in ("cico", "fused", "full"):
        blocks = (pad_tokens(v.tokens[i:i + CLIP_BLOCK]) for i in range(0, len(clips), CLIP_BLOCK))
        s = _cico_matrix(blocks, t.tokens, len(clips), model.config.cico_temperature, progress)
    elif score == "global":
        s = v.vectors @ t.vectors.T
    if score in ("fused", "lexical") or (score == "full" and model.lexicon is not None and model.lexicon.fusion):
        s, v2t = _lexicon_scores(score, s if score != "lexical" else None, model.lexicon, v.readings, distinct)
    if score == "full":
        s, v2t = _with_likelihood(model, s, v2t, v.tokens, distinct, progress)
    if v2t is not None:
        v2t = v2t[:, column]
    metrics = retrieval_metrics(s[:, column], texts, ks, v2t_scores=v2t)
    return _report(metrics, {"source": str(manifest), "checkpoint": model.checkpoint_hash, "split": split,
                             "score": score, "ks": list(ks), "count": len(clips),
                             "seconds": round(time.perf_counter() - t0, 2)})
