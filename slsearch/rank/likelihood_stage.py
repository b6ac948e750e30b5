"""The decoder-likelihood stage: the last re-ranking, on each query's first `depth` candidates.

The decoder's raw score (`slsearch.models.likelihood`: log p(s | c) for T2V, minus log p(s) for V2T)
is standardised with dev statistics and added to the previous stage's score with a per-direction
weight picked on dev (`fit`). It runs on the first `depth` candidates of the previous stage only: one
decoder pass per candidate is ~1 ms, and deeper candidates are rarely right. The same per-query rule
applies to one search and to a whole evaluation matrix, so both rank alike.

On a CPU both directions read their candidates with an int8 copy of the decoder (`RetrievalModel.fast_decoder`);
stages fitted before V2T read that way (no `v2t_fast` in their file) keep reading V2T in float32, as their
weights were fitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from slsearch.errors import SlsearchError
from slsearch.eval.metrics import paired_ranks
from slsearch.models.likelihood import has_prior, sentence_loglik, sentence_prior
from slsearch.progress import Progress

LIKELIHOOD_FILE = "likelihood.json"
# Deeper than the 10 hits a search shows: at depth 10, dev R@1 stayed within two queries of depth 20 for four
# SynPhoenix models, but V2T R@10 fell 95.4 -> 93.3 (gloss-free, 18 epochs), as candidates 11-20 could no longer
# move up (benchmarks/RESULTS.md, "The likelihood stage: depth and V2T in int8"). Depth 10 halves the stage's cost.
DEFAULT_DEPTH = 20
_ONE_CALL = 256  # pairs per decoder call when they are not grouped by query
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)  # picked on dev


@dataclass
class LikelihoodStage:
    """Which directions the decoder re-ranks, how deep, and with what weight."""

    depth: int = DEFAULT_DEPTH
    # direction ('t2v' / 'v2t') -> {"mean", "std", "weight", "dev_R@1", "dev_R@1_before"}
    fusion: dict[str, dict[str, float]] = field(default_factory=dict)
    fitted_on: str | None = None  # hash of the checkpoint whose dev scores picked the weights
    v2t_fast: bool = True  # V2T read with the fast (int8) decoder too; False for stages fitted before it was

    def applies(self, direction: str) -> bool:
        return bool(self.fusion.get(direction, {}).get("weight"))

    # --- scores ---------------------------------------------------------------------------------
    @staticmethod
    def raw_scores(net, direction: str, clip_tokens: Sequence[np.ndarray], texts: Sequence[str],
                   priors: np.ndarray | None = None, progress: Progress | None = None,
                   decoder=None, group: int | None = None) -> np.ndarray:
        """The raw score of aligned (clip, sentence) pairs: log p(s | c) for T2V, minus log p(s) for V2T
        (`priors` aligned with `texts`, computed here when not given). `decoder`: a copy of the network's
        decoder to read with (RetrievalModel.fast_decoder; None: its own). The priors are always the
        network's own decoder's, as an index stores them: an int8 reading of log p(s | c) against them cost
        two dev queries in 519 at depth 20 (benchmarks/RESULTS.md). `group`: pairs come in runs of this
        many per query, each read in one call (an int8 decoder's scores depend on what is read with them)."""
        if direction not in ("t2v", "v2t"):
            raise ValueError(f"direction must be 't2v' or 'v2t', not {direction!r}")
        ll = sentence_loglik(net, clip_tokens, texts, progress, decoder, group or _ONE_CALL)
        if direction == "t2v":
            return ll
        return ll - (sentence_prior(net, texts) if priors is None else priors)

    def heads(self, previous: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
        """(clip rows, text columns) of every query's first `depth` candidates in a (clips, texts) matrix;
        T2V queries are columns, V2T queries rows."""
        by_column = direction == "t2v"
        scores = previous.T if by_column else previous
        top = np.argsort(-scores, axis=1, kind="stable")[:, : self.depth]  # (queries, depth)
        queries = np.repeat(np.arange(len(scores)), top.shape[1])
        cands = top.ravel()
        return (cands, queries) if by_column else (queries, cands)

    def pair_scores(self, net, previous: np.ndarray, clip_tokens: Sequence[np.ndarray], texts: Sequence[str],
                    direction: str, text_priors: np.ndarray | None = None,
                    progress: Progress | None = None, fast_decoder=None) -> np.ndarray:
        """Raw scores of each query's first `depth` candidates in a (clips, texts) matrix; NaN elsewhere.
        `text_priors`: the sentences' log p(s) where already known (an index stores them); `fast_decoder`:
        what to read with (RetrievalModel.fast_decoder), V2T only when the stage was fitted with it."""
        clips, sents = self.heads(previous, direction)
        priors = None
        if direction == "v2t":
            priors = (sentence_prior(net, texts) if text_priors is None else np.asarray(text_priors))[sents]
        decoder = fast_decoder if direction == "t2v" or self.v2t_fast else None
        per_query = previous.shape[0 if direction == "t2v" else 1]  # candidates a query has
        raw = np.full(previous.shape, np.nan, np.float32)
        raw[clips, sents] = self.raw_scores(net, direction, [clip_tokens[i] for i in clips],
                                            [texts[j] for j in sents], priors, progress, decoder,
                                            min(self.depth, per_query))
        return raw

    def combine(self, previous: np.ndarray, raw: np.ndarray, direction: str) -> np.ndarray:
        """Each query's head gets previous + weight * standardised raw score; the rest keep their previous
        order, below every head candidate of their query."""
        if not self.applies(direction):
            return previous
        f = self.fusion[direction]
        head = ~np.isnan(raw)
        combined = (previous + f["weight"] * (np.nan_to_num(raw) - f["mean"]) / f["std"]).astype(np.float32)
        floor = np.nanmin(np.where(head, combined, np.nan)) - 1.0
        rest = floor - (previous.max() - previous)
        return np.where(head, combined, rest).astype(np.float32)

    # --- calibration ----------------------------------------------------------------------------
    def fit(self, net, previous: dict[str, np.ndarray], clip_tokens: Sequence[np.ndarray], texts: Sequence[str],
            weights: Sequence[float] = WEIGHTS, fast_decoder=None, directions: Sequence[str] = ("t2v", "v2t"),
            by: str = "R@1") -> dict[str, dict[str, float]]:
        """Pick each direction's weight by `by` (R@1, or MRR: every rank counts) on a paired dev set (clip i
        says texts[i]); `previous[direction]` is the (clips, texts) matrix of the stage before. V2T is
        calibrated only when the model has a sentence prior."""
        n = len(texts)
        self.v2t_fast = True
        fusion: dict[str, dict[str, float]] = {}
        for direction in directions:
            if direction == "v2t" and not has_prior(net):
                continue
            prev = previous[direction]
            if prev.shape != (n, n):
                raise ValueError(f"calibration needs a paired square matrix, got {prev.shape} for {n} texts")
            raw = self.pair_scores(net, prev, clip_tokens, texts, direction, fast_decoder=fast_decoder)
            stats = {"mean": float(np.nanmean(raw)), "std": float(np.nanstd(raw) or 1.0)}
            best = None
            for w in weights:
                self.fusion[direction] = {**stats, "weight": float(w)}
                ranks = paired_ranks(self.combine(prev, raw, direction) if w else prev, direction)
                measured = {"R@1": 100.0 * float((ranks == 1).mean()), "MRR": 100.0 * float((1.0 / ranks).mean())}
                if best is None or measured[by] > best[0][by] + 1e-9:
                    best = (measured, w)
            before = paired_ranks(prev, direction)
            fusion[direction] = {**stats, "weight": float(best[1]), "dev_R@1": round(best[0]["R@1"], 2),
                                 "dev_R@1_before": round(100.0 * float((before == 1).mean()), 2)}
            if by == "MRR":
                fusion[direction].update({"dev_MRR": round(best[0]["MRR"], 2),
                                          "dev_MRR_before": round(100.0 * float((1.0 / before).mean()), 2)})
        self.fusion = fusion
        return fusion

    # --- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"depth": self.depth, "fusion": self.fusion, "fitted_on": self.fitted_on, "v2t_fast": self.v2t_fast}

    @classmethod
    def from_dict(cls, d: dict) -> "LikelihoodStage":
        return cls(depth=int(d["depth"]), fusion=dict(d["fusion"]), fitted_on=d.get("fitted_on"),
                   v2t_fast=bool(d.get("v2t_fast", False)))

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / LIKELIHOOD_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "LikelihoodStage | None":
        """The stage saved in a checkpoint folder, or None when it has none."""
        path = Path(folder) / LIKELIHOOD_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as e:
            raise SlsearchError(f"{path}: unreadable likelihood stage ({e}); run `slsearch calibrate` again") from None
