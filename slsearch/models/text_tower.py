"""TextTower: token ids -> mBART encoder -> token states (L, token_dim) + mask, and a global vector.

The encoder is `transformers`' MBartEncoder: small and from scratch by default, or the encoder
of a pretrained mBART (its embedding rows trimmed to the tokenizer's kept ids).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F
from transformers import MBartConfig
from transformers.models.mbart.modeling_mbart import MBartEncoder


def scratch_text_config(vocab_size: int, d: int = 256, layers: int = 2, heads: int = 4, ffn: int = 1024,
                        dropout: float = 0.1, max_positions: int = 128) -> MBartConfig:
    return MBartConfig(vocab_size=vocab_size, d_model=d, encoder_layers=layers, encoder_attention_heads=heads,
                       encoder_ffn_dim=ffn, decoder_layers=1, decoder_attention_heads=heads,
                       decoder_ffn_dim=ffn, dropout=dropout, attention_dropout=dropout,
                       max_position_embeddings=max_positions, pad_token_id=1, bos_token_id=0,
                       eos_token_id=2, scale_embedding=True)


class TextTower(nn.Module):
    def __init__(self, mbart_config: MBartConfig, token_dim: int = 256, embed_dim: int = 256):
        super().__init__()
        self.encoder = MBartEncoder(mbart_config)
        self.to_tokens = nn.Linear(mbart_config.d_model, token_dim)
        self.to_global = nn.Linear(token_dim, embed_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """input_ids (B, L), attention_mask (B, L) bool -> tokens (B, L, token_dim), mask, global (B, D)."""
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask.long()).last_hidden_state
        tokens = self.to_tokens(h)  # (B, L, token_dim)
        m = attention_mask[..., None].to(tokens.dtype)
        pooled = (tokens * m).sum(1) / m.sum(1)
        return {"tokens": tokens, "mask": attention_mask.bool(),
                "global": F.normalize(self.to_global(pooled), dim=-1)}

    def load_pretrained_encoder(self, pretrained_encoder: nn.Module, kept_ids: Sequence[int]) -> None:
        """Copy a pretrained MBartEncoder's weights, keeping only the embedding rows in `kept_ids`."""
        state = pretrained_encoder.state_dict()
        rows = torch.as_tensor(list(kept_ids), dtype=torch.long)
        state["embed_tokens.weight"] = state["embed_tokens.weight"][rows].clone()
        missing, unexpected = self.encoder.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.endswith("embed_positions._float_tensor")]:
            raise RuntimeError(f"pretrained encoder does not fit: missing {missing}, unexpected {unexpected}")
