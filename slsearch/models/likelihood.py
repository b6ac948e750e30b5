"""Re-ranking by the decoder's likelihood: how well a clip explains a sentence.

The C²RL decoder learns to write a clip's sentence while it trains the video tower, so
log p(sentence | clip) is a third opinion beside CiCo and the gloss lexicon, and a different kind:
it reads the whole sentence in order, word by word, against the clip.

- T2V ranks the clips by log p(query | clip); the query's own prior is the same for every clip.
- V2T ranks sentences by log p(sentence | clip) - log p(sentence), the pointwise mutual
  information. Without the prior, short and common sentences win every query. p(sentence) is the
  same decoder reading a learnt "null clip": models trained with `model.lm_prior_rate > 0` have it;
  without it V2T is not re-ranked by likelihood.

It runs on the first `depth` candidates of the previous stage (CiCo + lexicon) only: one decoder
pass per candidate is ~1 ms, and deeper candidates are rarely right. The raw score is standardised
with dev statistics and added to the previous stage's score with a per-direction weight picked on
dev (`calibrate`), so a search and a full evaluation matrix rank alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from slsearch.console import progress_bar
from slsearch.errors import SlsearchError
from slsearch.models.decoder import shift_for_lm
from slsearch.models.similarity import pad_tokens

LIKELIHOOD_FILE = "likelihood.json"
DEFAULT_DEPTH = 20
DEFAULT_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
_BATCH = 256


def _loglik(model, memory: torch.Tensor, memory_mask: torch.Tensor, texts: Sequence[str]) -> np.ndarray:
    ids, mask = model.tokenizer(list(texts))
    ids, mask = ids.to(model.device), mask.to(model.device)
    dec_in, dec_mask, labels = shift_for_lm(ids, mask, model.tokenizer.bos_id, model.tokenizer.pad_id)
    logp = torch.log_softmax(model.decoder(memory, memory_mask, dec_in, dec_mask).float(), -1)
    token = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return token.sum(1).cpu().numpy()


def _batched(model, texts: Sequence[str], memory_of, progress: bool, desc: str) -> np.ndarray:
    """Run `_loglik` over batches of sentences; `memory_of(slice) -> (memory, mask)` gives each
    batch's decoder memory. Eval mode and no_grad, restored after."""
    out = np.zeros(len(texts), np.float32)
    was_training = model.training
    model.eval()
    bar = progress_bar(transient=True) if progress else None
    try:
        if bar:
            bar.start()
            task = bar.add_task(desc, total=len(texts), rate="")
        with torch.no_grad():
            for start in range(0, len(texts), _BATCH):
                part = slice(start, min(start + _BATCH, len(texts)))
                memory, memory_mask = memory_of(part)
                out[part] = _loglik(model, memory, memory_mask, list(texts[part]))
                if bar:
                    bar.update(task, advance=part.stop - part.start)
    finally:
        if bar:
            bar.stop()
        if was_training:
            model.train()
    return out


def sentence_loglik(model, clip_tokens: Sequence[np.ndarray], texts: Sequence[str],
                    progress: bool = False) -> np.ndarray:
    """log p(texts[k] | clip_tokens[k]) for aligned pairs: the decoder's summed log-probability of the
    sentence's tokens (end of sentence included) given a clip's token states (L, d)."""
    if len(clip_tokens) != len(texts):
        raise ValueError(f"{len(clip_tokens)} clips for {len(texts)} sentences: pairs must be aligned")

    def memory_of(part: slice):
        memory, mask = pad_tokens(clip_tokens[part])
        return memory.to(model.device), mask.to(model.device)

    return _batched(model, texts, memory_of, progress, "decoder likelihood")


def sentence_prior(model, texts: Sequence[str]) -> np.ndarray:
    """log p(text) from the decoder reading the null clip (models with `lm_prior_rate > 0`)."""
    return _batched(model, texts, lambda part: model.null_memory(part.stop - part.start), False, "sentence prior")


def has_prior(model) -> bool:
    return getattr(model, "null_video", None) is not None


@dataclass
class LikelihoodReranker:
    """The decoder-likelihood stage: which directions it re-ranks, how deep, and with what weight."""

    depth: int = DEFAULT_DEPTH
    # direction ('t2v' / 'v2t') -> {"mean", "std", "weight", "dev_R@1", "dev_R@1_before"}
    fusion: dict[str, dict[str, float]] = field(default_factory=dict)

    def applies(self, direction: str) -> bool:
        return bool(self.fusion.get(direction, {}).get("weight"))

    # --- scores ---------------------------------------------------------------------------------
    @staticmethod
    def raw_scores(model, direction: str, clip_tokens: Sequence[np.ndarray], texts: Sequence[str],
                   priors: np.ndarray | None = None, progress: bool = False) -> np.ndarray:
        """The stage's raw score of aligned (clip, sentence) pairs: log p(s | c) for T2V, minus
        log p(s) for V2T (`priors` aligned with `texts`, computed here when not given)."""
        ll = sentence_loglik(model, clip_tokens, texts, progress)
        if direction == "t2v":
            return ll
        if direction != "v2t":
            raise ValueError(f"direction must be 't2v' or 'v2t', not {direction!r}")
        if priors is None:
            priors = sentence_prior(model, texts)
        return ll - priors

    def combine(self, previous: np.ndarray, raw: np.ndarray, direction: str) -> np.ndarray:
        f = self.fusion[direction]
        return (previous + f["weight"] * (raw - f["mean"]) / f["std"]).astype(np.float32)

    def rerank(self, previous: np.ndarray, direction: str, raw_of) -> tuple[np.ndarray, np.ndarray]:
        """One query's candidates: previous-stage scores (N,) -> (order of all N, final scores).
        `raw_of(candidate positions) -> raw scores`. The first `depth` by the previous score are
        re-scored and re-ordered; the rest keep their score and order below them."""
        order = np.argsort(-previous, kind="stable")
        final = previous.astype(np.float32).copy()
        if not self.applies(direction) or len(order) == 0:
            return order, final
        head = order[: self.depth]
        final[head] = self.combine(previous[head], raw_of(head), direction)
        head = head[np.argsort(-final[head], kind="stable")]
        return np.concatenate([head, order[self.depth:]]), final

    def rerank_matrix(self, model, previous: np.ndarray, clip_tokens: Sequence[np.ndarray],
                      texts: Sequence[str], direction: str, progress: bool = False) -> np.ndarray:
        """A full (clips, texts) evaluation matrix, re-ranked per query as a search would: each query's
        first `depth` candidates get the combined score, the rest are pushed below them."""
        if not self.applies(direction):
            return previous
        raw = self.pair_scores(model, previous, clip_tokens, texts, direction, progress)
        return self._final_matrix(previous, raw, direction)

    def pair_scores(self, model, previous: np.ndarray, clip_tokens: Sequence[np.ndarray],
                    texts: Sequence[str], direction: str, progress: bool = False) -> np.ndarray:
        """Raw scores of each query's first `depth` candidates in a (clips, texts) matrix; NaN elsewhere."""
        by_column = direction == "t2v"  # T2V: a query is a column (sentence) over the clips
        scores = previous if not by_column else previous.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, : self.depth]  # (queries, depth)
        queries = np.repeat(np.arange(len(scores)), top.shape[1])
        cands = top.ravel()
        clips, sents = (cands, queries) if by_column else (queries, cands)
        priors = sentence_prior(model, texts) if direction == "v2t" else None
        raw_pairs = self.raw_scores(model, direction, [clip_tokens[i] for i in clips],
                                    [texts[j] for j in sents], None if priors is None else priors[sents], progress)
        raw = np.full(previous.shape, np.nan, np.float32)
        raw[clips, sents] = raw_pairs
        return raw

    def _final_matrix(self, previous: np.ndarray, raw: np.ndarray, direction: str) -> np.ndarray:
        if not self.applies(direction):
            return previous
        head = ~np.isnan(raw)
        combined = self.combine(previous, np.nan_to_num(raw), direction)
        # below every re-scored candidate of its query, in the previous order
        floor = np.nanmin(np.where(head, combined, np.nan)) - 1.0
        rest = floor - (previous.max() - previous)
        return np.where(head, combined, rest).astype(np.float32)

    # --- calibration ----------------------------------------------------------------------------
    def calibrate(self, model, previous: dict[str, np.ndarray], clip_tokens: Sequence[np.ndarray],
                  texts: Sequence[str], weights: Sequence[float] = DEFAULT_WEIGHTS) -> dict[str, dict[str, float]]:
        """Pick each direction's weight by R@1 on a paired dev set (clip i says texts[i]).
        `previous[direction]` is the (clips, texts) matrix of the stage before. V2T is calibrated
        only when the model has a sentence prior."""
        n = len(texts)
        target = np.arange(n)
        fusion: dict[str, dict[str, float]] = {}
        for direction in ("t2v", "v2t"):
            if direction == "v2t" and not has_prior(model):
                continue
            prev = previous[direction]
            if prev.shape != (n, n):
                raise ValueError(f"calibration needs a paired square matrix, got {prev.shape} for {n} texts")
            raw = self.pair_scores(model, prev, clip_tokens, texts, direction)
            stats = {"mean": float(np.nanmean(raw)), "std": float(np.nanstd(raw) or 1.0)}
            best = None
            for w in weights:
                self.fusion[direction] = {**stats, "weight": float(w)}
                final = self._final_matrix(prev, raw, direction) if w else prev
                hits = (final.argmax(0) == target) if direction == "t2v" else (final.argmax(1) == target)
                r1 = float(hits.mean() * 100)
                if best is None or r1 > best[0] + 1e-9:
                    best = (r1, w)
            before = prev.argmax(0) if direction == "t2v" else prev.argmax(1)
            fusion[direction] = {**stats, "weight": float(best[1]), "dev_R@1": round(best[0], 2),
                                 "dev_R@1_before": round(float((before == target).mean() * 100), 2)}
        self.fusion = fusion
        return fusion

    # --- files ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / LIKELIHOOD_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"depth": self.depth, "fusion": self.fusion}, indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "LikelihoodReranker | None":
        path = Path(folder) / LIKELIHOOD_FILE
        if not path.exists():
            return None
        try:
            d = json.loads(path.read_text())
            return cls(depth=int(d["depth"]), fusion=dict(d["fusion"]))
        except (ValueError, KeyError, TypeError) as e:
            raise SlsearchError(f"{path}: unreadable likelihood stage ({e}); run `slsearch calibrate` again") from None
