"""Retrieval metrics on a dense score matrix: R@K, median and mean rank, two protocols.

Paper protocol (CiCo, C²RL): only the paired item counts. Duplicate-aware protocol: any
candidate whose sentence equals the query's counts (PHOENIX-2014T test has 642 clips but
630 distinct sentences). Ties break deterministically: candidates are ordered by score, then
by index, so an equal score at a lower index ranks first.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10)


def first_relevant_rank(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of each query's best-placed relevant candidate.

    scores (Q, C) higher is better; relevant (Q, C) bool, at least one True per row.
    In the order (score desc, index asc) the first relevant candidate is the relevant one with
    the highest score and, among equals, the lowest index; its rank counts what precedes it.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    assert scores.shape == relevant.shape and scores.ndim == 2, (scores.shape, relevant.shape)
    if not relevant.any(1).all():
        raise ValueError("every query needs at least one relevant candidate")
    masked = np.where(relevant, scores, -np.inf)
    best = masked.argmax(1)  # argmax returns the lowest index among equal maxima
    s_best = scores[np.arange(len(scores)), best][:, None]
    idx = np.arange(scores.shape[1])[None, :]
    ahead = (scores > s_best) | ((scores == s_best) & (idx < best[:, None]))
    return 1 + ahead.sum(1)


def rank_metrics(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS, prefix: str = "") -> dict[str, float]:
    """ranks (Q,) -> {prefix}R@K (percent) for each K, {prefix}MedR, {prefix}MeanR."""
    ranks = np.asarray(ranks)
    out = {f"{prefix}R@{k}": float(100.0 * (ranks <= k).mean()) for k in ks}
    out[f"{prefix}MedR"] = float(np.median(ranks))
    out[f"{prefix}MeanR"] = float(ranks.mean())
    return out


def normalise_text(text: str) -> str:
    """Sentences that differ only in case or spacing are the same sentence."""
    return " ".join(str(text).lower().split())


def same_text_matrix(texts_a: Sequence[str], texts_b: Sequence[str]) -> np.ndarray:
    """(len(a), len(b)) bool: sentence a_i equals sentence b_j (normalised)."""
    ids: dict[str, int] = {}
    a = np.array([ids.setdefault(normalise_text(t), len(ids)) for t in texts_a])
    b = np.array([ids.setdefault(normalise_text(t), len(ids)) for t in texts_b])
    return a[:, None] == b[None, :]


def retrieval_metrics(scores: np.ndarray, texts: Sequence[str] | None = None,
                      ks: Sequence[int] = DEFAULT_KS, v2t_scores: np.ndarray | None = None) -> dict[str, float]:
    """Both directions on a paired score matrix (N clips, N sentences; clip i says sentence i).
    `v2t_scores`, when given, ranks the V2T direction instead (a score that depends on the direction,
    as the gloss lexicon's does).

    Keys: `paper/t2v_R@1`, `paper/v2t_MedR`, ... and, when `texts` is given, the same under
    `dedup/` for the duplicate-aware protocol.
    """
    scores = np.asarray(scores)
    n = scores.shape[0]
    if scores.shape != (n, n):
        raise ValueError(f"expected a square paired score matrix, got {scores.shape}")
    v2t = scores if v2t_scores is None else np.asarray(v2t_scores)
    if v2t.shape != scores.shape:
        raise ValueError(f"V2T scores {v2t.shape} do not match T2V scores {scores.shape}")
    paired = np.eye(n, dtype=bool)
    protocols = {"paper": paired}
    if texts is not None:
        if len(texts) != n:
            raise ValueError(f"{len(texts)} texts for {n} clips")
        protocols["dedup"] = same_text_matrix(texts, texts)
    out: dict[str, float] = {}
    for name, relevant in protocols.items():
        out.update(rank_metrics(first_relevant_rank(scores.T, relevant.T), ks, f"{name}/t2v_"))
        out.update(rank_metrics(first_relevant_rank(v2t, relevant), ks, f"{name}/v2t_"))
    out["count"] = float(n)
    if texts is not None:
        out["distinct_texts"] = float(len({normalise_text(t) for t in texts}))
    return out


def paired_ranks(scores: np.ndarray, direction: str) -> np.ndarray:
    """A paired (clips, texts) matrix, clip i saying text i -> each query's 1-based rank of its match.
    T2V queries are the texts (columns), V2T queries the clips (rows)."""
    scores = np.asarray(scores)
    if direction not in ("t2v", "v2t"):
        raise ValueError(f"direction must be 't2v' or 'v2t', not {direction!r}")
    n = scores.shape[0]
    if scores.shape != (n, n):
        raise ValueError(f"expected a square paired score matrix, got {scores.shape}")
    return first_relevant_rank(scores.T if direction == "t2v" else scores, np.eye(n, dtype=bool))


def paired_recall_at_1(scores: np.ndarray, direction: str) -> float:
    """R@1 (percent) of one direction on a paired (clips, texts) matrix: what dev calibration maximises."""
    return float(100.0 * (paired_ranks(scores, direction) == 1).mean())
