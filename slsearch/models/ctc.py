"""CTC decoding for the gloss head: prefix beam search, and the alignment that gives each gloss its frames.

`prefix_beam_search` is the standard CTC prefix beam search (Hannun et al. 2014, without a language
model): a prefix's probability sums over all its alignments (ending in blank / in its last label), so it
can find a label sequence more probable than the one greedy (best path) reading spells. `align` is the
Viterbi (best single path) CTC alignment of a given label sequence, from which each label gets the
frames it was emitted on. Everything here is on log-probabilities (T, C+1), blank = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEG = -np.inf


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def greedy(logp: np.ndarray) -> list[int]:
    """Best path: argmax per frame, repeats merged, blanks dropped."""
    best = np.asarray(logp).argmax(-1).tolist()
    return [t for k, t in enumerate(best) if t and (k == 0 or t != best[k - 1])]


def prefix_beam_search(logp: np.ndarray, beam: int = 5, prune: int | None = None, lm: "BigramLM | None" = None,
                       lm_weight: float = 0.0, lm_bonus: float = 0.0) -> tuple[list[int], float]:
    """(labels, score) of the best prefix; `logp` (T, C+1) log-probabilities with blank 0. The score is
    log P(labels | x), plus lm_weight * log P_LM(labels, end) + lm_bonus * len(labels) with a gloss language
    model (shallow fusion: each new label is scored by the LM when it extends a prefix, the end of the
    sentence at the end; the bonus per label offsets the LM's cost of every gloss, which else favours deletions).
    Per frame only the `prune` most probable labels (default max(2 * beam, 8)) extend a prefix."""
    if beam < 1:
        raise ValueError(f"beam must be at least 1, got {beam}")
    fuse = lm is not None and lm_weight != 0.0
    logp = np.asarray(logp, np.float64)
    prune = min(logp.shape[1] - 1, prune or max(2 * beam, 8))
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG)}  # prefix -> (ends in blank, not)
    for row in logp:
        cands = [c for c in np.argsort(-row[1:])[:prune] + 1]
        new: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, which, value):
            cur = new.setdefault(prefix, [NEG, NEG])
            cur[which] = np.logaddexp(cur[which], value)

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, 0, total + row[0])
            last = prefix[-1] if prefix else None
            if last is not None:
                add(prefix, 1, pnb + row[last])  # the last label repeated, no blank between: same prefix
            for c in cands:
                bonus = lm_weight * lm.log_prob(last or 0, int(c)) + lm_bonus if fuse else 0.0
                add(prefix + (int(c),), 1, (pb if c == last else total) + row[c] + bonus)
        ranked = sorted(new.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam]
        beams = {k: (v[0], v[1]) for k, v in ranked}

    def final(kv):
        prefix, (pb, pnb) = kv
        end = lm_weight * lm.log_prob(prefix[-1] if prefix else 0, 0) if fuse else 0.0
        return float(np.logaddexp(pb, pnb)) + end

    best = max(beams.items(), key=final)
    return list(best[0]), final(best)


@dataclass
class BigramLM:
    """A gloss bigram language model with add-k smoothing, from training gloss sequences.

    Ids as in CTC: glosses 1..C; 0 is the sentence start as a context and the sentence end as a next
    symbol. P(next | prev) = (count(prev, next) + k) / (count(prev) + k * (C + 1)), next over the C
    glosses and the end."""

    classes: int  # C
    k: float
    counts: dict[tuple[int, int], int]

    def __post_init__(self):
        C = self.classes
        table = np.full((C + 1, C + 1), float(self.k))
        for (a, b), n in self.counts.items():
            table[a, b] += n
        self._logp = np.log(table / table.sum(1, keepdims=True))

    @classmethod
    def from_sequences(cls, sequences, classes: int, k: float = 0.1) -> "BigramLM":
        counts: dict[tuple[int, int], int] = {}
        for seq in sequences:
            seq = [int(g) for g in seq]
            if not seq:
                continue
            for a, b in zip([0] + seq, seq + [0]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        return cls(classes, k, counts)

    def log_prob(self, prev: int, nxt: int) -> float:
        return float(self._logp[prev, nxt])

    def sequence_log_prob(self, seq: list[int]) -> float:
        return sum(self.log_prob(a, b) for a, b in zip([0] + list(seq), list(seq) + [0]))

    def to_dict(self) -> dict:
        return {"kind": "gloss-bigram", "classes": self.classes, "k": self.k,
                "counts": [[a, b, n] for (a, b), n in sorted(self.counts.items())]}

    @classmethod
    def from_dict(cls, d: dict) -> "BigramLM":
        return cls(int(d["classes"]), float(d["k"]), {(int(a), int(b)): int(n) for a, b, n in d["counts"]})


def align(logp: np.ndarray, labels: list[int]) -> list[list[int]]:
    """Viterbi CTC alignment of `labels` to the frames of `logp`: the frames each label was emitted on
    (one list per label, in order, each non-empty). Needs len(logp) >= len(labels) + repeats."""
    logp = np.asarray(logp, np.float64)
    T = len(logp)
    ext = [0]
    for lab in labels:
        ext += [lab, 0]
    S = len(ext)
    score = np.full((T, S), NEG)
    back = np.zeros((T, S), np.int64)
    score[0, 0] = logp[0, 0]
    if S > 1:
        score[0, 1] = logp[0, ext[1]]
    for t in range(1, T):
        for s in range(S):
            options = [(score[t - 1, s], s)]
            if s >= 1:
                options.append((score[t - 1, s - 1], s - 1))
            if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2]:
                options.append((score[t - 1, s - 2], s - 2))
            v, k = max(options)
            score[t, s] = v + logp[t, ext[s]]
            back[t, s] = k
    s = S - 1 if S == 1 or score[T - 1, S - 1] >= score[T - 1, S - 2] else S - 2
    if score[T - 1, s] == NEG:
        raise ValueError(f"{len(labels)} labels do not fit in {T} frames")
    frames: list[list[int]] = [[] for _ in labels]
    for t in range(T - 1, -1, -1):
        if s % 2 == 1:
            frames[s // 2].insert(0, t)
        s = back[t, s] if t else s
    return frames


@dataclass
class GlossReading:
    glosses: list[str]
    spans: list[tuple[float, float]]  # (start, end) seconds per gloss
    confidences: list[float]  # per gloss: mean probability of the gloss on the frames it was emitted on
    log_prob: float  # log P(reading | clip), summed over all alignments (CTC forward algorithm)

    def to_dict(self) -> dict:
        return {"glosses": " ".join(self.glosses), "log_prob": round(self.log_prob, 4),
                "items": [{"gloss": g, "start": round(a, 3), "end": round(b, 3), "confidence": round(c, 4)}
                          for g, (a, b), c in zip(self.glosses, self.spans, self.confidences)]}


def read_glosses(logits: np.ndarray, vocabulary: list[str], beam: int = 5, stride: int = 4, fps: float = 25.0,
                 frames: int | None = None, lm: BigramLM | None = None, lm_weight: float = 0.0,
                 lm_bonus: float = 0.0) -> GlossReading:
    """Gloss logits (T, C+1) of one clip (valid tokens only) -> the reading with spans and confidences. A
    video token t covers frames [t*stride, (t+1)*stride) of the clip; `frames` (the clip's length) clips
    the last span. With `lm` and `lm_weight` the beam search fuses the gloss LM (beam 1 stays greedy)."""
    logp = log_softmax(logits)
    labels = greedy(logp) if beam == 1 else prefix_beam_search(logp, beam, lm=lm, lm_weight=lm_weight,
                                                                         lm_bonus=lm_bonus)[0]
    lp = sequence_log_prob(logp, labels)  # exact: the beam's own score misses alignments it pruned
    where = align(logp, labels) if labels else []
    end_s = (frames if frames is not None else len(logp) * stride) / fps
    spans, conf = [], []
    for lab, fr in zip(labels, where):
        spans.append((min(fr[0] * stride / fps, end_s), min((fr[-1] + 1) * stride / fps, end_s)))
        conf.append(float(np.exp(logp[fr, lab]).mean()))
    return GlossReading([vocabulary[c - 1] for c in labels], spans, conf, lp)


def sequence_log_prob(logp: np.ndarray, labels: list[int]) -> float:
    """log P(labels | x) by the CTC forward algorithm."""
    ext = [0]
    for lab in labels:
        ext += [lab, 0]
    S = len(ext)
    a = np.full(S, NEG)
    a[0] = logp[0, 0]
    if S > 1:
        a[1] = logp[0, ext[1]]
    for t in range(1, len(logp)):
        b = a.copy()
        b[1:] = np.logaddexp(b[1:], a[:-1])
        for s in range(2, S):
            if ext[s] != 0 and ext[s] != ext[s - 2]:
                b[s] = np.logaddexp(b[s], a[s - 2])
        a = b + logp[t, ext]
    return float(a[-1] if S == 1 else np.logaddexp(a[-1], a[-2]))
