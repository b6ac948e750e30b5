"""Padding variable-length sequences into one batch: the one place it is done."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence


def pad(items: Sequence[np.ndarray | torch.Tensor], value: float = 0.0,
        dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences (L_i, ...) -> (padded (N, max L_i, ...), lengths (N,))."""
    tensors = [torch.as_tensor(np.asarray(t)) if not torch.is_tensor(t) else t for t in items]
    tensors = [t.to(dtype) for t in tensors]
    lengths = torch.tensor([len(t) for t in tensors], dtype=torch.long)
    return pad_sequence(tensors, batch_first=True, padding_value=value), lengths


def length_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """(N,) lengths -> (N, max_length) bool, True on the valid positions."""
    return torch.arange(max_length or int(lengths.max()), device=lengths.device)[None, :] < lengths[:, None]
