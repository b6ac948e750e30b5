"""Evaluation on dev during training: paired R@K with the CiCo and global scores, or translation BLEU.

Retrieval metrics come from `slsearch.eval.metrics` (the paper protocol: clip i and sentence i are the
only match, ties against the query), under the keys `cico_t2v_R@1`, `global_v2t_MedR`, ... The encoded
dev set comes back too, so the ranking stages are fitted on the best epoch without encoding it again.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from slsearch.encode import encode_texts, encode_videos
from slsearch.eval.metrics import DEFAULT_KS, retrieval_metrics
from slsearch.progress import Progress
from slsearch.rank import ClipSide, TextSide
from slsearch.rank.cico import cico_matrix


def recall_metrics(scores: np.ndarray, prefix: str, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """A paired (clips, texts) matrix -> {prefix}t2v_R@K, {prefix}v2t_MedR, ... (paper protocol)."""
    return {prefix + k.split("/", 1)[1]: v for k, v in retrieval_metrics(scores, None, ks).items() if "/" in k}


def encode_dev(model, videos: Sequence, texts: Sequence[str], batch_size: int = 64,
               progress: Progress | None = None) -> tuple[ClipSide, TextSide]:
    """Paired dev clips and sentences as the ranking cascade takes them."""
    v = encode_videos(model, videos, batch_size=batch_size, progress=progress)
    t = encode_texts(model, list(texts), batch_size=max(batch_size, 128), progress=progress)
    return ClipSide(v.tokens, v.readings, vectors=v.vectors), TextSide(list(texts), t.tokens, vectors=t.vectors)


def evaluate_retrieval(model, videos: Sequence, texts: Sequence[str], batch_size: int = 64,
                       ks: Sequence[int] = DEFAULT_KS) -> tuple[dict[str, float], tuple[ClipSide, TextSide]]:
    """R@K with the CiCo score (`cico_`) and the global cosine (`global_`); `score` (what picks the best
    epoch) is their CiCo R@1 mean. Returns the metrics and the encoded dev set."""
    clips, sentences = encode_dev(model, videos, texts, batch_size)
    metrics = recall_metrics(cico_matrix(clips.tokens, sentences.tokens, model.config.cico_temperature), "cico_", ks)
    metrics.update(recall_metrics(clips.vectors @ sentences.vectors.T, "global_", ks))
    metrics["score"] = 0.5 * (metrics["cico_t2v_R@1"] + metrics["cico_v2t_R@1"])
    return metrics, (clips, sentences)


def evaluate_translation(model, videos: Sequence, texts: Sequence[str], settings, batch_size: int = 64
                         ) -> dict[str, float]:
    """Translate the dev clips with `settings` (a DecodeConfig); BLEU-1..4, chrF, ROUGE-L, and
    `score` = BLEU-4 (the translate stage's pick)."""
    from slsearch.eval.translation_metrics import translation_metrics
    from slsearch.models.translator import translate

    hyps = [t.text for t in translate(model, videos, settings, batch_size=batch_size)]
    metrics = translation_metrics(hyps, list(texts))
    metrics["score"] = metrics["BLEU-4"]
    return metrics
