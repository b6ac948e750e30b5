"""The hubness stage (V2T): a sentence that scores high against many unrelated clips is discounted.

Some sentences are "hubs": generic, or on a frequent topic, they come near the top of many clips' lists
(the V2T errors left on SynPhoenix are mostly other sentences on the same topic). As in CSLS (Lample et
al. 2018) and the query-bank normalisation of cross-modal retrieval (QB-Norm, Bogolin et al. 2022), each
sentence's hub score is the mean of its `k` best scores against a bank of training clips, and V2T ranks
by score - weight * hub score, with the weight picked on dev (by mean reciprocal rank). The bank is a
fixed sample of the training clips saved with the model, never the clips being searched: a query set used
as its own bank would tell each sentence which clip says it (a transductive score, not one a search can
have).

The hub score is the stage below's own score (CiCo, + lexicon when the model has one) of the bank's clips
against the sentence, so it is on the same scale. It depends only on the sentence: computed once per
sentence and kept (`_memo`), so an index's candidates cost it once each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from slsearch.errors import SlsearchError
from slsearch.eval.metrics import paired_ranks

HUBNESS_FILE = "hubness.npz"
BANK_SIZE = 1000  # training clips in the bank: on SynPhoenix dev, 500-2000 gave the same gain, 250 less
PREFILTER = 100  # bank clips scored per sentence (see `hubs`); hub scores correlate 0.998 with the whole bank's
K = 5  # the best bank scores a hub score averages (dev: 3-10 alike, 1 noisier, 100 weaker)
SHARES = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)  # weight in units of std(stage) / std(hub), picked on dev

# (bank clips, sentences) -> the stage below's V2T scores of those pairs
StageScores = Callable[[Sequence[np.ndarray], Sequence[str] | None, Sequence[str], Sequence[np.ndarray]], np.ndarray]


@dataclass
class HubnessStage:
    bank_tokens: list[np.ndarray]  # per bank clip (L, d) token states, float16 on disk
    bank_readings: list[str] | None = None  # their gloss readings, when the model reads glosses
    k: int = K
    below: str = "fused"  # the stage it corrects: 'fused' (CiCo + lexicon) or 'cico'
    fusion: dict[str, dict[str, float]] = field(default_factory=dict)  # {"v2t": {"weight", "dev_R@1", ...}}
    fitted_on: str | None = None  # hash of the checkpoint whose dev scores picked the weight
    _memo: dict[str, float] = field(default_factory=dict, repr=False)

    def applies(self, direction: str, below: str) -> bool:
        return direction == "v2t" and below == self.below and bool(self.fusion.get("v2t", {}).get("weight"))

    @cached_property
    def _bank_means(self) -> np.ndarray:
        """Each bank clip's mean token state, unit length: the cheap score that picks whom to score fully."""
        means = np.stack([t.mean(0) for t in self.bank_tokens]).astype(np.float32)
        return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-8)

    def hubs(self, texts: Sequence[str], text_tokens: Sequence[np.ndarray], stage_scores: StageScores) -> np.ndarray:
        """Each sentence's hub score: the mean of its k best stage scores against the bank's clips. The
        stage scores only the PREFILTER bank clips nearest the sentence by mean token state (a full bank
        of 1,000 cost ~50 ms a sentence on one core; the k best are among those 100 almost always)."""
        for i, text in enumerate(texts):
            if text in self._memo:
                continue
            q = np.asarray(text_tokens[i], np.float32).mean(0)
            near = self._bank_means @ (q / max(float(np.linalg.norm(q)), 1e-8))
            pick = np.argpartition(-near, PREFILTER - 1)[:PREFILTER] if len(near) > PREFILTER else np.arange(len(near))
            scores = stage_scores([self.bank_tokens[j] for j in pick],
                                  None if self.bank_readings is None else [self.bank_readings[j] for j in pick],
                                  [text], [text_tokens[i]])[:, 0]
            k = min(self.k, len(scores))
            self._memo[text] = float(-np.partition(-scores, k - 1)[:k].mean())
        return np.array([self._memo[t] for t in texts], np.float32)

    def combine(self, previous: np.ndarray, hubs: np.ndarray) -> np.ndarray:
        """(clips, texts) V2T scores with each sentence's column lowered by weight x its hub score."""
        return (previous - self.fusion["v2t"]["weight"] * hubs[None, :]).astype(np.float32)

    def fit(self, previous: np.ndarray, hubs: np.ndarray, shares: Sequence[float] = SHARES) -> dict[str, float]:
        """Pick the weight by V2T mean reciprocal rank on a paired dev set; `previous` is its (clips, texts)
        matrix of the stage below, `hubs` its sentences' hub scores. MRR, not R@1: neighbouring weights
        differ by a query or two in R@1 (of 519 on SynPhoenix dev), enough for R@1 to pick the edge of the
        plateau by chance (0.1 of a plateau 0.1-0.3; test R@1 then fell), while MRR reads every rank."""
        n = len(hubs)
        if previous.shape != (n, n):
            raise ValueError(f"calibration needs a paired square matrix, got {previous.shape} for {n} texts")
        unit = float(previous.std()) / float(hubs.std() or 1.0)
        picked = None
        for share in shares:
            self.fusion = {"v2t": {"weight": share * unit}}
            ranks = paired_ranks(self.combine(previous, hubs), "v2t")
            mrr = float(100.0 * (1.0 / ranks).mean())
            if picked is None or mrr > picked[0] + 1e-9:
                picked = (mrr, share, float(100.0 * (ranks == 1).mean()))
        before = paired_ranks(previous, "v2t")
        self.fusion = {"v2t": {"weight": picked[1] * unit, "share": picked[1], "dev_R@1": round(picked[2], 2),
                               "dev_R@1_before": round(float(100.0 * (before == 1).mean()), 2),
                               "dev_MRR": round(picked[0], 2),
                               "dev_MRR_before": round(float(100.0 * (1.0 / before).mean()), 2)}}
        return self.fusion["v2t"]

    # --- files ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / HUBNESS_FILE
        tmp = path.with_name(path.name + ".tmp.npz")
        meta = {"k": self.k, "below": self.below, "fusion": self.fusion, "fitted_on": self.fitted_on,
                "readings": self.bank_readings}
        np.savez(tmp, tokens=np.concatenate(self.bank_tokens).astype(np.float16),
                 lengths=np.array([len(t) for t in self.bank_tokens], np.int64), meta=np.array(json.dumps(meta)))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "HubnessStage | None":
        """The stage saved in a checkpoint folder, or None when it has none."""
        path = Path(folder) / HUBNESS_FILE
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                tokens = np.split(z["tokens"].astype(np.float32), np.cumsum(z["lengths"])[:-1])
            return cls(tokens, meta["readings"], int(meta["k"]), meta["below"], dict(meta["fusion"]),
                       meta["fitted_on"])
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise SlsearchError(f"{path}: unreadable hubness stage ({e}); run `slsearch calibrate --bank` again") from None
