"""Gloss lexicon: word <-> gloss translation probabilities, and a score that ranks by them.

A model with a gloss head reads the glosses a clip signs (greedy CTC). The lexicon, learnt by EM over
the training manifest's sentence/gloss pairs (both directions), says how likely a sentence is given
those glosses and the other way round. Two alignment models:

- `ibm1`: IBM Model 1, every word may come from any gloss (a bag of words);
- `diagonal` (the default): IBM Model 1's tables refined with an alignment prior that prefers a word
  and a gloss at the same relative position, exp(-tension * |i/m - j/n|), plus a fixed share for
  words no gloss accounts for (the reparameterised Model 2 of fast_align, Dyer et al. 2013). Signed
  and spoken sentences mostly run in the same order, and the order separates sentences that share
  their words (on SynPhoenix dev, CiCo + lexicon R@1 78.4 -> 82.3 T2V; benchmarks/RESULTS.md).

Ranking candidates by how likely the query is given each candidate (query likelihood, smoothed with
the unit prior) is a second opinion beside the CiCo score: it generalises from few sentences where
a contextual text tower learnt from scratch overfits (benchmarks/RESULTS.md). `slsearch.rank.lexicon_stage`
combines the two with weights picked on dev (kept here in `fusion`, saved with the tables).

For T2V, the lexicon also reads the other way (the noisy channel): how likely the clip's reading is
given the query, over how likely that reading is given any sentence (its mean over the training
sentences, kept in the lexicon as `bank`). Readings that fit many sentences, short and generic ones,
stop winning queries they fit only loosely (SynPhoenix dev T2V R@1 +1.1 to +2.1 for CiCo + lexicon,
+1.0 to +2.7 after the likelihood stage, on three seeds). The denominator is per clip: an index
stores it (`reading_priors`).

Sentence units are words cut to `prefix` characters (a crude, language-blind stem: German
"regnet"/"regen", "schönen"/"schön" meet), or single characters for CJK scripts, whose words are
not separated by spaces.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse

from slsearch.errors import SlsearchError

LEXICON_FILE = "lexicon.npz"
ALIGNMENTS = ("ibm1", "diagonal")
_PUNCT = re.compile(r"[^\w\s-]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def text_units(text: str, prefix: int = 5) -> list[str]:
    """A sentence -> lexicon units: lower-cased words without punctuation, cut to `prefix` characters
    (0 keeps whole words); CJK characters are units of their own."""
    units: list[str] = []
    for word in _PUNCT.sub(" ", str(text).lower()).split():
        if _CJK.search(word):
            units.extend(ch for ch in word if not ch.isspace())
        else:
            units.append(word[:prefix] if prefix > 0 else word)
    return units


def gloss_units(glosses: str | Sequence[str]) -> list[str]:
    return glosses.split() if isinstance(glosses, str) else list(glosses)


def _sparse_counts(rows: Sequence[np.ndarray], width: int) -> scipy.sparse.csr_matrix:
    """(len(rows), width) how often each id occurs in each row, as a sparse matrix (repeats add up)."""
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.concatenate([np.zeros(0, int), *rows]).astype(np.int64)
    return scipy.sparse.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(rows), width))


def _position_prior(m: int, n: int, tension: float) -> np.ndarray:
    """(m, n): for each of m target positions a distribution over n source positions peaked on the
    diagonal (positions taken at their centres, so lengths 1..n compare fairly)."""
    i = (np.arange(m) + 0.5) / m
    j = (np.arange(n) + 0.5) / n
    w = np.exp(-tension * np.abs(i[:, None] - j[None, :]))
    return w / w.sum(1, keepdims=True)


def _diagonal_em(pairs: list[tuple[np.ndarray, np.ndarray]], table: np.ndarray, tension: float,
                 null_probability: float, iterations: int) -> np.ndarray:
    """EM for the diagonal alignment model, starting from `table` (S + 1, T), row 0 NULL: target position
    i comes from source position j with prior (1 - p0) * _position_prior, or from NULL with p0."""
    t = table
    for _ in range(iterations):
        counts = np.zeros_like(t)
        for src, tgt in pairs:
            align = _position_prior(len(tgt), len(src), tension) * (1.0 - null_probability)
            joint = align * t[src + 1][:, tgt].T  # (|tgt|, |src|)
            null = null_probability * t[0, tgt]
            total = joint.sum(1) + null
            np.add.at(counts, (np.broadcast_to(src[None] + 1, joint.shape), np.broadcast_to(tgt[:, None], joint.shape)),
                      joint / total[:, None])
            np.add.at(counts[0], tgt, null / total)
        counts += 1e-6
        t = counts / counts.sum(1, keepdims=True)
    return t


def _by_length(seqs) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Sequences -> [(length, their positions, (count, length) stacked ids)]; already grouped passes through."""
    if isinstance(seqs, _Grouped):
        return seqs.groups
    lengths = np.array([len(s) for s in seqs], int)
    out = []
    for n in np.unique(lengths):
        rows = np.nonzero(lengths == n)[0]
        out.append((int(n), rows, np.stack([seqs[i] for i in rows]) if n else np.zeros((len(rows), 0), int)))
    return out


class _Grouped:
    """Candidates grouped by length once, for a set scored against many queries (the sentence bank)."""

    def __init__(self, seqs: list[np.ndarray]):
        self.groups = _by_length(seqs)
        self.size = len(seqs)

    def __len__(self) -> int:
        return self.size


def _ibm1(pairs: list[tuple[np.ndarray, np.ndarray]], n_src: int, n_tgt: int, iterations: int) -> np.ndarray:
    """EM for IBM Model 1: t[s, g] = p(target g | source s); source id 0 is NULL (in every pair)."""
    t = np.full((n_src, n_tgt), 1.0 / n_tgt)
    for _ in range(iterations):
        counts = np.zeros_like(t)
        for src, tgt in pairs:
            sub = t[np.ix_(src, tgt)]  # (|src|, |tgt|)
            post = sub / sub.sum(0, keepdims=True)  # alignment posterior of each target unit
            np.add.at(counts, (np.repeat(src[:, None], len(tgt), 1), np.repeat(tgt[None], len(src), 0)), post)
        counts += 1e-6  # units never seen as targets keep a tiny, uniform mass
        t = counts / counts.sum(1, keepdims=True)
    return t


@dataclass
class Lexicon:
    units: list[str]  # sentence units (see text_units)
    glosses: list[str]
    unit_given_gloss: np.ndarray  # (G + 1, U): row 0 is NULL (units no gloss accounts for)
    gloss_given_unit: np.ndarray  # (U + 1, G): row 0 is NULL
    unit_prior: np.ndarray  # (U,) unigram frequencies, add-one smoothed
    gloss_prior: np.ndarray  # (G,)
    prefix: int = 5
    smoothing: float = 0.1  # weight of the prior in p(unit | candidate)
    fusion: dict[str, dict[str, float]] = field(default_factory=dict)  # per direction: slsearch.rank.lexicon_stage
    alignment: str = "ibm1"  # how the tables were learnt and are scored: 'ibm1' or 'diagonal'
    tension: float = 4.0  # diagonal: how sharply the alignment prior prefers equal relative positions
    null_probability: float = 0.08  # diagonal: prior share of units that no source unit accounts for
    # the training sentences as unit ids: p(reading) for the reverse channel (None: no reverse channel)
    bank: list[np.ndarray] | None = None
    fitted_on: str | None = None  # hash of the checkpoint whose dev scores picked `fusion`

    def __post_init__(self) -> None:
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {', '.join(ALIGNMENTS)}, not {self.alignment!r}")
        self._unit_id = {u: i for i, u in enumerate(self.units)}
        self._gloss_id = {g: i for i, g in enumerate(self.glosses)}
        self._bank_groups = None  # the bank grouped by length, built on first use

    @property
    def has_reverse_channel(self) -> bool:
        """T2V can also read p(reading | sentence) / p(reading): needs the bank and the diagonal model."""
        return self.bank is not None and self.alignment == "diagonal"

    @cached_property
    def fingerprint(self) -> str:
        """Names the tables and the bank: reading priors stored by an index are valid for this value only."""
        h = hashlib.sha256()
        for a in (self.unit_given_gloss, self.gloss_given_unit):
            h.update(np.ascontiguousarray(a, np.float32).tobytes())
        h.update(json.dumps([self.alignment, self.tension, self.null_probability, self.smoothing, self.prefix,
                             None if self.bank is None else [len(b) for b in self.bank]]).encode())
        if self.bank:
            h.update(np.concatenate(self.bank).astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    # --- training ---------------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Sequence[str], glosses: Sequence[str | Sequence[str]], prefix: int = 5,
              iterations: int = 5, smoothing: float = 0.1, alignment: str = "diagonal",
              tension: float = 4.0, null_probability: float = 0.08) -> "Lexicon":
        """IBM Model 1 both ways on sentence/gloss pairs (pairs with an empty side are skipped), then, for
        the diagonal alignment, as many EM iterations of the diagonal model from Model 1's tables.
        Few iterations on purpose: more make the tables peakier and retrieval worse on dev."""
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {', '.join(ALIGNMENTS)}, not {alignment!r}")
        if len(texts) != len(glosses):
            raise ValueError(f"{len(texts)} sentences for {len(glosses)} gloss sequences")
        pairs = [(text_units(t, prefix), gloss_units(g)) for t, g in zip(texts, glosses)]
        pairs = [(u, g) for u, g in pairs if u and g]
        if not pairs:
            raise SlsearchError("no sentence with glosses to learn a gloss lexicon from")
        units = sorted({u for us, _ in pairs for u in us})
        gl = sorted({g for _, gs in pairs for g in gs})
        uid, gid = {u: i for i, u in enumerate(units)}, {g: i for i, g in enumerate(gl)}
        ids = [(np.array([uid[u] for u in us]), np.array([gid[g] for g in gs])) for us, gs in pairs]
        # Source ids are shifted by one so that 0 is NULL in both directions.
        gloss_given_unit = _ibm1([(np.r_[0, u + 1], g) for u, g in ids], len(units) + 1, len(gl), iterations)
        unit_given_gloss = _ibm1([(np.r_[0, g + 1], u) for u, g in ids], len(gl) + 1, len(units), iterations)
        if alignment == "diagonal":
            gloss_given_unit = _diagonal_em([(u, g) for u, g in ids], gloss_given_unit, tension, null_probability,
                                            iterations)
            unit_given_gloss = _diagonal_em([(g, u) for u, g in ids], unit_given_gloss, tension, null_probability,
                                            iterations)
        unit_prior = np.bincount(np.concatenate([u for u, _ in ids]), minlength=len(units)) + 1.0
        gloss_prior = np.bincount(np.concatenate([g for _, g in ids]), minlength=len(gl)) + 1.0
        return cls(units, gl, unit_given_gloss, gloss_given_unit, unit_prior / unit_prior.sum(),
                   gloss_prior / gloss_prior.sum(), prefix, smoothing, alignment=alignment, tension=tension,
                   null_probability=null_probability, bank=[u for u, _ in ids])

    # --- scores -----------------------------------------------------------------------------------
    def _channel(self, sources: list[np.ndarray], targets: list[np.ndarray], table: np.ndarray,
                 prior: np.ndarray) -> np.ndarray:
        """(len(targets), len(sources)) mean log p(target unit | source sequence) under IBM Model 1's uniform
        alignment: p(t | source) is the mean of the NULL row and the rows of each source unit occurrence of
        `table` (S + 1, T), smoothed with `prior`. Only the target units that occur are computed, from
        sparse counts: a T2V query's ~10 words against 100 readings reads ~10 of the table's thousands of
        columns (a dense (100, S) x (S, T) product took half of a query's time)."""
        out = np.zeros((len(targets), len(sources)), np.float32)
        columns = np.unique(np.concatenate([np.zeros(0, int), *targets]))
        if len(columns) == 0 or len(sources) == 0:
            return out  # a target with no known unit scores 0 everywhere
        sub = table[:, columns]  # (S + 1, k)
        mixture = sub[0][None] + _sparse_counts(sources, table.shape[0] - 1) @ sub[1:]
        mixture /= (1.0 + np.array([len(s) for s in sources], np.float32))[:, None]
        logp = np.log((1.0 - self.smoothing) * mixture + self.smoothing * prior[columns][None]).astype(np.float32)
        counts = _sparse_counts([np.searchsorted(columns, t) for t in targets], len(columns))
        lengths = np.maximum(np.array([len(t) for t in targets], np.float32), 1.0)
        return np.asarray(counts @ logp.T, np.float32) / lengths[:, None]

    def _unit_ids(self, text: str) -> np.ndarray:
        """A sentence's known units in order (unknown ones are left out, as in the counts)."""
        return np.array([j for j in map(self._unit_id.get, text_units(text, self.prefix)) if j is not None], int)

    def _gloss_ids(self, reading: str | Sequence[str]) -> np.ndarray:
        return np.array([j for j in map(self._gloss_id.get, gloss_units(reading)) if j is not None], int)

    def _aligned_likelihood(self, queries: list[np.ndarray], candidates, table: np.ndarray,
                            prior: np.ndarray) -> np.ndarray:
        """(Q, C) mean log p(query unit | candidate) under the diagonal alignment model; table (S + 1, T)
        with NULL row 0 says p(query unit | candidate unit). Candidates of one length share one prior
        matrix, so each query costs one small einsum per distinct candidate length."""
        if not isinstance(candidates, _Grouped) and len(candidates) < len(queries):
            return self._aligned_by_candidate(queries, candidates, table, prior)
        groups = _by_length(candidates)
        out = np.zeros((len(queries), len(candidates)), np.float32)
        for qi, query in enumerate(queries):
            if len(query) == 0:
                continue  # a query with no known unit scores 0 everywhere
            columns = table[:, query]  # (S + 1, m): only the query's units, before gathering rows
            null = self.null_probability * columns[0]
            for n, rows, stacked in groups:
                if n == 0:  # an empty reading: only NULL can account for the query
                    p = np.broadcast_to(columns[0], (len(rows), len(query)))
                else:
                    align = _position_prior(len(query), n, self.tension) * (1.0 - self.null_probability)
                    p = np.einsum("mn,cnm->cm", align, columns[stacked + 1]) + null[None]
                smoothed = (1.0 - self.smoothing) * p + self.smoothing * prior[query][None]
                out[qi, rows] = np.log(smoothed).mean(1)
        return out

    def _aligned_by_candidate(self, queries: list[np.ndarray], candidates: list[np.ndarray], table: np.ndarray,
                              prior: np.ndarray) -> np.ndarray:
        """_aligned_likelihood looping over the candidates instead, with the queries grouped by length:
        the same numbers, faster when there are few candidates (T2V's reverse channel: 100 readings
        against one query)."""
        out = np.zeros((len(queries), len(candidates)), np.float32)
        groups = [(m, rows, stacked) for m, rows, stacked in _by_length(queries) if m]  # empty queries score 0
        for ci, cand in enumerate(candidates):
            rows_of_cand = table[cand + 1] if len(cand) else None  # (n, T)
            for m, rows, stacked in groups:
                null = table[0][stacked]  # (Qm, m)
                if rows_of_cand is None:
                    p = null
                else:
                    align = _position_prior(m, len(cand), self.tension) * (1.0 - self.null_probability)
                    p = np.einsum("mn,nqm->qm", align, rows_of_cand[:, stacked]) + self.null_probability * null
                smoothed = (1.0 - self.smoothing) * p + self.smoothing * prior[stacked]
                out[rows, ci] = np.log(smoothed).mean(1)
        return out

    def reading_priors(self, readings: Sequence[str | Sequence[str]]) -> np.ndarray | None:
        """(len(readings),) log of the mean, over the bank's sentences, of each reading's score given the
        sentence (scores are mean log-probabilities per gloss, as in readings_given_texts). None for a
        lexicon without a reverse channel. A few ms a reading on a 7k-sentence bank: indexes store them."""
        if not self.has_reverse_channel:
            return None
        if self._bank_groups is None:
            self._bank_groups = _Grouped(self.bank)
        scores = self._aligned_likelihood([self._gloss_ids(r) for r in readings], self._bank_groups,
                                          self.gloss_given_unit, self.gloss_prior).astype(np.float64)
        top = scores.max(1, keepdims=True)
        return (top[:, 0] + np.log(np.exp(scores - top).mean(1))).astype(np.float32)

    def clip_scores(self, texts: Sequence[str], readings: Sequence[str | Sequence[str]],
                    priors: np.ndarray | None = None, reverse_weight: float | None = None) -> np.ndarray:
        """(len(texts), len(readings)): the T2V lexical score of each clip (by its gloss reading) for each
        sentence: log p(sentence | reading) plus, with the reverse channel, reverse_weight times
        (log p(reading | sentence) - log p(reading)). `priors` are reading_priors(readings), computed here
        when not given; reverse_weight defaults to the calibrated one."""
        channel = self.text_given_readings(texts, readings)
        if reverse_weight is None:
            reverse_weight = self.fusion.get("t2v", {}).get("reverse_weight", 0.0)
        if not reverse_weight or not self.has_reverse_channel:
            return channel
        if priors is None:
            priors = self.reading_priors(readings)
        reverse = self.readings_given_texts(readings, texts).T - np.asarray(priors, np.float32)[None, :]
        return (channel + reverse_weight * reverse).astype(np.float32)

    def text_given_readings(self, texts: Sequence[str], readings: Sequence[str | Sequence[str]]) -> np.ndarray:
        """(len(texts), len(readings)): how likely each sentence is given each clip's gloss reading (the
        direct channel of the T2V score, see clip_scores)."""
        if self.alignment == "diagonal":
            return self._aligned_likelihood([self._unit_ids(t) for t in texts], [self._gloss_ids(r) for r in readings],
                                            self.unit_given_gloss, self.unit_prior)
        return self._channel([self._gloss_ids(r) for r in readings], [self._unit_ids(t) for t in texts],
                             self.unit_given_gloss, self.unit_prior)

    def readings_given_texts(self, readings: Sequence[str | Sequence[str]], texts: Sequence[str]) -> np.ndarray:
        """(len(readings), len(texts)): how likely each clip's gloss reading is given each sentence.
        The score for searching sentences with a clip (V2T)."""
        if self.alignment == "diagonal":
            return self._aligned_likelihood([self._gloss_ids(r) for r in readings], [self._unit_ids(t) for t in texts],
                                            self.gloss_given_unit, self.gloss_prior)
        return self._channel([self._unit_ids(t) for t in texts], [self._gloss_ids(r) for r in readings],
                             self.gloss_given_unit, self.gloss_prior)

    def lexical_matrix(self, readings: Sequence[str | Sequence[str]], texts: Sequence[str],
                       direction: str, priors: np.ndarray | None = None) -> np.ndarray:
        """(clips, texts) lexical scores for one direction ('t2v' or 'v2t'), clips on the rows as in
        the CiCo matrix. `priors`: the readings' reading_priors, when already known."""
        if direction == "t2v":
            return self.clip_scores(texts, readings, priors).T
        if direction == "v2t":
            return self.readings_given_texts(readings, texts)
        raise ValueError(f"direction must be 't2v' or 'v2t', not {direction!r}")

    # --- files ------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / LEXICON_FILE
        meta = {"units": self.units, "glosses": self.glosses, "prefix": self.prefix,
                "smoothing": self.smoothing, "fusion": self.fusion, "alignment": self.alignment,
                "tension": self.tension, "null_probability": self.null_probability, "fitted_on": self.fitted_on}
        tmp = path.with_name(path.name + ".tmp.npz")
        bank = {}
        if self.bank is not None:  # ragged: the ids one after another, and where each sentence starts
            bank = {"bank_ids": np.concatenate([np.zeros(0, np.int32), *self.bank]).astype(np.int32),
                    "bank_offsets": np.cumsum([0] + [len(b) for b in self.bank]).astype(np.int64)}
        np.savez_compressed(tmp, unit_given_gloss=self.unit_given_gloss.astype(np.float32),
                            gloss_given_unit=self.gloss_given_unit.astype(np.float32),
                            unit_prior=self.unit_prior, gloss_prior=self.gloss_prior,
                            meta=np.array(json.dumps(meta, ensure_ascii=False)), **bank)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "Lexicon | None":
        """The lexicon saved in a checkpoint folder, or None when it has none."""
        path = Path(folder) / LEXICON_FILE
        if not path.exists():
            return None
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                bank = None
                if "bank_ids" in z.files:
                    ids, offsets = z["bank_ids"].astype(int), z["bank_offsets"]
                    bank = [ids[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
                # lexicons saved before the diagonal model have no 'alignment': they are IBM Model 1's
                return cls(meta["units"], meta["glosses"], z["unit_given_gloss"], z["gloss_given_unit"],
                           z["unit_prior"], z["gloss_prior"], int(meta["prefix"]), float(meta["smoothing"]),
                           meta.get("fusion") or {}, meta.get("alignment", "ibm1"), float(meta.get("tension", 4.0)),
                           float(meta.get("null_probability", 0.08)), bank, meta.get("fitted_on"))
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise SlsearchError(f"{path}: unreadable gloss lexicon ({e})") from e

    def describe(self) -> dict:
        out = {"units": len(self.units), "glosses": len(self.glosses), "alignment": self.alignment,
               "prefix": self.prefix, "smoothing": self.smoothing, "fusion": self.fusion}
        if self.alignment == "diagonal":
            out.update(tension=self.tension, null_probability=self.null_probability)
        out["bank"] = 0 if self.bank is None else len(self.bank)
        return out

