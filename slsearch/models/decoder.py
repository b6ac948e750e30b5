"""The C²RL text decoder: an mBART decoder that writes the sentence while cross-attending to the
video token states. Its LM loss is C²RL's explicit context learning; fine-tuned, it is the
translation head."""

from __future__ import annotations

import inspect

import torch
from torch import nn
from transformers import DynamicCache, EncoderDecoderCache, MBartConfig, MBartForCausalLM

# transformers 5.x renamed the forward's `past_key_values` to `cache` (the old name is deprecated)
_CACHE_KWARG = "cache" if "cache" in inspect.signature(MBartForCausalLM.forward).parameters else "past_key_values"


def decoder_config(vocab_size: int, d: int = 256, layers: int = 3, heads: int = 4, ffn: int = 1024,
                   dropout: float = 0.1, max_positions: int = 128) -> MBartConfig:
    return MBartConfig(vocab_size=vocab_size, d_model=d, decoder_layers=layers, decoder_attention_heads=heads,
                       decoder_ffn_dim=ffn, encoder_layers=1, encoder_attention_heads=heads, encoder_ffn_dim=ffn,
                       dropout=dropout, attention_dropout=dropout, max_position_embeddings=max_positions,
                       pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=0,
                       scale_embedding=True, is_decoder=True, add_cross_attention=True,
                       tie_word_embeddings=True)


class TextDecoder(nn.Module):
    """(video tokens, mask, decoder input ids) -> next-token logits."""

    def __init__(self, config: MBartConfig):
        super().__init__()
        self.lm = MBartForCausalLM(config)

    def forward(self, video_tokens: torch.Tensor, video_mask: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """video_tokens (B, Tv, d), video_mask (B, Tv), input_ids (B, L) -> logits (B, L, vocab)."""
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask.long(),
                      encoder_hidden_states=video_tokens, encoder_attention_mask=video_mask.long(),
                      use_cache=False)
        return out.logits

    def new_cache(self) -> EncoderDecoderCache:
        """An empty key/value cache for `step`: self-attention (grows a token a step) and cross-attention
        (the video memory's keys/values, computed on the first step and reused after)."""
        # no config: DynamicCache(config=) sizes itself by num_hidden_layers, which MBartConfig maps to
        # encoder_layers (1 here), not decoder_layers; without one it grows a layer per layer used
        return EncoderDecoderCache(DynamicCache(), DynamicCache())

    def step(self, video_tokens: torch.Tensor, video_mask: torch.Tensor, input_ids: torch.Tensor,
             cache: EncoderDecoderCache) -> torch.Tensor:
        """Incremental decoding: input_ids (B, l) are the tokens that follow those already in `cache`
        (updated in place) -> logits of the last one (B, vocab). Every position is attended (no padding)."""
        out = self.lm(input_ids=input_ids, encoder_hidden_states=video_tokens,
                      encoder_attention_mask=video_mask.long(), use_cache=True, logits_to_keep=1,
                      **{_CACHE_KWARG: cache})
        return out.logits[:, -1]

    @staticmethod
    def reorder_cache(cache: EncoderDecoderCache, rows: torch.Tensor) -> None:
        """Beam search: row i of the self-attention cache becomes old row rows[i] (new tensors, no aliasing).
        The cross-attention cache is left alone: it must only be reordered within rows that share the
        same memory, which beam search guarantees (a beam only extends beams of its own clip)."""
        cache.self_attention_cache.reorder_cache(rows)


def shift_for_lm(ids: torch.Tensor, mask: torch.Tensor, bos_id: int, pad_id: int):
    """Text ids `w1 .. wn </s>` (B, L) -> decoder input `<s> w1 .. wn`, its mask, labels `w1 .. </s>`
    with padding set to -100."""
    dec_in = torch.cat([torch.full_like(ids[:, :1], bos_id), ids[:, :-1]], dim=1)
    dec_in = dec_in.masked_fill(~mask, pad_id)
    labels = ids.masked_fill(~mask, -100)
    return dec_in, mask, labels
