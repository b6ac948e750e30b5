"""VideoTower: per-frame features -> token states (T/4, d) with a mask, and a global vector.

    front end (per-frame embedding) -> 2 x [Conv1d-BN-ReLU-MaxPool(2)] -> transformer encoder
        -> token states (B, ceil(T/4), token_dim) + mask
        -> masked mean -> linear -> L2-normalised global vector (B, embed_dim)
        -> (optional) linear -> gloss logits (B, T/4, glosses + blank) for a CTC loss

The visual encoder of GFSLT-VLP / DVE-SLT, on pose features here. The front end is the only part
that knows what a frame is; an RGB or pre-extracted-feature front end implements `FrontEnd` and
nothing else changes. Padded frames are zeroed after every block, so a clip gets the same tokens
whatever it is batched with (ReLU output is >= 0, so zeros never win a max-pool over real values).

Several visual streams (DVE-SLT): each stream is a front end with its own, identical temporal blocks;
one transformer encoder, shared, reads every stream; the streams are fused (channel concatenation and a
projection, their sum, or cross-attention of the first to the others) into the tokens the index, the
decoder and the gloss head use, and each stream's own tokens and global vector are returned for its
contrastive loss and the inter-stream one (slsearch.models.losses). STREAMS names the front ends.
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


class WindowedPoseFrontEnd(PoseFrontEnd):
    """DVE-SLT's spatio-temporal stream (the role of I3D over 16-frame windows, stride 6) on the pose:
    each frame's pose features embedded, a temporal convolution over `window`-frame windows every
    `stride` frames, and each frame given the features of the window centred nearest to it (the paper
    repeats the I3D features to the frame rate). Frames past the clip's length are zeroed before the
    convolution, so a window at the end reads the same zeros whatever the batch's padding."""

    uses_lengths = True

    def __init__(self, d: int, input_dim: int = FEATURE_DIM, dropout: float = 0.1, window: int = 16, stride: int = 6):
        super().__init__(d, input_dim, dropout)
        self.window, self.stride = window, stride
        self.embed = nn.Sequential(nn.Linear(input_dim, d), nn.LayerNorm(d), nn.GELU())
        self.window_conv = nn.Conv1d(d, d, window, stride=stride)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:  # (B, T, F) -> (B, T, d)
        T = x.shape[1]
        h = self.embed(x)
        if lengths is not None:
            h = h * _mask(lengths, T)[..., None]
        span = max(T, self.window)
        pad = span - T + (-(span - self.window)) % self.stride  # windows reach the last frame
        w = self.window_conv(F.pad(h.transpose(1, 2), (0, pad))).transpose(1, 2)  # (B, n_windows, d)
        centre = ((torch.arange(T, device=x.device) - (self.window - 1) / 2) / self.stride).round()  # (T,)
        # the last window of each clip is its own (not one that only a longer clip of the batch has)
        n = lengths if lengths is not None else torch.full((x.shape[0],), T, device=x.device)
        last = (n - self.window).clamp(min=0).add(self.stride - 1).div(self.stride, rounding_mode="floor")
        nearest = torch.minimum(centre.clamp(min=0)[None, :], last[:, None].to(centre.dtype)).long()  # (B, T)
        return self.out(torch.gather(w, 1, nearest[..., None].expand(-1, -1, w.shape[2])))


STREAMS = {"pose": PoseFrontEnd, "pose_windows": WindowedPoseFrontEnd}  # model.streams names these
FUSIONS = ("concat", "sum", "cross")


def make_front_end(stream: str, d: int, input_dim: int, dropout: float, window: int = 16,
                   stride: int = 6) -> FrontEnd:
    if stream not in STREAMS:
        raise ValueError(f"unknown visual stream {stream!r} (available: {', '.join(STREAMS)})")
    if stream == "pose_windows":
        return WindowedPoseFrontEnd(d, input_dim, dropout, window, stride)
    return STREAMS[stream](d, input_dim, dropout)


class Fusion(nn.Module):
    """Per-stream token sequences (B, T', d) on one clock -> one (B, T', d)."""

    def __init__(self, kind: str, n_streams: int, d: int, heads: int, dropout: float):
        super().__init__()
        if kind not in FUSIONS:
            raise ValueError(f"unknown stream fusion {kind!r} (use {', '.join(FUSIONS)})")
        self.kind = kind
        if kind == "concat":
            self.project = nn.Linear(n_streams * d, d)
        elif kind == "cross":
            self.attend = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
            self.norm = nn.LayerNorm(d)

    def forward(self, xs: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "concat":
            return self.project(torch.cat(xs, dim=-1))
        if self.kind == "sum":
            return torch.stack(xs).sum(0)
        others = torch.cat(xs[1:], dim=1)  # the first stream queries the others' tokens
        keep = ~torch.cat([mask] * (len(xs) - 1), dim=1)
        attended, _ = self.attend(xs[0], others, others, key_padding_mask=keep)
        return self.norm(xs[0] + attended)


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
                 gloss_classes: int = 0, more_streams: list[FrontEnd] | None = None, fusion: str = "concat"):
        super().__init__()
        self.front_end = front_end  # the first stream keeps the single-stream names: old checkpoints load
        self.blocks = nn.ModuleList([TemporalBlock(d, kernel), TemporalBlock(d, kernel)])
        self.more_streams = nn.ModuleList([
            nn.ModuleDict({"front_end": fe, "blocks": nn.ModuleList([TemporalBlock(d, kernel), TemporalBlock(d, kernel)])})
            for fe in more_streams or []])
        self.fusion = Fusion(fusion, 1 + len(self.more_streams), d, heads, dropout) if more_streams else None
        layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout, batch_first=True, norm_first=True)
        # nested tensors change numerics with the batch's padding; keep outputs batch-independent
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.to_tokens = nn.Linear(d, token_dim)
        self.to_global = nn.Linear(token_dim, embed_dim)
        # CTC over glosses, where the training manifest has them: supervision of which sign is where
        # (CiCo's domain-aware backbone learns the same from sign spotting). Index 0 is the blank.
        self.gloss_head = nn.Linear(d, gloss_classes + 1) if gloss_classes else None

    @staticmethod
    def _stream(front_end: FrontEnd, blocks: nn.ModuleList, features: torch.Tensor,
                lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One stream: front end and temporal blocks -> (B, T', d), token lengths (B,)."""
        x = front_end(features, lengths) if getattr(front_end, "uses_lengths", False) else front_end(features)
        x = (x * _mask(lengths, features.shape[1])[..., None]).transpose(1, 2)  # (B, d, T)
        for block in blocks:
            x, lengths = block(x, lengths)
        return x.transpose(1, 2), lengths

    def _heads(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.to_tokens(x)  # (B, T', token_dim)
        m = mask[..., None].to(tokens.dtype)
        return tokens, F.normalize(self.to_global((tokens * m).sum(1) / m.sum(1)), dim=-1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """features (B, T, F) zero-padded, lengths (B,) -> tokens (B, T', token_dim), mask (B, T'), global (B, D);
        with several streams also "streams": each stream's own {"tokens", "global"}."""
        assert features.ndim == 3, features.shape
        x, token_lengths = self._stream(self.front_end, self.blocks, features, lengths)
        xs = [x] + [self._stream(s["front_end"], s["blocks"], features, lengths)[0] for s in self.more_streams]
        mask = _mask(token_lengths, x.shape[1]).bool()  # (B, T')
        B = x.shape[0]
        h = torch.cat(xs) + sinusoidal_positions(x.shape[1], x.shape[2], x.device)  # the shared encoder, batched
        h = self.norm(self.encoder(h, src_key_padding_mask=~torch.cat([mask] * len(xs))))
        xs = list(h.split(B))
        x = self.fusion(xs, mask) if self.fusion is not None else xs[0]
        tokens, pooled = self._heads(x, mask)
        out = {"tokens": tokens, "mask": mask, "global": pooled}
        if self.fusion is not None:
            out["streams"] = [dict(zip(("tokens", "global"), self._heads(xi, mask))) for xi in xs]
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
