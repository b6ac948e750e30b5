"""VideoTower: per-frame features -> token states (T/4, d) with a mask, and a global vector.

    front end (per-frame embedding) -> 2 x [Conv1d-BN-ReLU-MaxPool(2)] -> transformer encoder
        -> token states (B, ceil(T/4), token_dim) + mask
        -> masked mean -> linear -> L2-normalised global vector (B, embed_dim)
        -> (optional) linear -> gloss logits (B, T/4, glosses + blank) for a CTC loss

The visual encoder of GFSLT-VLP / DVE-SLT, on pose features here. The front end is the only part
that knows what a frame is; an RGB or pre-extracted-feature front end implements `FrontEnd` and
nothing else changes. Padded frames are zeroed after every block, so a clip gets the same tokens
whatever it is batched with (ReLU output is >= 0, so zeros never win a max-pool over real values).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from slsearch.data.features import FEATURE_DIM, pose_to_features

TEMPORAL_STRIDE = 4  # two max-pools of 2


class FrontEnd(nn.Module):
    """Host-side `prepare(item) -> (T, input_dim) float32` and a module (B, T, input_dim) -> (B, T, d)."""

    input_dim: int

    def prepare(self, item: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class PoseFrontEnd(FrontEnd):
    """MediaPipe Holistic pose -> `pose_to_features` -> linear + LayerNorm + ReLU."""

    def __init__(self, d: int, input_dim: int = FEATURE_DIM, dropout: float = 0.1):
        super().__init__()
        self.input_dim = input_dim
        self.embed = nn.Sequential(nn.Linear(input_dim, d), nn.LayerNorm(d), nn.ReLU(), nn.Dropout(dropout))

    def prepare(self, item: np.ndarray) -> np.ndarray:
        """A pose array (T, 543, 3) or features (T, input_dim) already made -> features. Arrays only: files
        are read before the model (`slsearch.data.poses.load_pose`)."""
        if not isinstance(item, np.ndarray) or item.ndim not in (2, 3):
            raise ValueError(f"the pose front end takes a pose (T, 543, 3) or feature (T, F) array, not "
                             f"{type(item).__name__}")
        if item.ndim == 2:
            if item.shape[1] != self.input_dim:
                raise ValueError(f"feature array has width {item.shape[1]}, the model expects {self.input_dim}")
            return item.astype(np.float32, copy=False)
        return pose_to_features(item)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, T, d)
        return self.embed(x)


def sinusoidal_positions(length: int, d: int, device=None) -> torch.Tensor:
    """(length, d) fixed sinusoidal position codes (no maximum clip length)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe


class TemporalBlock(nn.Module):
    """Conv1d-BN-ReLU-MaxPool(2): halves the frame rate (ceil), keeps padding at zero."""

    def __init__(self, d: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(d, d, kernel, padding=kernel // 2)
        self.bn = nn.BatchNorm1d(d)
        self.pool = nn.MaxPool1d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x (B, d, T) with zeros past each length
        x = self.pool(F.relu(self.bn(self.conv(x))) * _mask(lengths, x.shape[-1])[:, None, :])
        lengths = (lengths + 1) // 2
        return x * _mask(lengths, x.shape[-1])[:, None, :], lengths


def _mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    return (torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]).to(torch.float32)


class VideoTower(nn.Module):
    def __init__(self, front_end: FrontEnd, d: int = 256, kernel: int = 5, layers: int = 2, heads: int = 4,
                 ffn: int = 1024, dropout: float = 0.1, token_dim: int = 256, embed_dim: int = 256,
                 gloss_classes: int = 0):
        super().__init__()
        self.front_end = front_end
        self.blocks = nn.ModuleList([TemporalBlock(d, kernel), TemporalBlock(d, kernel)])
        layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout, batch_first=True, norm_first=True)
        # nested tensors change numerics with the batch's padding; keep outputs batch-independent
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.to_tokens = nn.Linear(d, token_dim)
        self.to_global = nn.Linear(token_dim, embed_dim)
        # CTC over glosses, where the training manifest has them: supervision of which sign is where
        # (CiCo's domain-aware backbone learns the same from sign spotting). Index 0 is the blank.
        self.gloss_head = nn.Linear(d, gloss_classes + 1) if gloss_classes else None

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """features (B, T, F) zero-padded, lengths (B,) -> tokens (B, T', token_dim), mask (B, T'), global (B, D)."""
        assert features.ndim == 3, features.shape
        x = self.front_end(features) * _mask(lengths, features.shape[1])[..., None]  # (B, T, d)
        x = x.transpose(1, 2)  # (B, d, T)
        for block in self.blocks:
            x, lengths = block(x, lengths)
        x = x.transpose(1, 2)  # (B, T', d)
        mask = _mask(lengths, x.shape[1]).bool()  # (B, T')
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        x = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        tokens = self.to_tokens(x)  # (B, T', token_dim)
        m = mask[..., None].to(tokens.dtype)
        pooled = (tokens * m).sum(1) / m.sum(1)
        out = {"tokens": tokens, "mask": mask, "global": F.normalize(self.to_global(pooled), dim=-1)}
        if self.gloss_head is not None:
            out["gloss_logits"] = self.gloss_head(x)
        return out


def ctc_glosses(logits: torch.Tensor, mask: torch.Tensor, vocabulary: list[str]) -> list[str]:
    """Gloss logits (B, T, C+1), blank 0 -> greedy CTC reading per clip ('MORGEN REGEN NORD')."""
    best = logits.argmax(-1).tolist()
    out = []
    for row, valid in zip(best, mask.sum(1).tolist()):
        path = row[:valid]
        out.append(" ".join(vocabulary[t - 1] for k, t in enumerate(path) if t and (k == 0 or t != path[k - 1])))
    return out
