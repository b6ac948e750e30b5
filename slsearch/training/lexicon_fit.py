"""After a joint run: learn the gloss lexicon and pick its fusion weights on dev (seconds).

The lexicon comes from the training manifest's sentence/gloss pairs; the weights need the best
checkpoint's own dev scores (its CiCo matrix and gloss readings), so this runs once the run's
best epoch is known, and writes lexicon.npz beside that checkpoint's weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from slsearch.data.manifest import Clip
from slsearch.encode import encode_texts, encode_videos
from slsearch.models.checkpoint import load_model
from slsearch.models.lexicon import Lexicon
from slsearch.training.data import FeatureSet
from slsearch.training.dev_eval import cico_matrix
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
                            config.smoothing)
    videos = encode_videos(model, dev_set.features, batch_size=batch_size)
    texts = encode_texts(model, list(dev_set.texts), batch_size=max(batch_size, 128))
    cico = cico_matrix(videos, texts, model.config.cico_temperature).numpy()
    lexicon.calibrate(cico, videos.readings, list(dev_set.texts))
    lexicon.save(checkpoint)
    return lexicon
