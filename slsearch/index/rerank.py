"""CiCo re-ranking of one query against N candidates, on ragged (unpadded) token states.

The same score as `slsearch.models.similarity.cico_similarity` (tests check they agree), specialised
for search: one query, N candidates of different lengths, stored flat as they are in the token
store. Without padding to the longest candidate (clip lengths vary ~5x) the matrix product is one
(sum L_n, d) x (d, L_q) and the two softmaxes become a row softmax and a per-candidate segment
softmax; a single query is ~3x faster this way than padded.

CiCo is symmetric in its two sides (each half is the other's mirror), so the same code scores a
text query against clips (T2V) and a clip query against sentences (V2T) or clips (V2V).
"""

from __future__ import annotations

import numpy as np

from slsearch.models.similarity import CICO_TEMPERATURE


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
