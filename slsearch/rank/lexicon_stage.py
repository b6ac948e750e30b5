"""The gloss-lexicon stage: CiCo fused with how well a sentence and a clip's gloss reading translate.

The lexicon itself (`slsearch.models.lexicon.Lexicon`) scores sentences against gloss readings; this
stage adds that score to CiCo's, each standardised with its dev statistics, with a per-direction
weight picked on dev (`fit`). Fixed statistics (not the candidates') make one query against N
candidates and a full evaluation matrix rank alike. The weights live in `lexicon.fusion` and are saved
with the lexicon.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from slsearch.eval.metrics import paired_recall_at_1
from slsearch.models.lexicon import Lexicon

FUSION_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)  # lexicon weight, picked on dev
REVERSE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # T2V: share of the reverse channel, picked on dev


class LexiconStage:
    def __init__(self, lexicon: Lexicon):
        self.lexicon = lexicon

    @property
    def calibrated(self) -> bool:
        return bool(self.lexicon.fusion)

    @property
    def uses_reading_priors(self) -> bool:
        """Whether T2V reads the reverse channel, whose denominator is each clip's reading prior."""
        return bool(self.lexicon.fusion.get("t2v", {}).get("reverse_weight")) and self.lexicon.has_reverse_channel

    def scores(self, readings: Sequence[str], texts: Sequence[str], direction: str,
               reading_priors: np.ndarray | None = None) -> np.ndarray:
        """(clips, texts) lexical scores in `direction` at the calibrated reverse-channel share."""
        return self.lexicon.lexical_matrix(readings, texts, direction, reading_priors)

    def combine(self, cico: np.ndarray, lexical: np.ndarray, direction: str) -> np.ndarray:
        f = self.lexicon.fusion.get(direction)
        if not f:
            return cico
        return ((cico - f["cico_mean"]) / f["cico_std"]
                + f["weight"] * (lexical - f["lexical_mean"]) / f["lexical_std"]).astype(np.float32)

    def fit(self, cico: np.ndarray, readings: Sequence[str], texts: Sequence[str],
            weights: Sequence[float] = FUSION_WEIGHTS) -> dict[str, dict[str, float]]:
        """Pick each direction's fusion weight (and T2V's reverse-channel share) by R@1 on a paired dev
        set (clip i says texts[i]); cico is its (clips, texts) matrix. Sets and returns lexicon.fusion."""
        lex = self.lexicon
        n = len(texts)
        if cico.shape != (n, n) or len(readings) != n:
            raise ValueError(f"calibration needs a paired square matrix, got {cico.shape} for {n} texts")
        priors = lex.reading_priors(readings)
        v2t = lex.readings_given_texts(readings, texts)  # also the reverse channel of T2V
        channel = {"t2v": lex.text_given_readings(texts, readings).T, "v2t": v2t}
        reverse = None if priors is None else v2t - priors[:, None]  # as Lexicon.clip_scores has it
        fusion: dict[str, dict[str, float]] = {}
        for direction in ("t2v", "v2t"):
            shares = REVERSE_WEIGHTS if direction == "t2v" and reverse is not None else (0.0,)
            best = None
            for rw in shares:
                lexical = channel[direction] + rw * reverse if rw else channel[direction]
                stats = {"cico_mean": float(cico.mean()), "cico_std": float(cico.std() or 1.0),
                         "lexical_mean": float(lexical.mean()), "lexical_std": float(lexical.std() or 1.0)}
                for w in weights:
                    lex.fusion = {direction: {**stats, "weight": float(w)}}
                    r1 = paired_recall_at_1(self.combine(cico, lexical, direction), direction)
                    if best is None or r1 > best[0]:
                        best = (r1, {**stats, "weight": float(w)}, rw)
            fusion[direction] = {**best[1], "dev_R@1": round(best[0], 2)}
            if direction == "t2v" and priors is not None:
                fusion[direction]["reverse_weight"] = float(best[2])
        lex.fusion = fusion
        return fusion
