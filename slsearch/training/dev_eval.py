"""Retrieval on a dev set during training: paired R@K both directions, CiCo and global scores.

Paper protocol: clip i and sentence i are the only match. Ties count against the query (a score
equal to the match's, at a lower index, ranks before it), so the result is deterministic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from slsearch.encode import Encoded, encode_texts, encode_videos
from slsearch.models.similarity import cico_similarity, global_similarity, pad_tokens


def paired_ranks(scores: torch.Tensor) -> torch.Tensor:
    """scores (N, N), match on the diagonal -> 1-based rank of each row's match (N,)."""
    s = scores.float()
    diag = s.diagonal()[:, None]
    n = s.shape[0]
    before = torch.arange(n)[None, :] < torch.arange(n)[:, None]  # column index below the match's
    return 1 + ((s > diag) | ((s == diag) & before)).sum(1)


def recall_metrics(scores: torch.Tensor, prefix: str, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """scores (N videos, N texts) -> {prefix}t2v_R@K, {prefix}v2t_R@K (percent), medr."""
    out: dict[str, float] = {}
    for name, s in (("t2v", scores.T), ("v2t", scores)):
        r = paired_ranks(s)
        for k in ks:
            out[f"{prefix}{name}_R@{k}"] = 100.0 * float((r <= k).float().mean())
        out[f"{prefix}{name}_MedR"] = float(r.float().median())
    return out


def cico_matrix(videos: Encoded, texts: Encoded, temperature: float = 0.07) -> torch.Tensor:
    vt, vm = pad_tokens(videos.tokens)
    tt, tm = pad_tokens(texts.tokens)
    return cico_similarity(vt, vm, tt, tm, temperature)


def evaluate_retrieval(model, videos: Sequence, texts: Sequence[str], batch_size: int = 64,
                       ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Encode paired clips and sentences; R@K with the CiCo score (`cico_`) and the global cosine (`global_`)."""
    v = encode_videos(model, videos, batch_size=batch_size)
    t = encode_texts(model, list(texts), batch_size=max(batch_size, 128))
    with torch.no_grad():
        metrics = recall_metrics(cico_matrix(v, t, model.config.cico_temperature), "cico_", ks)
        metrics.update(recall_metrics(global_similarity(v.vectors, t.vectors), "global_", ks))
    metrics["score"] = 0.5 * (metrics["cico_t2v_R@1"] + metrics["cico_v2t_R@1"])
    return metrics


def evaluate_translation(model, videos: Sequence, texts: Sequence[str], beam: int = 1,
                         batch_size: int = 64) -> dict[str, float]:
    """Translate the dev clips; BLEU-1..4, chrF, ROUGE-L, and `score` = BLEU-4 (the translate stage's pick)."""
    from slsearch.eval.translation_metrics import translation_metrics
    from slsearch.models.translator import translate

    hyps = [t.text for t in translate(model, videos, beam=beam, batch_size=batch_size)]
    metrics = translation_metrics(hyps, list(texts))
    metrics["score"] = metrics["BLEU-4"]
    return metrics
