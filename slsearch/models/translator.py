"""Translation: beam search with the C²RL decoder over the video token states.

Plain torch rather than `generate()`: the decoder is an `MBartForCausalLM` with cross-attention,
and transformers 5.x beam search mutates encoder outputs in place; this loop is short, batched
(batch x beam rows) and exact about length normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from transformers import NoRepeatNGramLogitsProcessor

from slsearch.encode import prepare_videos
from slsearch.models.padding import pad
from slsearch.models.video_tower import ctc_glosses


@dataclass
class DecodeConfig:
    """How a checkpoint translates unless told otherwise: the recipe's [decode] section, saved with it."""

    beam: int = 4
    length_penalty: float = 1.0  # score = log-prob / length ** length_penalty; > 1 favours longer sentences
    no_repeat_ngram: int = 0  # n > 0: no n-gram twice in a sentence; 0 = off

    @classmethod
    def from_dict(cls, d: dict | None) -> "DecodeConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in known})

    def with_overrides(self, **values) -> "DecodeConfig":
        """A copy with every value that is not None replaced (command-line options over the model's)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass
class Translation:
    text: str
    token_ids: list[int]
    score: float  # length-normalised log-probability
    attention: np.ndarray | None = None  # (generated tokens, video tokens) cross-attention, when asked
    glosses: str | None = None  # the gloss head's reading (greedy CTC), for models trained with glosses


@torch.no_grad()
def beam_search(decoder, memory: torch.Tensor, memory_mask: torch.Tensor, bos_id: int, eos_id: int,
                beam: int = 4, max_len: int = 64, length_penalty: float = 1.0,
                no_repeat_ngram: int = 0, use_cache: bool = True) -> list[tuple[list[int], float]]:
    """memory (B, Tv, d), memory_mask (B, Tv) -> for each item the best (token ids without bos/eos, score).

    Score = sum of log-probabilities / (length ** length_penalty); length counts the eos.
    no_repeat_ngram = n > 0 forbids any n-gram of tokens to occur twice in a hypothesis (the
    decoder, short of evidence, otherwise loops on a phrase it likes).

    A decoder with `step` (TextDecoder) is run with a key/value cache: one new token per row and step,
    the self-attention cache reordered by the beams' source rows, the memory's cross-attention
    keys/values computed once (use_cache=False: without, the same hypotheses; for comparison). Any
    other module(memory, mask, seqs, seq_mask) -> logits (B*K, L, V) is run on the whole prefix every step.
    """
    B, Tv, d = memory.shape
    K = max(1, beam)
    device = memory.device
    mem = memory.repeat_interleave(K, 0)  # (B*K, Tv, d)
    mmask = memory_mask.repeat_interleave(K, 0)
    seqs = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live beam at the start, so the K beams do not all repeat it
    finished = torch.zeros(B * K, dtype=torch.bool, device=device)
    lengths = torch.zeros(B * K, device=device)
    cache = decoder.new_cache() if use_cache and hasattr(decoder, "step") else None
    # On the generated tokens only, not bos: fed bos, it would also ban bos (n = 1) or bos-led n-grams.
    block = NoRepeatNGramLogitsProcessor(no_repeat_ngram) if no_repeat_ngram > 0 else None
    for _ in range(max_len):
        if cache is not None:  # the tokens not yet in the cache: all of them (bos) first, then the last one
            logits = decoder.step(mem, mmask, seqs[:, cache.get_seq_length():], cache)  # (B*K, V)
        else:
            logits = decoder(mem, mmask, seqs, torch.ones_like(seqs, dtype=torch.bool))[:, -1]
        logp = torch.log_softmax(logits.float(), -1)
        V = logp.shape[-1]
        if block is not None:
            logp = block(seqs[:, 1:], logp)
        # a finished beam may only continue with eos at no cost: its score is carried unchanged
        logp[finished] = float("-inf")
        logp[finished, eos_id] = 0.0
        cand = (scores.view(-1, 1) + logp).view(B, K * V)
        top, flat = cand.topk(K, dim=1)  # (B, K)
        src = (flat // V) + torch.arange(B, device=device)[:, None] * K  # row each new beam extends
        tok = (flat % V).view(-1)
        src = src.view(-1)
        was_finished = finished[src]
        seqs = torch.cat([seqs[src], tok[:, None]], 1)
        lengths = lengths[src] + (~was_finished).float()
        finished = was_finished | (tok == eos_id)
        scores = top
        if finished.all():
            break
        if cache is not None:
            decoder.reorder_cache(cache, src)
    norm = scores.view(-1) / lengths.clamp(min=1) ** length_penalty
    best = norm.view(B, K).argmax(1)
    out = []
    for b in range(B):
        row = b * K + int(best[b])
        ids = [int(i) for i in seqs[row, 1:].tolist()]
        if eos_id in ids:
            ids = ids[: ids.index(eos_id)]
        out.append((ids, float(norm[row])))
    return out


@torch.no_grad()
def cross_attention(decoder, memory: torch.Tensor, memory_mask: torch.Tensor, ids: list[int], bos_id: int) -> np.ndarray:
    """Cross-attention (generated tokens, video tokens), averaged over layers and heads, for one hypothesis."""
    seq = torch.tensor([[bos_id] + ids], dtype=torch.long, device=memory.device)
    previous = decoder.lm.config._attn_implementation
    decoder.lm.set_attn_implementation("eager")  # fused attention kernels do not return weights
    try:
        out = decoder.lm(input_ids=seq, attention_mask=torch.ones_like(seq), encoder_hidden_states=memory,
                         encoder_attention_mask=memory_mask.long(), output_attentions=True, use_cache=False)
    finally:
        decoder.lm.set_attn_implementation(previous)
    att = torch.stack([a[0] for a in out.cross_attentions]).mean((0, 1))  # (L+1, Tv)
    return att[: len(ids)].cpu().numpy()  # row i: the attention of the step that wrote token i


@torch.no_grad()
def translate(model, inputs, settings: DecodeConfig | None = None, max_len: int | None = None,
              batch_size: int = 16, with_attention: bool = False) -> list[Translation]:
    """Clips (pose arrays, paths or Clips, as `encode_videos` takes) -> one Translation each, decoded
    with `settings` (a checkpoint's own are `RetrievalModel.decode`; None: DecodeConfig's defaults)."""
    settings = settings or DecodeConfig()
    beam, length_penalty, no_repeat_ngram = settings.beam, settings.length_penalty, settings.no_repeat_ngram
    was_training = model.training
    model.eval()
    try:
        feats = prepare_videos(model, inputs)
        tok = model.tokenizer
        max_len = max_len or model.config.max_text_tokens
        results: list[Translation] = []
        for start in range(0, len(feats), batch_size):
            chunk = feats[start:start + batch_size]
            x, lengths = pad(chunk)
            v = model.encode_video(x.to(model.device), lengths.to(model.device))
            hyps = beam_search(model.decoder, v["tokens"], v["mask"], tok.bos_id, tok.eos_id, beam=beam,
                               max_len=max_len, length_penalty=length_penalty, no_repeat_ngram=no_repeat_ngram)
            glosses = (ctc_glosses(v["gloss_logits"], v["mask"], model.config.glosses)
                       if "gloss_logits" in v else [None] * len(hyps))
            for i, (ids, score) in enumerate(hyps):
                att = None
                if with_attention:
                    valid = v["mask"][i]
                    att = cross_attention(model.decoder, v["tokens"][i:i + 1, valid], v["mask"][i:i + 1, valid],
                                          ids, tok.bos_id)
                results.append(Translation(tok.decode(ids), ids, score, att, glosses[i]))
        return results
    finally:
        model.train(was_training)
