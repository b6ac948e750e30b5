"""VideoTower: per-frame features -> token states (T/4, d) with a mask, and a global vector.

    front end (per-frame embedding) -> 2 x [Conv1d-BN-ReLU-MaxPool(2)] -> transformer encoder
        -> token states (B, ceil(T/4), token_dim) + mask
        -> masked mean -> linear -> L2-normalised global vector (B, embed_dim)
        -> (optional) linear -> gloss logits (B, T/4, glosses + blank) for a CTC loss

The visual encoder of GFSLT-VLP / DVE-SLT, on pose features and RGB crops here. The front end is the only
part that knows what a frame is; a new input implements `FrontEnd` and nothing else changes. Padded
frames are zeroed after every block, so a clip gets the same tokens whatever it is batched with (ReLU
output is >= 0, so zeros never win a max-pool over real values).

Several visual streams (DVE-SLT): each stream is a front end with its own, identical temporal blocks;
one transformer encoder, shared, reads every stream; the streams are fused (channel concatenation and a
projection, their sum, or cross-attention of the first to the others) into the tokens the index, the
decoder and the gloss head use, and each stream's own tokens and global vector are returned for its
contrastive loss and the inter-stream one (slsearch.models.losses). STREAMS names the front ends. Each
frame's input is one row: the columns of every distinct input the streams read (the pose features, the
RGB crops), which each stream slices out; the streams run on one frame clock, hence the same T/4 tokens.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from slsearch.data.crops import CROP_SIZE, N_CROPS
from slsearch.data.features import FEATURE_DIM, pose_to_features
from slsearch.data.pose_files import PoseSequence

TEMPORAL_STRIDE = 4  # two max-pools of 2


class FrontEnd(nn.Module):
    """Host-side `prepare(item) -> (T, width) float32` and a module (B, T, input_dim) -> (B, T, d).

    `prepare_own` makes this front end's input: `input_dim` columns of the input named `reads` (streams that
    read the same input share its columns). `prepare` makes all that a tower reads per frame: callers hold
    the tower's first front end (`video.front_end`), so the tower hands it the other streams (`feeds`) and
    its `prepare` appends their inputs after its own. An item is a pose array (T, 543, 3), a feature array
    already made, or a PoseSequence (which may carry a video's crops)."""

    input_dim: int
    reads = "pose"
    feeds: tuple[FrontEnd, ...] = ()  # set by VideoTower on its first front end: a plain tuple, not submodules

    def prepare_own(self, item: np.ndarray | PoseSequence) -> np.ndarray:
        raise NotImplementedError

    def inputs(self) -> dict[str, int]:
        """The inputs a prepared row holds, name -> width, in column order."""
        widths: dict[str, int] = {}
        for fe in (self, *self.feeds):
            widths.setdefault(fe.reads, fe.input_dim)
        return widths

    @property
    def needs_crops(self) -> bool:
        """Whether `prepare` reads a video's crops (`load_pose(..., crops=True)`)."""
        return RgbCropFrontEnd.reads in self.inputs()

    def prepare(self, item: np.ndarray | PoseSequence) -> np.ndarray:
        widths = self.inputs()
        if len(widths) == 1:
            return self.prepare_own(item)
        if isinstance(item, np.ndarray) and item.ndim == 2 and item.shape[1] == sum(widths.values()):
            return item.astype(np.float32, copy=False)  # made for this tower already
        blocks = {self.reads: self.prepare_own(item)}
        for fe in self.feeds:
            if fe.reads not in blocks:
                blocks[fe.reads] = fe.prepare_own(item)
        return np.concatenate(list(blocks.values()), axis=1)


class PoseFrontEnd(FrontEnd):
    """MediaPipe Holistic pose -> `pose_to_features` -> linear + LayerNorm + ReLU."""

    def __init__(self, d: int, input_dim: int = FEATURE_DIM, dropout: float = 0.1):
        super().__init__()
        self.input_dim = input_dim
        self.embed = nn.Sequential(nn.Linear(input_dim, d), nn.LayerNorm(d), nn.ReLU(), nn.Dropout(dropout))

    def prepare_own(self, item: np.ndarray | PoseSequence) -> np.ndarray:
        """A pose (T, 543, 3), as an array or a PoseSequence, or features (T, input_dim) already made ->
        features. No files: they are read before the model (`slsearch.data.poses.load_pose`)."""
        if isinstance(item, PoseSequence):
            item = item.data
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


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: a crop's features must not depend on the other crops of its batch
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(4, c_out), nn.ReLU())


class RgbCropFrontEnd(FrontEnd):
    """The RGB stream: each frame's hand and face crops (slsearch.data.crops) through a small CNN shared by the
    crops, trained with the towers; the crops' features and their present flags -> linear + LayerNorm + ReLU.
    A crop not seen (a hand out of view; every crop of a clip without video: pose files, synthetic corpora)
    is zeros with flag 0: its pixels never reach the CNN, its features are zero, it never fails."""

    reads = "rgb_crops"

    def __init__(self, d: int, dropout: float = 0.1, size: int = CROP_SIZE, width: int = 32):
        super().__init__()
        self.size = size
        self.pixels = N_CROPS * size * size * 3
        self.input_dim = self.pixels + N_CROPS  # the crops' pixels (0..255), then the flags
        self.channels = 2 * width
        self.cnn = nn.Sequential(_conv(3, width // 2), _conv(width // 2, width), _conv(width, self.channels),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())  # 32 -> 16 -> 8 -> 4 -> pooled
        self.embed = nn.Sequential(nn.Linear(N_CROPS * (self.channels + 1), d), nn.LayerNorm(d), nn.ReLU(),
                                   nn.Dropout(dropout))

    def prepare_own(self, item: np.ndarray | PoseSequence) -> np.ndarray:
        """A PoseSequence with crops -> (T, input_dim); anything without crops (a pose file's sequence, an
        array) -> zeros: every crop masked."""
        crops = item.crops if isinstance(item, PoseSequence) else None
        T = item.frames if isinstance(item, PoseSequence) else len(item)
        out = np.zeros((T, self.input_dim), np.float32)
        if crops is not None:
            if crops.images.shape[1:] != (N_CROPS, self.size, self.size, 3) or len(crops.images) != T:
                raise ValueError(f"crops of shape {crops.images.shape} for {T} frames; the model reads "
                                 f"({T}, {N_CROPS}, {self.size}, {self.size}, 3)")
            out[:, :self.pixels] = crops.images.reshape(T, -1)
            out[:, self.pixels:] = crops.present
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, input_dim) -> (B, T, d)
        B, T, _ = x.shape
        present = x[..., self.pixels:] > 0.5  # (B, T, N_CROPS); padded frames are 0
        crops = x[..., :self.pixels].reshape(B, T, N_CROPS, self.size, self.size, 3)[present]  # (N, S, S, 3)
        feats = x.new_zeros(B, T, N_CROPS, self.channels)
        if len(crops):
            seen = self.cnn(crops.permute(0, 3, 1, 2) / 127.5 - 1.0)
            feats = feats.to(seen.dtype).index_put((present,), seen)
        return self.embed(torch.cat([feats, present[..., None].to(feats.dtype)], -1).flatten(2))


STREAMS = {"pose": PoseFrontEnd, "pose_windows": WindowedPoseFrontEnd,
           "rgb_crops": RgbCropFrontEnd}  # model.streams names these
FUSIONS = ("concat", "sum", "cross")


def make_front_end(stream: str, d: int, input_dim: int, dropout: float, window: int = 16,
                   stride: int = 6) -> FrontEnd:
    if stream not in STREAMS:
        raise ValueError(f"unknown visual stream {stream!r} (available: {', '.join(STREAMS)})")
    if stream == "pose_windows":
        return WindowedPoseFrontEnd(d, input_dim, dropout, window, stride)
    if stream == "rgb_crops":
        return RgbCropFrontEnd(d, dropout)
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
        front_end.feeds = tuple(more_streams or ())  # its `prepare` makes every stream's input
        offsets = np.cumsum([0, *front_end.inputs().values()])
        columns = {name: slice(int(a), int(b)) for name, a, b in zip(front_end.inputs(), offsets, offsets[1:])}
        # each stream's columns of a frame's row; None: one input, every stream reads the whole row
        self.columns = [columns[fe.reads] for fe in (front_end, *front_end.feeds)] if len(columns) > 1 else None
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
        """features (B, T, F) zero-padded, lengths (B,) -> tokens (B, T', token_dim), mask (B, T'), global (B, D),
        states (B, T', d: the encoder's (fused) output the heads read); with several streams also "streams": each
        stream's own {"tokens", "global"}."""
        assert features.ndim == 3, features.shape
        n = 1 + len(self.more_streams)
        inputs = [features[..., c] for c in self.columns] if self.columns else [features] * n
        x, token_lengths = self._stream(self.front_end, self.blocks, inputs[0], lengths)
        xs = [x] + [self._stream(s["front_end"], s["blocks"], f, lengths)[0]
                    for s, f in zip(self.more_streams, inputs[1:])]
        mask = _mask(token_lengths, x.shape[1]).bool()  # (B, T')
        B = x.shape[0]
        h = torch.cat(xs) + sinusoidal_positions(x.shape[1], x.shape[2], x.device)  # the shared encoder, batched
        h = self.norm(self.encoder(h, src_key_padding_mask=~torch.cat([mask] * len(xs))))
        xs = list(h.split(B))
        x = self.fusion(xs, mask) if self.fusion is not None else xs[0]
        tokens, pooled = self._heads(x, mask)
        out = {"tokens": tokens, "mask": mask, "global": pooled, "states": x}
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
