"""Gloss queries spotted in a clip's CTC posteriors, not only in its greedy reading.

A greedy reading keeps one label per clip token and drops the rest: a gloss the recogniser found
second-likeliest (the side head's typical error is a deletion, the blank winning over a weak gloss)
is gone from it. The index therefore keeps, per clip token, the TOP_K likeliest glosses with their
log-probability relative to that token's best label, blank included: r_t(g) = log p_t(g) -
max_c log p_t(c) <= 0 (0 where g is the greedy label). A gloss outside a token's top K gets that
token's K-th value minus UNLISTED_MARGIN: an upper bound on its probability, lowered a little.

A query g_1..g_m spots in a clip with score

    max over tokens t_1 < t_2 < ... < t_m of  sum_j r_{t_j}(g_j)

that is 0 when the greedy reading holds the query in order, and below 0 by how much less likely than
the best labels of their tokens the query's glosses are (a Viterbi path through "anything, g_1,
anything, g_2, ..., anything" against a filler that is always the token's best label; one token per
gloss suffices, as more could only add terms <= 0). Written by hand: keyword spotting against a
filler model is a dozen lines of dynamic programming that no CTC decoder package exposes.
"""

from __future__ import annotations

import struct
from typing import Sequence

import numpy as np

TOP_K = 5
UNLISTED_MARGIN = 1.0  # nats below a token's K-th gloss for a gloss outside its top K
_HEADER = struct.Struct("<HB")  # tokens, K


def pack(logits: np.ndarray, k: int = TOP_K) -> bytes:
    """One clip's CTC logits or log-probabilities (T, C+1), blank at 0 -> the stored top-k (ids as gloss
    classes 1..C, r values as float16)."""
    logits = np.asarray(logits, np.float32)
    log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    t, classes = log_probs.shape
    k = min(k, classes - 1)
    best = log_probs.max(axis=1, keepdims=True)
    glosses = log_probs[:, 1:]
    ids = np.argsort(-glosses, axis=1, kind="stable")[:, :k]
    r = np.take_along_axis(glosses, ids, axis=1) - best
    return _HEADER.pack(t, k) + (ids + 1).astype("<u2").tobytes() + r.astype("<f2").tobytes()


def unpack(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """-> (gloss classes (T, K) int, r values (T, K) float32); ValueError when the bytes are not a packing."""
    if blob is None or len(blob) < _HEADER.size:
        raise ValueError("no gloss posteriors")
    t, k = _HEADER.unpack_from(blob)
    n = t * k
    if len(blob) != _HEADER.size + 4 * n:
        raise ValueError(f"gloss posteriors of {len(blob)} bytes, expected {_HEADER.size + 4 * n}")
    ids = np.frombuffer(blob, "<u2", n, _HEADER.size).reshape(t, k).astype(np.int64)
    r = np.frombuffer(blob, "<f2", n, _HEADER.size + 2 * n).reshape(t, k).astype(np.float32)
    return ids, r


class Posteriors:
    """Every clip's stored top-k, for scoring queries against all of them: clips sorted by length and
    padded in blocks of similar length once (a long programme pads its own block, not every clip)."""

    def __init__(self, blobs: Sequence[bytes], block: int = 2048):
        parts = [unpack(b) for b in blobs]
        self.n = len(parts)
        lengths = np.array([len(ids) for ids, _ in parts], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        self.blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.block_of = np.zeros(self.n, np.int64)  # each clip's block, and its row inside it
        self.slot_of = np.zeros(self.n, np.int64)
        self.max_floor = np.full(self.n, -np.inf, np.float32)  # per clip: what an unlisted gloss gets, at best
        listed_key, listed_best = [], []
        for lo in range(0, self.n, block):
            rows = order[lo:lo + block]
            t = max(int(lengths[rows].max()), 1)
            k = max(parts[i][0].shape[1] for i in rows)
            ids = np.zeros((len(rows), t, k), np.int32)
            r = np.full((len(rows), t, k), -np.inf, np.float32)
            for j, i in enumerate(rows):
                pi, pr = parts[i]
                ids[j, :len(pi), :pi.shape[1]] = pi
                r[j, :len(pr), :pr.shape[1]] = pr
            valid = np.arange(t)[None, :] < lengths[rows][:, None]
            # a gloss outside a token's top k: a little below its k-th; no gloss on padding
            floor = np.where(valid, np.where(np.isfinite(r), r, np.inf).min(axis=2) - UNLISTED_MARGIN, -np.inf)
            # the listed glosses as postings sorted by gloss: (gloss, token position in the block, r); a
            # query gloss then touches only its own entries, not the whole (B, T, K) block
            listed = np.isfinite(r)
            gloss = ids[listed]
            order_g = np.argsort(gloss, kind="stable")
            where = np.nonzero(listed)
            position = (where[0] * t + where[1])[order_g]
            self.blocks.append((rows, floor.astype(np.float32), gloss[order_g], position, r[listed][order_g]))
            self.block_of[rows], self.slot_of[rows] = len(self.blocks) - 1, np.arange(len(rows))
            self.max_floor[rows] = floor.max(axis=1)
            # this block's (gloss, clip) pairs with the best r the clip gives the gloss, reduced here so
            # that the whole index's pairs are never held token by token
            key = gloss[order_g].astype(np.int64) * max(self.n, 1) + rows[position // t]
            by_key = np.argsort(key, kind="stable")
            key, value = key[by_key], r[listed][order_g][by_key]
            first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
            listed_key.append(key[first])
            listed_best.append(np.maximum.reduceat(value, first) if len(key) else value)
        # postings for upper bounds: gloss class -> the clips that list it at some token, with the best r
        # they give it (sorted by gloss, then clip; a pair belongs to one block, so the keys are unique)
        key = np.concatenate(listed_key or [np.zeros(0, np.int64)])
        by_key = np.argsort(key, kind="stable")
        self.posting_best = np.concatenate(listed_best or [np.zeros(0, np.float32)])[by_key]
        self.posting_clip, self.posting_gloss = key[by_key] % max(self.n, 1), key[by_key] // max(self.n, 1)

    def __len__(self) -> int:
        return self.n

    def upper_bounds(self, query: Sequence[int]) -> np.ndarray:
        """(N,) a bound on each clip's spotting score, from postings alone: each query gloss at the token that
        suits it best, order ignored (max over tokens of r_t(g): its best listed value, or the clip's best
        floor where that is higher or it is not listed), summed. The ordered path picks one token per gloss,
        so it scores at most this. Search scores clips exactly in the order of these bounds and stops when
        the k-th best exact score beats the next bound (a threshold algorithm, Fagin et al.)."""
        bound = np.zeros(self.n, np.float32)
        for g in query:
            bound += self.max_floor
            lo, hi = np.searchsorted(self.posting_gloss, np.array([g, g + 1], self.posting_gloss.dtype))
            clips = self.posting_clip[lo:hi]
            bound[clips] += np.maximum(self.posting_best[lo:hi] - self.max_floor[clips], 0)
        return bound

    def scores(self, query: Sequence[int], clips: np.ndarray | None = None) -> np.ndarray:
        """Spotting scores of a query of gloss classes (1..C), in order; -inf for a clip with fewer tokens
        than the query has glosses. (N,) for every clip, or (len(clips),) for the given clips only (each
        block then works on those of its rows alone)."""
        if clips is None:
            out = np.full(self.n, -np.inf, np.float32)
            wanted = [slice(None)] * len(self.blocks)
        else:
            clips = np.asarray(clips, np.int64)
            out = np.full(len(clips), -np.inf, np.float32)
            blocks = self.block_of[clips]
            by_block = np.argsort(blocks, kind="stable")
            bounds = np.searchsorted(blocks[by_block], np.arange(len(self.blocks) + 1))
            wanted = [by_block[bounds[b]:bounds[b + 1]] for b in range(len(self.blocks))]
        if not len(query):
            return out
        for (rows, floor, gloss, position, value), picked in zip(self.blocks, wanted):
            if clips is not None and not len(picked):
                continue
            t = floor.shape[1]
            if clips is None:
                slots, base = None, floor
            else:
                slots = self.slot_of[clips[picked]]
                base = floor[slots]
                new_slot = np.full(len(rows), -1, np.int64)
                new_slot[slots] = np.arange(len(slots))
            path = None
            for g in query:
                # (the keys in the postings' own dtype: a Python list would make numpy cast the whole array)
                lo, hi = np.searchsorted(gloss, np.array([g, g + 1], gloss.dtype))
                here = base.copy()  # (B, T); a class is listed at most once per token
                at, value_g = position[lo:hi], value[lo:hi]
                if slots is not None:  # the postings of the picked rows, renumbered
                    keep = new_slot[at // t]
                    at, value_g = keep[keep >= 0] * t + at[keep >= 0] % t, value_g[keep >= 0]
                here.reshape(-1)[at] = value_g
                if path is not None:  # the best path through the previous glosses ending strictly before
                    before = np.maximum.accumulate(path, axis=1)[:, :-1]
                    here = np.concatenate([np.full((len(here), 1), -np.inf, np.float32), before], axis=1) + here
                path = here
            if clips is None:
                out[rows] = path.max(axis=1)
            else:
                out[picked] = path.max(axis=1)
        return out
