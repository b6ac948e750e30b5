"""Pseudo-glosses for corpora without glosses: the content words of each sentence, in order, as lemmas.

Most signing that people want to search has sentences but no glosses. Sign2GPT derives pseudo-glosses
from the spoken sentence (its nouns, verbs and adjectives, by a part-of-speech tagger) and trains the
visual encoder to spot them. Glosses name a sign by its base form (REGEN for 'regnet', LIEB for
'liebe'), and function words ('es', 'der', 'wird') are mostly not signed, so each sentence becomes the
lemmas of its content words. How, depends on the language (`loss.pseudo_gloss_language`, detected from
the training sentences when empty):

- `lemmas` where a tagger is installed for it (German, English: the Hanover Tagger, HanTa): content
  parts of speech (nouns, names, full verbs, adjectives, adverbs, numbers, negation) as lemmas. On the
  real PHOENIX-2014T dev sentences against their real glosses (benchmarks/pseudo_gloss_quality.py), 36.7 %
  of the pseudo-glosses are glosses of the clip and 41.4 % of the glosses are found, against 26.5 / 34.6 %
  for the surface words with the frequent short ones left out (`frequency`);
- `lemmas` in another language that simplemma knows: lemmas, with the frequent short ones left out
  (29.7 / 38.7 % on the same data);
- `frequency` (any language, and the method of models trained before lemmas existed): the words
  themselves, without those of at most FUNCTION_WORD_CHARS characters found in FUNCTION_WORD_SHARE of the
  sentences ('in', 'es', 'der', 'the', 'of', ...).

Words are runs of letters and digits (`\\w+`), so punctuation goes too. With them as the `gloss` column,
the gloss head, the gloss lexicon and gloss search work on a corpus that never had glosses
(`slsearch manifest train.jsonl --pseudo-glosses`). Languages written without spaces (Chinese, Japanese)
would need a word segmenter first; they are not handled.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from slsearch.errors import InputError, SlsearchError

FUNCTION_WORD_CHARS = 3
FUNCTION_WORD_SHARE = 0.05
METHODS = ("lemmas", "frequency")
# HanTa's model and the tags kept (a prefix match): STTS for German, CLAWS5 for English. Adverbs and
# negation are kept: PHOENIX glosses them (JETZT, NICHT); auxiliaries, modals, articles, pronouns and
# prepositions are not (kept, they lower precision more than they raise recall on PHOENIX dev).
TAGGERS = {"de": ("morphmodel_ger.pgz", ("NN", "NE", "ADJ", "VV", "ADV", "CARD", "PTKNEG")),
           "en": ("morphmodel_en.pgz", ("NN", "NP0", "AJ", "VV", "AV0", "CRD", "ORD", "XX0"))}
# Languages told apart when none is given: those of sign-language corpora with spaces between words.
DETECTABLE = ("de", "en", "fr", "es", "it", "nl", "pt", "pl")
DETECT_SENTENCES = 50
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
    """The `frequency` method: 'am montagabend wird es in der eifel nasser .' -> 'MONTAGABEND WIRD EIFEL NASSER'."""
    return " ".join(w.upper() for w in words(text) if w not in skip)


def detect_language(texts: list[str]) -> str | None:
    """The language of the sentences among DETECTABLE (simplemma's word-list test), or None."""
    import simplemma

    sample = " ".join(texts[:DETECT_SENTENCES])
    best, score = simplemma.langdetect(sample, lang=DETECTABLE)[0]
    return best if best != "unk" and score >= 0.5 else None


@lru_cache(maxsize=4)
def _tagger(model: str):
    from HanTa import HanoverTagger

    return HanoverTagger.HanoverTagger(model)


@dataclass
class PseudoGlosser:
    """Turns sentences into pseudo-glosses, one way for a whole corpus (fitted on its training sentences)."""

    method: str
    language: str | None
    skip: frozenset[str] = frozenset()  # function words, for the methods that leave them out by frequency

    def __call__(self, text: str) -> str:
        if self.method == "frequency":
            return pseudo_gloss(text, self.skip)
        return " ".join(_lemmas(text, self.language, self.skip))

    def describe(self) -> str:
        if self.method == "frequency":
            return "the words without the frequent short ones"
        if self.language in TAGGERS:
            return f"the lemmas of the content words ({self.language}, HanTa)"
        return f"the lemmas without the frequent short ones ({self.language}, simplemma)"


@lru_cache(maxsize=200_000)
def _lemmas(text: str, language: str, skip: frozenset[str]) -> tuple[str, ...]:
    tokens = _WORD.findall(text)
    if not tokens:
        return ()
    if language in TAGGERS:
        model, keep = TAGGERS[language]
        tagged = _tagger(model).tag_sent(tokens, taglevel=1)
        return tuple(lemma.strip().upper().replace(" ", "-") for _, lemma, tag in tagged
                     if tag.startswith(keep) and lemma.strip())
    import simplemma

    lemmas = (simplemma.lemmatize(t, lang=language).lower() for t in tokens)
    return tuple(w.upper() for w in lemmas if w not in skip)


def fit_pseudo_glosser(texts: list[str], method: str = "lemmas", language: str = "") -> PseudoGlosser:
    """Pick how the corpus whose training sentences are `texts` gets its pseudo-glosses: `lemmas` in
    `language` (detected when empty; `frequency` where no language is found), or `frequency`."""
    if method not in METHODS:
        raise SlsearchError(f"loss.pseudo_gloss_method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "frequency":
        return PseudoGlosser("frequency", None, frozenset(function_words(texts)))
    language = language or detect_language(texts)
    if language is None:
        return PseudoGlosser("frequency", None, frozenset(function_words(texts)))
    if language in TAGGERS:
        return PseudoGlosser("lemmas", language)
    import simplemma

    try:
        simplemma.lemmatize("a", lang=language)
    except Exception as e:  # simplemma raises a bare ValueError / KeyError for a language it has no data for
        raise SlsearchError(f"loss.pseudo_gloss_language {language!r}: no lemmatiser for it ({e}); "
                            "leave it empty to detect the language, or use pseudo_gloss_method = 'frequency'")
    glosser = PseudoGlosser("lemmas", language)
    glosser.skip = frozenset(function_words(" ".join(w.lower() for w in glosser(t).split()) for t in texts))
    return glosser


def use_pseudo_glosses(train: list, *others: list, method: str = "lemmas", language: str = "") -> PseudoGlosser:
    """Give the training clips (and those of `others`, e.g. dev) their sentences' pseudo-glosses as
    glosses, in place, with the method fitted on the training sentences; clips without a sentence get
    none. Returns the glosser (its vocabulary: `vocabulary(train)`)."""
    glosser = fit_pseudo_glosser([c.text for c in train if c.text], method, language)
    for clips in (train, *others):
        for c in clips:
            c.gloss = (glosser(c.text) or None) if c.text else None
    return glosser


def vocabulary(clips: list) -> set[str]:
    return {g for c in clips if c.gloss for g in c.gloss.split()}


def pseudo_gloss_manifest(path: str | Path, out: str | Path, method: str = "lemmas",
                          language: str = "") -> dict[str, Any]:
    """Every row of the manifest at `path` with its `gloss` replaced by the pseudo-glosses of its text,
    written to `out` (JSONL). Rows without text keep no gloss."""
    from slsearch.data.manifest import read_manifest, write_manifest

    clips = read_manifest(path)
    if not any(c.text for c in clips):
        raise InputError(path, "no row has a sentence (a 'text' column) to derive pseudo-glosses from")
    had = sum(1 for c in clips if c.gloss)
    glosser = use_pseudo_glosses(clips, method=method, language=language)
    write_manifest(clips, out)
    return {"out": str(out), "rows": len(clips), "with_pseudo_glosses": sum(1 for c in clips if c.gloss),
            "replaced_glosses": had, "method": glosser.method, "language": glosser.language,
            "described": glosser.describe(), "function_words": sorted(glosser.skip),
            "vocabulary": len(vocabulary(clips))}
