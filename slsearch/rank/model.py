"""The retrieval model: a checkpoint loaded once, with everything that ranks with it.

One typed object instead of attributes hung on the network: the weights and tokenizer (`net`), the
gloss lexicon, the hubness, decoder-likelihood and reader stages with their dev-picked weights, the decoding settings
and the hash that names the weights. Search, evaluation, calibration and the server take it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from slsearch.errors import SlsearchError
from slsearch.models.lexicon import LEXICON_FILE, Lexicon
from slsearch.models.model import SignTextModel
from slsearch.models.translator import DecodeConfig
from slsearch.rank.hubness_stage import HubnessStage
from slsearch.rank.likelihood_stage import LikelihoodStage
from slsearch.rank.reader_stage import ReaderStage


@dataclass
class RetrievalModel:
    net: SignTextModel  # towers, decoder, tokenizer; `net.checkpoint_hash` names the weights
    lexicon: Lexicon | None = None  # with its fusion weights (slsearch.rank.lexicon_stage), when learnt
    likelihood: LikelihoodStage | None = None  # when calibrated
    hubness: HubnessStage | None = None  # V2T: sentences discounted by their scores against training clips
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # how it translates by default
    path: Path | None = None  # the checkpoint folder it came from
    recipe: dict[str, Any] = field(default_factory=dict)  # the recipe it was trained with
    reader: ReaderStage | None = None  # V2T: a translate-stage checkpoint re-reads the first candidates

    @property
    def hash(self) -> str:
        return self.net.checkpoint_hash

    @property
    def temperature(self) -> float:
        """tau' of the CiCo score."""
        return self.net.config.cico_temperature

    @cached_property
    def fast_decoder(self) -> torch.nn.Module:
        """The decoder the likelihood stage reads candidates with (`fast_decoder_of`)."""
        return fast_decoder_of(self.net)

    @property
    def reads_glosses(self) -> bool:
        return self.net.video.gloss_head is not None

    def save_stages(self, folder: str | Path | None = None) -> None:
        """Write the lexicon, hubness, likelihood and reader stages beside the weights, marked with the weights' hash."""
        folder = Path(folder or self.path)
        for stage in (self.lexicon, self.hubness, self.likelihood, self.reader):
            if stage is not None:
                stage.fitted_on = self.hash
                stage.save(folder)


def fast_decoder_of(net) -> torch.nn.Module | None:
    """The decoder a stage reads candidates with: on a CPU an int8 copy (~2-3x faster, the same order of
    candidates; slsearch.models.likelihood.quantized_decoder), else its own. SLSEARCH_LIKELIHOOD_FP32=1 keeps
    the float32 decoder everywhere."""
    decoder = getattr(net, "decoder", None)
    if not isinstance(decoder, torch.nn.Module) or os.environ.get("SLSEARCH_LIKELIHOOD_FP32") == "1" \
            or next(decoder.parameters()).device.type != "cpu":
        return decoder
    from slsearch.models.likelihood import quantized_decoder

    return quantized_decoder(decoder)


def _fitted_here(stage, weights_hash: str, format_version: int):
    """A stage fitted on these weights, or None. Version-1 checkpoints carry no mark: their saving code
    deleted stages whenever the weights changed, so theirs are always these weights'."""
    if stage is None or stage.fitted_on == weights_hash or (stage.fitted_on is None and format_version == 1):
        return stage
    return None


def load_retrieval_model(path: str | Path, device: str | torch.device = "cpu") -> RetrievalModel:
    """Load a checkpoint folder once: the network in eval mode and its ranking stages. Stages fitted on
    other weights (a later run saved new ones over them) are left out."""
    from slsearch.models.checkpoint import load_model, read_config

    folder = Path(path)
    cfg = read_config(folder)
    net = load_model(folder, device)
    lexicon = _fitted_here(Lexicon.load(folder), net.checkpoint_hash, cfg["format_version"])
    if lexicon is not None and lexicon.glosses and not set(lexicon.glosses) <= set(net.config.glosses or []):
        raise SlsearchError(f"{folder}: {LEXICON_FILE} names glosses the model's gloss head does not read; "
                            "it belongs to another run")
    likelihood = _fitted_here(LikelihoodStage.load(folder), net.checkpoint_hash, cfg["format_version"])
    hubness = _fitted_here(HubnessStage.load(folder), net.checkpoint_hash, cfg["format_version"])
    reader = _fitted_here(ReaderStage.load(folder), net.checkpoint_hash, cfg["format_version"])
    recipe = cfg.get("recipe") or {}
    return RetrievalModel(net, lexicon, likelihood, hubness, DecodeConfig.from_dict(recipe.get("decode")), folder,
                          recipe, reader)
