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


def _loglik(model, memory: torch.Tensor, memory_mask: torch.Tensor, texts: Sequence[str], decoder=None) -> np.ndarray:
    # each distinct sentence tokenized once: a T2V query reads one sentence against all its candidates
    # (with eval() below, 12.1 -> 11.3 ms a T2V query's stage; benchmarks/RESULTS.md)
    distinct = list(dict.fromkeys(texts))
    ids, mask = model.tokenizer(distinct)
    if len(distinct) < len(texts):
        row = {t: i for i, t in enumerate(distinct)}
        pick = torch.tensor([row[t] for t in texts])
        ids, mask = ids[pick], mask[pick]
    ids, mask = ids.to(model.device), mask.to(model.device)
    dec_in, dec_mask, labels = shift_for_lm(ids, mask, model.tokenizer.bos_id, model.tokenizer.pad_id)
    logp = torch.log_softmax((decoder or model.decoder)(memory, memory_mask, dec_in, dec_mask).float(), -1)
    token = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return token.sum(1).cpu().numpy()


def _batched(model, texts: Sequence[str], memory_of, progress: Progress | None, desc: str,
             decoder=None, batch: int = _BATCH) -> np.ndarray:
    """Run `_loglik` over batches of sentences; `memory_of(slice) -> (memory, mask)` gives each
    batch's decoder memory. Eval mode and no_grad, restored after."""
    out = np.zeros(len(texts), np.float32)
    was_training = model.training
    if was_training:  # eval() walks every module: searches, whose model is already in eval mode, skip it
        model.eval()
    advance = track(progress, desc, len(texts))
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch):
                part = slice(start, min(start + batch, len(texts)))
                memory, memory_mask = memory_of(part)
                out[part] = _loglik(model, memory, memory_mask, list(texts[part]), decoder)
                advance(part.stop - part.start)
    finally:
        if was_training:
            model.train()
    return out


def sentence_loglik(model, clip_tokens: Sequence[np.ndarray], texts: Sequence[str],
                    progress: Progress | None = None, decoder=None, batch: int = _BATCH) -> np.ndarray:
    """log p(texts[k] | clip_tokens[k]) for aligned pairs: the decoder's summed log-probability of the
    sentence's tokens (end of sentence included) given a clip's token states (L, d). `decoder`: another
    copy of the model's decoder to read with (`quantized_decoder`), `batch`: pairs per decoder call."""
    if len(clip_tokens) != len(texts):
        raise ValueError(f"{len(clip_tokens)} clips for {len(texts)} sentences: pairs must be aligned")

    def memory_of(part: slice):
        memory, mask = pad_tokens(clip_tokens[part])
        return memory.to(model.device), mask.to(model.device)

    return _batched(model, texts, memory_of, progress, "decoder likelihood", decoder, batch)


def sentence_prior(model, texts: Sequence[str]) -> np.ndarray:
    """log p(text) from the decoder reading the null clip (models with `lm_prior_rate > 0`)."""
    return _batched(model, texts, lambda part: model.null_memory(part.stop - part.start), None, "sentence prior")


def quantized_decoder(decoder: torch.nn.Module) -> torch.nn.Module:
    """A copy of the decoder whose linear layers compute in int8 (PyTorch's dynamic quantisation: weights
    stored in int8, activations quantised per call), for scoring on a CPU. On SynPhoenix it reads a
    T2V query's 20 candidates ~2-3x faster, with the candidates' scores in the same order (Spearman
    0.997; benchmarks/RESULTS.md). Not for training, nor for the priors an index stores. Its activations
    are quantised with one scale per call, so a pair's score depends on the pairs read with it: callers
    read a query's candidates together, in a search and in an evaluation alike."""
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(decoder).eval(), {torch.nn.Linear},
                                                      dtype=torch.qint8)


def has_prior(model) -> bool:
    return model.null_video is not None
