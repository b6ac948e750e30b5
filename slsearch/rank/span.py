"""Where in a clip a query matched: the span of clip tokens that the query's words attend to."""

from __future__ import annotations

import numpy as np

from slsearch.models.similarity import CICO_TEMPERATURE

# The share of the query's attention a span must hold. Picked on dev programmes (benchmarks/long_video.py,
# RESULTS "Long videos"): hits whose span overlaps the true sentence with IoU >= 0.5 at R@1 were 53 / 79 /
# 95 / 98 % for 0.7 / 0.8 / 0.9 / 0.95 over activity segments and 52 / 67 / 74 / 72 % over 8 s windows.
SPAN_MASS = 0.9


def match_span(query_tokens: np.ndarray, clip_tokens: np.ndarray, temperature: float = CICO_TEMPERATURE,
               mass: float = SPAN_MASS) -> tuple[int, int]:
    """query (Lq, d), clip (L, d) token states -> (first, last) clip token (inclusive) of the match.

    The rule follows CiCo's query side: each query token's softmax over the clip's tokens of the cosine
    similarities divided by `temperature` (the model's CiCo tau) says which clip tokens that word
    attends to; summed over the query's tokens this gives one weight per clip token (total Lq). The
    span is the smallest contiguous window of clip tokens that holds at least `mass` (SPAN_MASS) of the
    total weight (ties: the window with more weight, then the earliest), then grown token by token on
    either side while the next token holds at least half the window's mean weight per token: a match
    spread evenly over four tokens needs only three for 70 % of the weight, and the fourth belongs to it.
    A query whose words all attend to one token gives that token alone.

    Fallback: when the weight is no more concentrated than uniform (the smallest window holding `mass`
    of the weight is at least `mass` of the clip's tokens long), the query matched nowhere in
    particular and the span is the whole clip (0, L - 1). An empty query also gives the whole clip.
    Cost: one (L, d) x (d, Lq) product.
    """
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], not {mass}")
    clip = np.asarray(clip_tokens, dtype=np.float64)
    query = np.asarray(query_tokens, dtype=np.float64)
    n = len(clip)
    if n == 0:
        raise ValueError("a clip without tokens has no span")
    if len(query) == 0:
        return 0, n - 1
    clip = clip / np.maximum(np.linalg.norm(clip, axis=-1, keepdims=True), 1e-12)
    query = query / np.maximum(np.linalg.norm(query, axis=-1, keepdims=True), 1e-12)
    logits = (query @ clip.T) / temperature  # (Lq, L)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    weight = (e / e.sum(axis=1, keepdims=True)).sum(axis=0)  # (L,), sums to Lq
    weight = weight / weight.sum()
    cum = np.concatenate([[0.0], np.cumsum(weight)])
    need = mass - 1e-9
    # for each first token, the first end (exclusive) whose window holds `need`; windows past the clip drop out
    ends = np.searchsorted(cum, cum[:-1] + need, side="left")
    valid = ends <= n
    firsts = np.flatnonzero(valid)
    lengths = ends[valid] - firsts
    held = cum[ends[valid]] - cum[firsts]
    best = np.lexsort((firsts, -held, lengths))[0]  # shortest, then most weight, then earliest
    first, length = int(firsts[best]), int(lengths[best])
    if length >= mass * n - 1e-9:
        return 0, n - 1
    last = first + max(length, 1) - 1
    floor = 0.5 * (cum[last + 1] - cum[first]) / (last - first + 1)
    while first > 0 and weight[first - 1] >= floor:
        first -= 1
    while last < n - 1 and weight[last + 1] >= floor:
        last += 1
    return first, last
