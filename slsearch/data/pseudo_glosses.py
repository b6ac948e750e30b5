"""Pseudo-glosses for corpora without glosses: the content words of each sentence, in order, upper-cased.

Most signing that people want to search has sentences but no glosses. Sign2GPT derives pseudo-glosses
from the spoken sentence (its nouns, verbs and adjectives, by a part-of-speech tagger) and trains the
visual encoder to spot them. There is no tagger here for every language, so function words are told by
form and frequency: a word of at most FUNCTION_WORD_CHARS characters that appears in at least
FUNCTION_WORD_SHARE of the manifest's sentences ('in', 'es', 'der', 'the', 'of', 'and', ...) is left out.
Words are runs of letters and digits (`\\w+`), so punctuation goes too. With them as the `gloss` column,
the gloss CTC head, the gloss lexicon and gloss search work on a corpus that never had glosses
(`slsearch manifest train.jsonl --pseudo-glosses`). Languages written without spaces (Chinese, Japanese)
would need a word segmenter first; they are not handled.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from slsearch.errors import InputError

FUNCTION_WORD_CHARS = 3
FUNCTION_WORD_SHARE = 0.05
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def function_words(texts: Iterable[str], max_chars: int = FUNCTION_WORD_CHARS,
                   share: float = FUNCTION_WORD_SHARE) -> set[str]:
    """Short words that appear in at least `share` of the sentences."""
    texts = list(texts)
    df = Counter(w for t in texts for w in set(words(t)))
    need = share * len(texts)
    return {w for w, n in df.items() if len(w) <= max_chars and n >= need and not w.isdigit()}


def pseudo_gloss(text: str, skip: set[str]) -> str:
    """'am montagabend wird es in der eifel nasser .' -> 'MONTAGABEND WIRD EIFEL NASSER'."""
    return " ".join(w.upper() for w in words(text) if w not in skip)


def use_pseudo_glosses(train: list, *others: list) -> set[str]:
    """Give the training clips (and those of `others`, e.g. dev) their sentences' pseudo-glosses as
    glosses, in place, with the function words told on the training sentences; clips without a sentence
    get none. Returns the pseudo-gloss vocabulary of the training clips."""
    skip = function_words(c.text for c in train if c.text)
    for clips in (train, *others):
        for c in clips:
            c.gloss = (pseudo_gloss(c.text, skip) or None) if c.text else None
    return {g for c in train if c.gloss for g in c.gloss.split()}


def pseudo_gloss_manifest(path: str | Path, out: str | Path) -> dict[str, Any]:
    """Every row of the manifest at `path` with its `gloss` replaced by the pseudo-glosses of its text,
    written to `out` (JSONL). Rows without text keep no gloss."""
    from slsearch.data.manifest import read_manifest, write_manifest

    clips = read_manifest(path)
    texts = [c.text for c in clips if c.text]
    if not texts:
        raise InputError(path, "no row has a sentence (a 'text' column) to derive pseudo-glosses from")
    skip = function_words(texts)
    had = sum(1 for c in clips if c.gloss)
    vocabulary = use_pseudo_glosses(clips)
    write_manifest(clips, out)
    return {"out": str(out), "rows": len(clips), "with_pseudo_glosses": sum(1 for c in clips if c.gloss),
            "replaced_glosses": had, "function_words": sorted(skip), "vocabulary": len(vocabulary)}
