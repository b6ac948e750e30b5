"""Translation metrics as sign-language translation papers report them.

BLEU-1..4 are sacrebleu's corpus BLEU with the n-gram order capped at n (uniform weights up
to n); chrF is sacrebleu's; ROUGE-L is the sentence-level LCS F-score (beta 1.2) averaged over
sentences, as in the SLT evaluation code that PHOENIX-2014T results use.
"""

from __future__ import annotations

from typing import Sequence

ROUGE_BETA = 1.2


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hypotheses: Sequence[str], references: Sequence[str], beta: float = ROUGE_BETA) -> float:
    """Mean sentence-level ROUGE-L F-score, in percent."""
    total = 0.0
    for h, r in zip(hypotheses, references):
        hw, rw = h.split(), r.split()
        lcs = _lcs(hw, rw)
        if lcs == 0:
            continue
        p, rc = lcs / len(hw), lcs / len(rw)
        total += (1 + beta**2) * p * rc / (rc + beta**2 * p)
    return 100.0 * total / max(len(references), 1)


def translation_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """BLEU-1..4, chrF and ROUGE-L (all in percent) of hypotheses against one reference each."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    hyps, refs = list(map(str, hypotheses)), list(map(str, references))
    out = {}
    for n in range(1, 5):
        # force: PHOENIX-style references are tokenised ("regen ."), as SLT papers score them
        out[f"BLEU-{n}"] = float(BLEU(max_ngram_order=n, force=True).corpus_score(hyps, [refs]).score)
    out["chrF"] = float(CHRF().corpus_score(hyps, [refs]).score)
    out["ROUGE-L"] = rouge_l(hyps, refs)
    return out
