"""Re-ranking by the decoder's likelihood: how well a clip explains a sentence.

The C²RL decoder learns to write a clip's sentence while it trains the video tower, so
log p(sentence | clip) is a third opinion beside CiCo and the gloss lexicon, and a different kind:
it reads the whole sentence in order, word by word, against the clip.

- T2V ranks the clips by log p(query | clip); the query's own prior is the same for every clip.
- V2T ranks sentences by log p(sentence | clip) - log p(sentence), the pointwise mutual
  information. Without the prior, short and common sentences win every query. p(sentence) is the
  same decoder reading a learnt "null clip": models trained with `model.lm_prior_rate > 0` have it;
  without it V2T is not re-ranked by likelihood.

This module scores; `slsearch.rank.likelihood_stage` decides which candidates are scored and how the
score joins the others.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from slsearch.models.decoder import shift_for_lm
from slsearch.models.similarity import pad_tokens
from slsearch.progress import Progress, track

_BATCH = 256


def _loglik(model, memory: torch.Tensor, memory_mask: torch.Tensor, texts: Sequence[str]) -> np.ndarray:
    ids, mask = model.tokenizer(list(texts))
    ids, mask = ids.to(model.device), mask.to(model.device)
    dec_in, dec_mask, labels = shift_for_lm(ids, mask, model.tokenizer.bos_id, model.tokenizer.pad_id)
    logp = torch.log_softmax(model.decoder(memory, memory_mask, dec_in, dec_mask).float(), -1)
    token = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return token.sum(1).cpu().numpy()


def _batched(model, texts: Sequence[str], memory_of, progress: Progress | None, desc: str) -> np.ndarray:
    """Run `_loglik` over batches of sentences; `memory_of(slice) -> (memory, mask)` gives each
    batch's decoder memory. Eval mode and no_grad, restored after."""
    out = np.zeros(len(texts), np.float32)
    was_training = model.training
    model.eval()
    advance = track(progress, desc, len(texts))
    try:
        with torch.no_grad():
            for start in range(0, len(texts), _BATCH):
                part = slice(start, min(start + _BATCH, len(texts)))
                memory, memory_mask = memory_of(part)
                out[part] = _loglik(model, memory, memory_mask, list(texts[part]))
                advance(part.stop - part.start)
    finally:
        if was_training:
            model.train()
    return out


def sentence_loglik(model, clip_tokens: Sequence[np.ndarray], texts: Sequence[str],
                    progress: Progress | None = None) -> np.ndarray:
    """log p(texts[k] | clip_tokens[k]) for aligned pairs: the decoder's summed log-probability of the
    sentence's tokens (end of sentence included) given a clip's token states (L, d)."""
    if len(clip_tokens) != len(texts):
        raise ValueError(f"{len(clip_tokens)} clips for {len(texts)} sentences: pairs must be aligned")

    def memory_of(part: slice):
        memory, mask = pad_tokens(clip_tokens[part])
        return memory.to(model.device), mask.to(model.device)

    return _batched(model, texts, memory_of, progress, "decoder likelihood")


def sentence_prior(model, texts: Sequence[str]) -> np.ndarray:
    """log p(text) from the decoder reading the null clip (models with `lm_prior_rate > 0`)."""
    return _batched(model, texts, lambda part: model.null_memory(part.stop - part.start), None, "sentence prior")


def has_prior(model) -> bool:
    return model.null_video is not None
