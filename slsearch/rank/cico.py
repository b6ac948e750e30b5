"""The CiCo stage: the fine-grained token score of clips against sentences.

Two shapes of the same score (`slsearch.models.similarity.cico_similarity`; tests check they agree):

- one query against N candidates on ragged (unpadded) token states, as the token store holds them:
  the matrix product is one (sum L_n, d) x (d, L_q) and the two softmaxes become a row softmax and a
  per-candidate segment softmax; ~3x faster for one query than padding every candidate to the longest;
- a whole clips x sentences matrix (evaluation, calibration), padded, in blocks of clips so that tens of
  thousands of clips never hold a clips x sentences x tokens x tokens array at once.

CiCo is symmetric in its two sides (each half is the other's mirror), so the same code scores a text
query against clips (T2V), a clip query against sentences (V2T) and a clip against clips (V2V).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from slsearch.models.similarity import CICO_TEMPERATURE, cico_similarity, pad_tokens

CLIP_BLOCK = 256  # clips per block of the dense matrix


class Ragged(Sequence):
    """N token arrays stacked without padding, as the token store reads them: flat (sum L, d) and
    counts (N,). Indexing gives one item's (L, d) view."""

    def __init__(self, flat: np.ndarray, counts: np.ndarray):
        self.flat = flat
        self.counts = np.asarray(counts, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.flat[self.starts[i]:self.starts[i] + self.counts[i]]


def stacked(tokens: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Token arrays -> (flat (sum L, d), counts (N,)), without copying a Ragged."""
    if isinstance(tokens, Ragged):
        return tokens.flat, tokens.counts
    return np.concatenate(list(tokens)), np.array([len(t) for t in tokens])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cico_one_to_many(query: np.ndarray, candidates: np.ndarray, counts: np.ndarray,
                     temperature: float = CICO_TEMPERATURE) -> np.ndarray:
    """query (Lq, d), candidates (sum counts, d) stacked in order, counts (N,) -> (N,) CiCo scores."""
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) == 0:
        return np.zeros(0, np.float32)
    if counts.min() <= 0 or counts.sum() != len(candidates):
        raise ValueError(f"counts must be positive and sum to {len(candidates)} candidate tokens")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    s = _unit(candidates) @ _unit(query).T  # (sum L, Lq)
    logits = s / temperature
    # candidate token -> query tokens: a softmax along each row
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    per_token = (e * s).sum(1) / e.sum(1)  # (sum L,)
    cand_side = np.add.reduceat(per_token, starts) / counts  # (N,)
    # query token -> each candidate's tokens: a softmax within each candidate's segment
    seg_max = np.maximum.reduceat(logits, starts, axis=0)  # (N, Lq)
    e = np.exp(logits - np.repeat(seg_max, counts, axis=0))
    per_query_token = np.add.reduceat(e * s, starts, axis=0) / np.add.reduceat(e, starts, axis=0)  # (N, Lq)
    query_side = per_query_token.mean(1)  # (N,)
    return (0.5 * (cand_side + query_side)).astype(np.float32)


def cico_matrix(clip_tokens: Sequence[np.ndarray], text_tokens: Sequence[np.ndarray],
                temperature: float = CICO_TEMPERATURE, advance: Callable[[int], None] | None = None) -> np.ndarray:
    """(len(clip_tokens), len(text_tokens)) float32 CiCo scores. A side of one item takes the ragged
    one-to-many path (a search's query); otherwise blocks of clips against all sentences, padded.
    `advance(n)` is told how many clips each block finished."""
    if len(text_tokens) == 1:
        return cico_one_to_many(text_tokens[0], *stacked(clip_tokens), temperature)[:, None]
    if len(clip_tokens) == 1:
        return cico_one_to_many(clip_tokens[0], *stacked(text_tokens), temperature)[None, :]
    tt, tm = pad_tokens(text_tokens)
    out = np.empty((len(clip_tokens), len(text_tokens)), np.float32)
    with torch.no_grad():
        for start in range(0, len(clip_tokens), CLIP_BLOCK):
            vt, vm = pad_tokens(clip_tokens[start:start + CLIP_BLOCK])
            block = cico_similarity(vt, vm, tt, tm, temperature).numpy()
            out[start:start + len(block)] = block
            if advance is not None:
                advance(len(block))
    return out
