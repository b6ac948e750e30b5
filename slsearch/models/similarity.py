"""The retrieval scores: CiCo's fine-grained token score and the global cosine.

One module used by training (the contrastive loss), re-ranking (search) and evaluation alike.

CiCo score (Cheng et al., "CiCo: Domain-Aware Sign Language Retrieval via Cross-Lingual
Contrastive Learning"). With L2-normalised video tokens v_i, text tokens t_j and s_ij = v_i . t_j:

    v2t = mean over valid i of  sum_j softmax_j(s_ij / tau) * s_ij
    t2v = mean over valid j of  sum_i softmax_i(s_ij / tau) * s_ij
    score = 0.5 * (v2t + t2v)

Padding is masked inside both softmaxes and excluded from both means (the reference code lets
padded tokens into the softmax; `mask_softmax=False` reproduces that for parity checks).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from slsearch.models.padding import length_mask, pad

CICO_TEMPERATURE = 0.07  # tau' of the paper
# Elements of the (chunk, Nt, Lv, Lt) score block computed at once: ~4 float32 temporaries of
# this size live together, so 2**23 keeps the peak near 128 MiB whatever Nv is.
_BLOCK_ELEMENTS = 2**23


def pad_tokens(tokens: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of (L_i, d) token arrays -> (tokens (N, Lmax, d) float32, mask (N, Lmax) bool)."""
    if len(tokens) == 0:
        raise ValueError("pad_tokens needs at least one token array")
    d = tokens[0].shape[-1]
    for t in tokens:
        if t.ndim != 2 or t.shape[-1] != d or t.shape[0] == 0:
            raise ValueError(f"every token array must be (L>0, {d}); got {tuple(t.shape)}")
    out, lengths = pad(tokens)
    return out, length_mask(lengths, out.shape[1])


def _check(tokens: torch.Tensor, mask: torch.Tensor, name: str) -> None:
    if tokens.ndim != 3 or mask.shape != tokens.shape[:2]:
        raise ValueError(f"{name}: expected tokens (N, L, d) and mask (N, L), got {tuple(tokens.shape)} "
                         f"and {tuple(mask.shape)}")
    if tokens.shape[0] and not mask.any(1).all():
        raise ValueError(f"{name}: every item needs at least one valid token")


def _cico_block(v: torch.Tensor, vm: torch.Tensor, t: torch.Tensor, tm: torch.Tensor,
                temperature: float, mask_softmax: bool) -> torch.Tensor:
    """Normalised v (a, Lv, d), t (b, Lt, d) and bool masks -> (a, b) CiCo scores."""
    s = torch.einsum("aid,bjd->abij", v, t)  # (a, b, Lv, Lt)
    logits = s / temperature
    neg = torch.finfo(logits.dtype).min
    # video -> text: each video token attends over the text tokens
    w_v2t = torch.softmax(logits.masked_fill(~tm[None, :, None, :], neg) if mask_softmax else logits, dim=3)
    per_v = (w_v2t * s).sum(3)  # (a, b, Lv)
    vmf = vm[:, None, :].float()
    v2t = (per_v * vmf).sum(2) / vmf.sum(2)
    # text -> video: each text token attends over the video tokens
    w_t2v = torch.softmax(logits.masked_fill(~vm[:, None, :, None], neg) if mask_softmax else logits, dim=2)
    per_t = (w_t2v * s).sum(2)  # (a, b, Lt)
    tmf = tm[None, :, :].float()
    t2v = (per_t * tmf).sum(2) / tmf.sum(2)
    return 0.5 * (v2t + t2v)


def cico_similarity(video_tokens: torch.Tensor, video_mask: torch.Tensor, text_tokens: torch.Tensor,
                    text_mask: torch.Tensor, temperature: float = CICO_TEMPERATURE,
                    mask_softmax: bool = True) -> torch.Tensor:
    """CiCo fine-grained score of every video against every text.

    video_tokens (Nv, Lv, d), video_mask (Nv, Lv) bool (True = valid), text_tokens (Nt, Lt, d),
    text_mask (Nt, Lt) -> (Nv, Nt) float32 scores in [-1, 1]. Tokens are L2-normalised here,
    so raw token states can be passed. Works under autograd (the training loss uses it) and is
    computed in blocks over Nv so that large candidate sets do not exhaust memory.
    """
    _check(video_tokens, video_mask, "video")
    _check(text_tokens, text_mask, "text")
    if video_tokens.shape[-1] != text_tokens.shape[-1]:
        raise ValueError(f"token widths differ: video {video_tokens.shape[-1]}, text {text_tokens.shape[-1]}")
    # Scores in float32 even under bf16 autocast: the softmax at tau=0.07 is sensitive.
    v = F.normalize(video_tokens.float(), dim=-1)
    t = F.normalize(text_tokens.float(), dim=-1)
    vm, tm = video_mask.bool(), text_mask.bool()
    nv, lv = v.shape[:2]
    nt, lt = t.shape[:2]
    chunk = max(1, _BLOCK_ELEMENTS // max(1, nt * lv * lt))
    if chunk >= nv:
        return _cico_block(v, vm, t, tm, temperature, mask_softmax)
    return torch.cat([_cico_block(v[i:i + chunk], vm[i:i + chunk], t, tm, temperature, mask_softmax)
                      for i in range(0, nv, chunk)], dim=0)


def global_similarity(video_vectors: torch.Tensor | np.ndarray,
                      text_vectors: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Cosine similarity (Nv, D) x (Nt, D) -> (Nv, Nt); vectors are normalised here."""
    v = F.normalize(torch.as_tensor(video_vectors).float(), dim=-1)
    t = F.normalize(torch.as_tensor(text_vectors).float(), dim=-1)
    return v @ t.T
