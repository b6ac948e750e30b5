"""Learn the gloss lexicon and fit the ranking stages' weights on dev.

`train` calls `calibrate_stages` at the end of a joint run with the best weights in memory, the dev set it
already encoded for that epoch and a bank of its training clips for the hubness stage. `slsearch lexicon`
(`relearn_lexicon`) and `slsearch calibrate` (`recalibrate`) do it again for an existing checkpoint,
loading it once and encoding dev once; the weights, and so any index built with them, stay as they are.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from slsearch.data.manifest import Clip
from slsearch.data.pseudo_glosses import use_pseudo_glosses
from slsearch.errors import SlsearchError
from slsearch.models.lexicon import Lexicon
from slsearch.progress import Progress
from slsearch.rank import ClipSide, RetrievalModel, TextSide, fit_stages, load_retrieval_model
from slsearch.rank.hubness_stage import BANK_SIZE
from slsearch.rank.likelihood_stage import LikelihoodStage
from slsearch.rank.reader_stage import ReaderStage, check_reader
from slsearch.training.data import load_features, read_training_manifest
from slsearch.training.dev_eval import encode_dev
from slsearch.training.recipe import LexiconConfig


def with_own_readings(net, clips: Sequence[Clip], features: Sequence, progress: Progress | None = None) -> list[Clip]:
    """Copies of the training clips whose glosses are what the model reads in them (greedy CTC): a lexicon
    learnt from these pairs knows what the readings it will score actually say, errors included."""
    readings = encode_dev(net, features, [c.text for c in clips], progress=progress)[0].readings
    return [replace(c, gloss=r or None) for c, r in zip(clips, readings)]


def learn_lexicon(train_clips: Sequence[Clip], config: LexiconConfig) -> Lexicon | None:
    """The word <-> gloss lexicon of the training manifest's sentence/gloss pairs (seconds); None when it
    has no glosses. Its fusion weights are fitted afterwards, on dev."""
    pairs = [(c.text, c.gloss) for c in train_clips if c.text and c.gloss]
    if not pairs:
        return None
    return Lexicon.train([t for t, _ in pairs], [g for _, g in pairs], config.prefix, config.iterations,
                         config.smoothing, config.alignment, config.tension)


def hubness_bank(net, features: Sequence, size: int, seed: int = 0,
                 progress: Progress | None = None) -> ClipSide | None:
    """The hubness stage's bank: a fixed sample of `size` of the training clips (their front-end features),
    encoded. None for size 0."""
    from slsearch.encode import encode_videos

    if size <= 0 or not len(features):
        return None
    pick = np.sort(np.random.default_rng(seed).choice(len(features), min(size, len(features)), replace=False))
    v = encode_videos(net, [features[i] for i in pick], progress=progress)
    return ClipSide(v.tokens, v.readings)


def calibrate_stages(model: RetrievalModel, dev: tuple[ClipSide, TextSide], lexicon: Lexicon | None = None,
                     likelihood_depth: int | None = None, bank: ClipSide | None = None,
                     reader: ReaderStage | None = None) -> dict[str, dict]:
    """Fit the stages on the encoded dev set (see `slsearch.rank.fit_stages`) and save them beside the
    model's weights."""
    report = fit_stages(model, *dev, lexicon=lexicon, likelihood_depth=likelihood_depth, bank=bank, reader=reader)
    model.save_stages()
    return report


def _encoded_dev(model: RetrievalModel, dev: str | Path, progress: Progress | None,
                 reader: ReaderStage | None = None) -> tuple[ClipSide, TextSide]:
    """The dev set encoded by the model, and by `reader` (its own token states) when given."""
    net = model.net
    dev_set = load_features(read_training_manifest(dev), net.video.front_end, net.temporal_stride, dev, progress)
    clips, texts = encode_dev(net, dev_set.features, dev_set.texts, progress=progress)
    if reader is not None:
        clips.reader_tokens = reader.encode(dev_set.features, progress)
    return clips, texts


def relearn_lexicon(checkpoint: str | Path, manifest: str | Path, dev: str | Path, config: LexiconConfig,
                    progress: Progress | None = None, from_readings: bool = False) -> RetrievalModel:
    """(Re)learn the lexicon of an existing checkpoint from a training manifest with glosses (a model trained
    on pseudo-glosses: the sentences' pseudo-glosses, as in training) and fit its weights on `dev`; the
    likelihood stage, which re-ranks the lexicon's order, is fitted again too.

    `from_readings`: pair each training sentence with what the model itself reads in its clip instead of
    the manifest's glosses. The table then learns what the readings the lexicon will score actually say,
    errors included (a reading that confuses two signs, or spots a word the signing does not show), and a
    manifest without glosses will do."""
    model = load_retrieval_model(checkpoint)
    if not model.reads_glosses:
        raise SlsearchError(f"{checkpoint}: this model has no gloss head, so there are no gloss readings for a "
                            "lexicon to score; train with loss.gloss_weight > 0 on a manifest with glosses")
    clips = read_training_manifest(manifest)
    if from_readings:
        net = model.net
        train_set = load_features(clips, net.video.front_end, net.temporal_stride, manifest, progress)
        clips = with_own_readings(net, clips, train_set.features, progress)
    elif (loss := model.recipe.get("loss") or {}).get("pseudo_glosses"):
        # as in training; models from before lemmas existed made them by frequency
        use_pseudo_glosses(clips, method=loss.get("pseudo_gloss_method", "frequency"),
                           language=loss.get("pseudo_gloss_language", ""))
    lexicon = learn_lexicon(clips, config)
    if lexicon is None:
        raise SlsearchError(f"{manifest}: no clip has glosses (a 'gloss' column) to learn a lexicon from" +
                            ("" if from_readings else "; --from-readings learns from the model's own readings"))
    depth = model.likelihood.depth if model.likelihood is not None else None
    calibrate_stages(model, _encoded_dev(model, dev, progress, model.reader), lexicon, depth)
    return model


def recalibrate(checkpoint: str | Path, dev: str | Path, depth: int, bank: str | Path | None = None,
                bank_size: int = BANK_SIZE, progress: Progress | None = None,
                reader: str | Path | None = None) -> RetrievalModel:
    """Fit the decoder-likelihood stage of an existing checkpoint whose decoder was trained (loss.lm_weight > 0),
    with `bank` (a training manifest) a new hubness stage on a sample of `bank_size` of its clips, and with
    `reader` (a translate-stage checkpoint) a V2T reader stage; a reader the model has already is fitted again."""
    model = load_retrieval_model(checkpoint)
    if not (model.recipe.get("loss") or {}).get("lm_weight", 1.0):
        raise SlsearchError(f"{checkpoint}: its decoder was not trained (loss.lm_weight = 0), so its likelihood "
                            "says nothing about the clips; there is nothing to calibrate")
    bank_side = None
    if bank is not None:
        net = model.net
        clips = read_training_manifest(bank)
        seed = (model.recipe.get("train") or {}).get("seed", 0)
        pick = np.sort(np.random.default_rng(seed).choice(len(clips), min(bank_size, len(clips)), replace=False))
        bank_set = load_features([clips[i] for i in pick], net.video.front_end, net.temporal_stride, bank, progress)
        bank_side = hubness_bank(net, bank_set.features, len(pick), seed, progress)
    reader_stage = None
    if reader is not None:
        reader_stage = ReaderStage(Path(reader), LikelihoodStage(depth=depth))
        check_reader(model.net, reader_stage.net, str(reader))
    reader_stage = reader_stage or model.reader
    calibrate_stages(model, _encoded_dev(model, dev, progress, reader_stage), likelihood_depth=depth, bank=bank_side,
                     reader=reader_stage)
    return model
