"""`slsearch eval --bleu`: translate a manifest's clips and score them against their sentences."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from slsearch.errors import SlsearchError
from slsearch.eval.translation_metrics import translation_metrics


def evaluate_translation(model_dir: str | Path, manifest: str | Path, beam: int | None = None,
                         split: str | None = None, limit: int | None = None, examples: int = 5,
                         batch_size: int = 16, length_penalty: float | None = None,
                         no_repeat_ngram: int | None = None) -> dict[str, Any]:
    """BLEU-1..4, chrF and ROUGE-L of the checkpoint's translations, with a few example lines.

    Decoding settings left as None are the checkpoint's own (its recipe's [decode])."""
    from slsearch.data.manifest import read_manifest
    from slsearch.models.translator import translate
    from slsearch.rank import load_retrieval_model
    from slsearch.translation import decode_settings

    t0 = time.perf_counter()
    clips = [c for c in read_manifest(manifest) if c.text and (split is None or c.split == split)]
    if limit is not None:
        clips = clips[:limit]
    if not clips:
        raise SlsearchError(f"{manifest}: no clips with text{f' in split {split!r}' if split else ''}")
    model = load_retrieval_model(model_dir)
    settings = decode_settings(model.decode, beam, length_penalty, no_repeat_ngram)
    hyps = [t.text for t in translate(model.net, clips, settings, batch_size=batch_size)]
    refs = [c.text for c in clips]
    return {
        "metrics": translation_metrics(hyps, refs),
        "examples": [{"id": c.id, "reference": r, "hypothesis": h}
                     for c, r, h in list(zip(clips, refs, hyps))[:examples]],
        "source": str(manifest), "checkpoint": model.hash, "split": split, "beam": settings.beam,
        "length_penalty": settings.length_penalty, "no_repeat_ngram": settings.no_repeat_ngram,
        "count": len(clips), "seconds": round(time.perf_counter() - t0, 2),
    }
