"""The ranking cascade, owned in one place:

    query -encode-> FAISS top-N (global vectors) -> CiCo -> gloss lexicon [-> V2T hubness] -> decoder likelihood
          [-> V2T reader: the translate-stage model] -> top-k

Every stage scores a block of clips x sentences: a search is the block of one query against its
candidates, an evaluation the whole dense matrix. So one query and a full evaluation rank alike by
construction, and the same code fits the stages' weights on dev. Search (`slsearch.index.search`),
evaluation (`slsearch.eval.retrieval`), calibration after training and the benchmarks all call this
module; nothing else combines scores.

Directions: T2V queries are sentences (columns of a clips x texts block), V2T queries clips (rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from slsearch.errors import SlsearchError
from slsearch.models.lexicon import Lexicon
from slsearch.models.similarity import CICO_TEMPERATURE
from slsearch.progress import Progress, track
from slsearch.rank.cico import cico_matrix, cico_one_to_many, stacked
from slsearch.rank.hubness_stage import HubnessStage
from slsearch.rank.lexicon_stage import LexiconStage
from slsearch.rank.likelihood_stage import LikelihoodStage
from slsearch.rank.model import RetrievalModel
from slsearch.rank.reader_stage import ReaderStage

SCORES = ("full", "fused", "cico", "lexical", "global")
DIRECTIONS = ("t2v", "v2t")


@dataclass
class ClipSide:
    """Clips as the cascade needs them: token states, and what the later stages read."""

    tokens: Sequence[np.ndarray]  # per clip (L, d); a rank.cico.Ragged for stored candidates
    readings: Sequence[str] | None = None  # the gloss head's reading per clip, when the model has one
    reading_priors: np.ndarray | None = None  # the lexicon's log p(reading) per clip, when known for it
    vectors: np.ndarray | None = None  # (N, D) global vectors, for the global score
    reader_tokens: Sequence[np.ndarray] | None = None  # the reader stage's own token states of each clip (V2T)

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class TextSide:
    """Sentences as the cascade needs them."""

    texts: Sequence[str]
    tokens: Sequence[np.ndarray]  # per sentence (L, d)
    priors: np.ndarray | None = None  # the decoder's log p(sentence), when stored
    vectors: np.ndarray | None = None  # (N, D) global vectors

    def __len__(self) -> int:
        return len(self.tokens)


def restrict_to_first_stage(scores: np.ndarray, first: np.ndarray, n: int, direction: str) -> np.ndarray:
    """What a search does before re-ranking, on a whole (clips, texts) matrix: each query keeps its
    top-n candidates by the first-stage score `first`, ordered by `scores`; the others follow below,
    in first-stage order."""
    by_column = direction == "t2v"
    s, g = (scores.T, first.T) if by_column else (scores, first)
    n = min(n, s.shape[1])
    top = np.argsort(-g, axis=1, kind="stable")[:, :n]
    cand = np.zeros(s.shape, bool)
    np.put_along_axis(cand, top, True, axis=1)
    lift = float(np.abs(s).max()) + float(np.abs(g).max()) + 10.0
    out = np.where(cand, s + lift, g - lift).astype(np.float32)
    return out.T if by_column else out


class RankingPipeline:
    """The cascade of one retrieval model (or, without a model, the CiCo score alone at `temperature`:
    an index whose checkpoint is gone)."""

    def __init__(self, model: RetrievalModel | None = None, temperature: float | None = None):
        self.model = model
        self.temperature = model.temperature if model is not None else (temperature or CICO_TEMPERATURE)
        lexicon = model.lexicon if model is not None else None
        self.lexicon = LexiconStage(lexicon) if lexicon is not None and lexicon.fusion else None
        likelihood = model.likelihood if model is not None else None
        self.likelihood: LikelihoodStage | None = likelihood if likelihood is not None and likelihood.fusion else None
        self.hubness: HubnessStage | None = model.hubness if model is not None else None
        reader = model.reader if model is not None else None
        self.reader: ReaderStage | None = reader if self.likelihood is not None and reader is not None \
            and reader.applies("v2t") else None

    # --- which score ----------------------------------------------------------------------------
    def _likelihood_usable(self, readings_known: bool) -> bool:
        # it re-ranks what CiCo + lexicon ordered: without readings there is no such order
        return self.likelihood is not None and (self.lexicon is None or readings_known)

    def resolve_score(self, score: str | None, readings_known: bool, where: str) -> str:
        """The score asked for, checked to be available, or (None) the best available: what search ranks by."""
        lexicon_usable = self.lexicon is not None and readings_known
        full = self._likelihood_usable(readings_known)
        if score is None:
            return "full" if full else "fused" if lexicon_usable else "cico"
        if score not in SCORES:
            raise SlsearchError(f"--score must be one of {', '.join(SCORES)}, got {score!r}")
        if score == "full" and not full:
            why = ("its model has no decoder-likelihood stage (joint runs with the LM loss calibrate one; "
                   "`slsearch calibrate` adds it to an older checkpoint)" if self.likelihood is None
                   else "it holds no gloss readings for the lexicon stage below it (rebuild it with this model)")
            raise SlsearchError(f"{where}: --score full is not available: {why}")
        if score in ("fused", "lexical") and not lexicon_usable:
            why = ("its model has no gloss lexicon (joint runs on manifests with glosses learn one)"
                   if self.lexicon is None else "it holds no gloss readings (rebuild it with this model)")
            raise SlsearchError(f"{where}: --score {score} is not available: {why}")
        return score

    def reads_clips_again(self, score: str) -> bool:
        """Whether V2T with `score` needs the reader's own token states of the query clips (ClipSide.reader_tokens)."""
        return score == "full" and self.reader is not None

    def stages(self, score: str, reader_tokens: bool = True) -> dict[str, list[str]]:
        """{direction: the stages a resolved `score` runs, in order}: what an evaluation reports it ranked by.
        `reader_tokens`: whether the clips come with the reader's token states (an index does not store them)."""
        if score in ("global", "cico"):
            return {d: [score] for d in DIRECTIONS}
        if score == "lexical":
            return {d: ["lexicon"] for d in DIRECTIONS}
        base = ["cico", "lexicon"] if self.lexicon is not None else ["cico"]
        below = "fused" if self.lexicon is not None else "cico"
        out = {}
        for d in DIRECTIONS:
            out[d] = base + (["hubness"] if self.hubness is not None and self.hubness.applies(d, below) else [])
            if score == "full" and self.likelihood is not None and self.likelihood.applies(d):
                out[d].append("likelihood")
        if self.reads_clips_again(score) and reader_tokens:
            out["v2t"].append("reader")
        return out

    # --- scoring --------------------------------------------------------------------------------
    def cascade(self, clips: ClipSide, texts: TextSide, score: str, candidates: int | None,
                progress: Progress | None, cico: np.ndarray | None = None,
                directions: Sequence[str] = DIRECTIONS) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """(scores before the likelihood stage, the likelihood stage's raw scores or None) for each of
        `directions` (a search needs only its own). `cico`: the CiCo matrix when already computed."""
        first = None
        if score == "global" or candidates:
            if clips.vectors is None or texts.vectors is None:
                raise SlsearchError("the global score needs both sides' global vectors")
            first = clips.vectors @ texts.vectors.T
        if score == "global":
            return {d: first for d in directions}, None
        if score != "lexical" and cico is None:
            advance = track(progress, "CiCo scores", len(clips)) if len(clips) > 1 and len(texts) > 1 else None
            cico = cico_matrix(clips.tokens, texts.tokens, self.temperature, advance)
        if score == "cico" or (score == "full" and self.lexicon is None):
            stage = {d: cico for d in directions}
            below = "cico" if score == "full" else None  # CiCo asked for is CiCo alone: no hubness
        else:  # lexical, fused, full with a lexicon
            if clips.readings is None or self.lexicon is None:
                raise SlsearchError(f"--score {score} needs gloss readings and a calibrated gloss lexicon")
            lexical = {d: self.lexicon.scores(clips.readings, texts.texts, d, clips.reading_priors) for d in directions}
            stage = lexical if score == "lexical" else {d: self.lexicon.combine(cico, lexical[d], d) for d in directions}
            below = "lexical" if score == "lexical" else "fused"
        if "v2t" in directions and self.hubness is not None and self.hubness.applies("v2t", below):
            stage["v2t"] = self.hubness.combine(stage["v2t"], self.sentence_hubs(texts))
        if candidates:
            stage = {d: restrict_to_first_stage(stage[d], first, candidates, d) for d in directions}
        if score != "full" or self.likelihood is None:
            return stage, None
        net = self.model.net
        raw = {d: self.likelihood.pair_scores(net, stage[d], clips.tokens, texts.texts, d, texts.priors, progress,
                                              self.model.fast_decoder)
               for d in directions if self.likelihood.applies(d)}
        return stage, raw

    def score_matrix(self, clips: ClipSide, texts: TextSide, score: str = "full", candidates: int | None = None,
                     progress: Progress | None = None) -> dict[str, np.ndarray]:
        """{direction: (clips, texts) scores that rank each query's candidates as a search would}.
        `candidates`: re-rank only each query's global top-N, as a search does (None: every candidate)."""
        stage, raw = self.cascade(clips, texts, score, candidates, progress)
        if raw is None:
            return stage
        out = {d: self.likelihood.combine(stage[d], raw[d], d) if d in raw else stage[d] for d in DIRECTIONS}
        reread = self.reread(clips, texts, out["v2t"], progress)
        if reread is not None:
            out["v2t"] = self.reader.combine(out["v2t"], reread)
        return out

    def reread(self, clips: ClipSide, texts: TextSide, v2t: np.ndarray, progress: Progress | None = None
               ) -> np.ndarray | None:
        """The reader stage's raw scores of each V2T query's first candidates by the full score `v2t`, or None
        when there is no reader or the clips come without its token states."""
        if self.reader is None or clips.reader_tokens is None:
            return None
        return self.reader.pair_scores(v2t, clips.reader_tokens, texts.texts, progress)

    def rank(self, direction: str, clips: ClipSide, texts: TextSide, score: str) -> tuple[np.ndarray, np.ndarray]:
        """One query against its candidates (T2V: one sentence and N clips; V2T: one clip and N
        sentences) -> (candidate positions best first, their scores). Candidates the likelihood stage
        does not reach keep the previous stage's score."""
        stage, raw = self.cascade(clips, texts, score, None, None, directions=(direction,))
        ordered = final = stage[direction].ravel()
        if raw is not None and direction in raw:
            ordered = self.likelihood.combine(stage[direction], raw[direction], direction).ravel()
            final = np.where(np.isnan(raw[direction].ravel()), final, ordered)
        reread = self.reread(clips, texts, ordered[None, :]) if raw is not None and direction == "v2t" else None
        if reread is not None:
            ordered = self.reader.combine(ordered[None, :], reread).ravel()
            final = np.where(np.isnan(reread.ravel()), final, ordered)
        return np.argsort(-ordered, kind="stable"), final.astype(np.float32)

    def sentence_hubs(self, texts: TextSide) -> np.ndarray:
        """The hubness stage's hub score of each sentence (its best scores against the bank's clips)."""
        return self.hubness.hubs(texts.texts, texts.tokens, self._bank_stage)

    def _bank_stage(self, tokens, readings, texts, text_tokens) -> np.ndarray:
        """V2T scores of the stage the hubness stage corrects, for (bank clips, sentences)."""
        cico = cico_matrix(tokens, text_tokens, self.temperature)
        if self.hubness.below == "cico":
            return cico
        return self.lexicon.combine(cico, self.lexicon.scores(readings, texts, "v2t"), "v2t")

    def rank_clips(self, query: np.ndarray, candidates: ClipSide) -> tuple[np.ndarray, np.ndarray]:
        """V2V: a clip's tokens (L, d) against candidate clips, by CiCo (the other stages read sentences)."""
        s = cico_one_to_many(query, *stacked(candidates.tokens), self.temperature)
        return np.argsort(-s, kind="stable"), s


def fit_stages(model: RetrievalModel, clips: ClipSide, texts: TextSide, lexicon: Lexicon | None = None,
               likelihood_depth: int | None = None, bank: ClipSide | None = None,
               reader: ReaderStage | None = None) -> dict[str, dict]:
    """Fit the ranking stages of `model` on a paired dev set (clip i says texts[i]), in place: a new,
    uncalibrated `lexicon` gets its fusion weights (on the CiCo matrix) and becomes the model's; a `bank`
    of training clips makes a new hubness stage (V2T), and one the model has already is fitted again on
    what is below it now; with `likelihood_depth` the decoder-likelihood stage is fitted on what the
    stages before it rank; a new `reader` (or the model's own) is fitted on V2T after the likelihood stage, from
    `clips.reader_tokens`. Returns what was picked per stage. Save with `model.save_stages()`."""
    cico = cico_matrix(clips.tokens, texts.tokens, model.temperature)
    report: dict[str, dict] = {}
    if lexicon is not None:
        if clips.readings is None:
            raise SlsearchError("a gloss lexicon needs the clips' gloss readings (a model with a gloss head)")
        LexiconStage(lexicon).fit(cico, clips.readings, texts.texts)
        model.lexicon = lexicon
        report["lexicon"] = lexicon.fusion
    below = "fused" if model.lexicon is not None and model.lexicon.fusion and clips.readings is not None else "cico"
    hubness = model.hubness
    if bank is not None:
        hubness = HubnessStage(list(bank.tokens), None if bank.readings is None else list(bank.readings))
    if hubness is not None:
        hubness.below, hubness.fusion, hubness._memo = below, {}, {}  # not applied while its weight is picked
        model.hubness = hubness
        pipeline = RankingPipeline(model)
        stage, _ = pipeline.cascade(clips, texts, below, None, None, cico=cico, directions=("v2t",))
        report["hubness"] = hubness.fit(stage["v2t"], pipeline.sentence_hubs(texts))
    if likelihood_depth:
        pipeline = RankingPipeline(model)
        stage, _ = pipeline.cascade(clips, texts, below, None, None, cico=cico)
        likelihood = LikelihoodStage(depth=likelihood_depth)
        likelihood.fit(model.net, stage, clips.tokens, texts.texts, fast_decoder=model.fast_decoder)
        model.likelihood = likelihood
        report["likelihood"] = likelihood.fusion
    reader = reader or model.reader
    if reader is not None and model.likelihood is not None:
        model.reader = None  # not applied while its weight is picked
        if clips.reader_tokens is None:
            raise ValueError("fitting the reader stage needs the dev clips' reader token states (ClipSide.reader_tokens)")
        stage, raw = RankingPipeline(model).cascade(clips, texts, "full", None, None, cico=cico, directions=("v2t",))
        full = model.likelihood.combine(stage["v2t"], raw["v2t"], "v2t") if "v2t" in raw else stage["v2t"]
        report["reader"] = reader.fit(full, clips.reader_tokens, texts.texts)
        model.reader = reader
    return report
