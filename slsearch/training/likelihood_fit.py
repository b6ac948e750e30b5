"""After a joint run (and its lexicon): pick the decoder-likelihood stage's weights on dev.

The stage re-ranks what CiCo + lexicon put first, so its weights are picked on that stage's own
dev scores; it runs after `fit_lexicon` and writes likelihood.json beside the checkpoint's weights.
`slsearch calibrate` does it again for an existing checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slsearch.encode import encode_texts, encode_videos
from slsearch.errors import SlsearchError
from slsearch.models.checkpoint import load_model, read_config
from slsearch.models.likelihood import DEFAULT_DEPTH, LikelihoodReranker
from slsearch.training.data import FeatureSet, load_features, read_training_manifest
from slsearch.training.dev_eval import cico_matrix


def stage_two_matrices(model, videos, texts: list[str], cico: np.ndarray) -> dict[str, np.ndarray]:
    """(clips, texts) scores of the stage before likelihood: CiCo fused with the lexicon where the model
    has a calibrated one, CiCo alone otherwise."""
    lexicon = getattr(model, "lexicon", None)
    if lexicon is None or not lexicon.fusion or videos.readings is None:
        return {"t2v": cico, "v2t": cico}
    return {d: lexicon.fuse(cico, lexicon.lexical_matrix(videos.readings, texts, d), d) for d in ("t2v", "v2t")}


def fit_likelihood(checkpoint: str | Path, dev_set: FeatureSet, batch_size: int = 64,
                   depth: int = DEFAULT_DEPTH) -> LikelihoodReranker:
    """Calibrate and save the likelihood stage of `checkpoint` on a paired dev set."""
    model = load_model(checkpoint)
    texts = list(dev_set.texts)
    videos = encode_videos(model, dev_set.features, batch_size=batch_size)
    encoded_texts = encode_texts(model, texts, batch_size=max(batch_size, 128))
    cico = cico_matrix(videos, encoded_texts, model.config.cico_temperature).numpy()
    reranker = LikelihoodReranker(depth=depth)
    reranker.calibrate(model, stage_two_matrices(model, videos, texts, cico), videos.tokens, texts)
    reranker.save(checkpoint)
    return reranker


def refit_likelihood(checkpoint: str | Path, dev: str | Path, depth: int = DEFAULT_DEPTH,
                     progress: bool = True) -> LikelihoodReranker:
    """`fit_likelihood` for an existing checkpoint whose decoder was trained (loss.lm_weight > 0)."""
    recipe = read_config(checkpoint).get("recipe") or {}
    if not (recipe.get("loss") or {}).get("lm_weight", 1.0):
        raise SlsearchError(f"{checkpoint}: its decoder was not trained (loss.lm_weight = 0), so its likelihood "
                            "says nothing about the clips; there is nothing to calibrate")
    model = load_model(checkpoint)
    dev_set = load_features(read_training_manifest(dev), model.video.front_end, model.temporal_stride, dev, progress)
    return fit_likelihood(checkpoint, dev_set, depth=depth)
