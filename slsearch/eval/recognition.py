"""`slsearch eval --wer`: read a manifest's clips with the gloss head and score the readings against its
`gloss` column: word error rate with substitutions, deletions and insertions (jiwer)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from slsearch.errors import SlsearchError


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, Any]:
    """Corpus WER (percent) of gloss hypotheses against references, with the edit counts (jiwer's
    Levenshtein alignment over whitespace-separated glosses). An empty hypothesis is all deletions."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses")
    refs = [" ".join(r.split()) for r in references]
    if not refs or not all(refs):
        raise SlsearchError("every reference needs at least one gloss")
    out = jiwer.process_words(refs, [" ".join(h.split()) for h in hypotheses])
    n = sum(len(r.split()) for r in refs)
    return {"wer": round(100.0 * out.wer, 2), "substitutions": out.substitutions, "deletions": out.deletions,
            "insertions": out.insertions, "hits": out.hits, "reference_glosses": n,
            "del_rate": round(100.0 * out.deletions / n, 2), "ins_rate": round(100.0 * out.insertions / n, 2)}


def evaluate_wer(model_dir: str | Path, manifest: str | Path, beam: int = 5, split: str | None = None,
                 limit: int | None = None, examples: int = 5, batch_size: int = 16, lm: str | Path | None = None,
                 lm_weight: float = 0.0, lm_bonus: float = 0.0) -> dict[str, Any]:
    """WER of the gloss readings (CTC prefix beam search, `beam` 1 = greedy; with `lm_weight` > 0 fused with
    a gloss bigram LM: `lm`, or a recogniser run's own) of a retrieval checkpoint with a gloss head or a
    CVT-SLR recogniser run, on the manifest's clips with glosses."""
    from slsearch.data.manifest import read_manifest
    from slsearch.recognition import load_gloss_lm, load_gloss_reader, recognize_clips

    if beam < 1:
        raise SlsearchError(f"--beam must be at least 1, got {beam}")
    t0 = time.perf_counter()
    clips = [c for c in read_manifest(manifest) if split is None or c.split == split]
    clips = [c for c in clips if c.gloss and c.gloss.strip()]
    if limit is not None:
        clips = clips[:limit]
    if not clips:
        raise SlsearchError(f"{manifest}: no clips with glosses{f' in split {split!r}' if split else ''} "
                            "(--wer needs a gloss column)")
    net = load_gloss_reader(model_dir)
    gloss_lm = load_gloss_lm(model_dir, net, lm, lm_weight)
    results, failures = recognize_clips(net, clips, beam, batch_size, gloss_lm, lm_weight, lm_bonus)
    refs = [r.reference or "" for r in results]
    hyps = [r.glosses for r in results]
    return {
        "metrics": word_errors(refs, hyps) if results else None,
        "examples": [{"id": r.id, "reference": r.reference, "hypothesis": r.glosses} for r in results[:examples]],
        "failures": failures, "source": str(manifest), "checkpoint": net.checkpoint_hash, "split": split, "beam": beam,
        "model_kind": "recognizer" if getattr(net, "is_recognizer", False) else "retrieval",
        "lm_weight": lm_weight if gloss_lm is not None else 0.0,
        "lm_bonus": lm_bonus if gloss_lm is not None else 0.0,
        "count": len(results), "seconds": round(time.perf_counter() - t0, 2),
    }
