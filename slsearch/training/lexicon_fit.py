"""After a joint run: learn the gloss lexicon and pick its fusion weights on dev (seconds).

The lexicon comes from the training manifest's sentence/gloss pairs; the weights need the best
checkpoint's own dev scores (its CiCo matrix and gloss readings), so this runs once the run's
best epoch is known, and writes lexicon.npz beside that checkpoint's weights. `refit_lexicon` does
the same for an existing checkpoint (`slsearch lexicon`): one trained before lexicons existed, or
with other lexicon settings, and then recalibrates the checkpoint's likelihood stage, which re-ranks
the lexicon's order. The weights, and so any index built with them, stay as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from slsearch.data.manifest import Clip
from slsearch.encode import encode_texts, encode_videos
from slsearch.errors import SlsearchError
from slsearch.models.checkpoint import load_model
from slsearch.models.lexicon import Lexicon
from slsearch.training.data import FeatureSet, load_features, read_training_manifest
from slsearch.training.dev_eval import cico_matrix
from slsearch.training.likelihood_fit import fit_likelihood
from slsearch.training.recipe import LexiconConfig


def fit_lexicon(checkpoint: str | Path, train_clips: Sequence[Clip], dev_set: FeatureSet, config: LexiconConfig,
                batch_size: int = 64) -> Lexicon | None:
    """Learn, calibrate and save the lexicon of `checkpoint`; None when its model reads no glosses or
    the training manifest has none."""
    model = load_model(checkpoint)
    pairs = [(c.text, c.gloss) for c in train_clips if c.text and c.gloss]
    if model.video.gloss_head is None or not pairs:
        return None
    lexicon = Lexicon.train([t for t, _ in pairs], [g for _, g in pairs], config.prefix, config.iterations,
                            config.smoothing, config.alignment, config.tension)
    videos = encode_videos(model, dev_set.features, batch_size=batch_size)
    texts = encode_texts(model, list(dev_set.texts), batch_size=max(batch_size, 128))
    cico = cico_matrix(videos, texts, model.config.cico_temperature).numpy()
    lexicon.calibrate(cico, videos.readings, list(dev_set.texts))
    lexicon.save(checkpoint)
    return lexicon


def refit_lexicon(checkpoint: str | Path, manifest: str | Path, dev: str | Path, config: LexiconConfig,
                  progress: bool = True) -> Lexicon:
    """(Re)learn the lexicon of an existing checkpoint from a training manifest with glosses; pick its
    fusion weights on `dev`."""
    model = load_model(checkpoint)
    if model.video.gloss_head is None:
        raise SlsearchError(f"{checkpoint}: this model has no gloss head, so there are no gloss readings for a "
                            "lexicon to score; train with loss.gloss_weight > 0 on a manifest with glosses")
    train_clips = read_training_manifest(manifest)
    if not any(c.gloss for c in train_clips):
        raise SlsearchError(f"{manifest}: no clip has glosses (a 'gloss' column) to learn a lexicon from")
    dev_set = load_features(read_training_manifest(dev), model.video.front_end, model.temporal_stride, dev, progress)
    lexicon = fit_lexicon(checkpoint, train_clips, dev_set, config)
    if model.likelihood is not None:  # it re-ranks CiCo + lexicon: its weights were picked on the old lexicon
        fit_likelihood(checkpoint, dev_set, depth=model.likelihood.depth)
    return lexicon
