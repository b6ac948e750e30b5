"""The ranking cascade (slsearch.rank): one query ranks as its column of the evaluation matrix, the first
stage cut, fitting the stages on dev, and stages that belong to other weights."""

import numpy as np
import pytest
import torch

from slsearch.errors import SlsearchError
from slsearch.models.checkpoint import save_model
from slsearch.models.lexicon import Lexicon
from slsearch.models.model import build_model
from slsearch.models.tokenizer import TextTokenizer
from slsearch.rank import ClipSide, RankingPipeline, RetrievalModel, TextSide, fit_stages, load_retrieval_model
from slsearch.rank.pipeline import restrict_to_first_stage
from slsearch.training.recipe import load_recipe

SIGNS = {"regen": "REGEN", "sonne": "SONNE", "wind": "WIND", "schnee": "SCHNEE", "morgen": "MORGEN",
         "nord": "NORD", "sued": "SUED", "heute": "HEUTE"}


def _pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    words = list(SIGNS)
    texts, glosses = [], []
    while len(texts) < n:
        pick = [words[i] for i in rng.choice(len(words), size=int(rng.integers(2, 5)), replace=False)]
        text = " ".join(pick)
        if text not in texts:
            texts.append(text)
            glosses.append(" ".join(SIGNS[w] for w in pick))
    return texts, glosses


@pytest.fixture(scope="module")
def cascade():
    """A random-weight network with every stage: a lexicon and a likelihood stage fitted on a toy dev set,
    then given non-zero weights so that each stage changes the ranking."""
    texts, glosses = _pairs(14, seed=0)
    config = load_recipe("tiny").model
    config.glosses = sorted(SIGNS.values())
    config.lm_prior_rate = 0.1
    torch.manual_seed(0)
    net = build_model(config, TextTokenizer.from_corpus(texts, 120)).eval()
    rng = np.random.default_rng(1)
    d = net.token_dim
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    clips = ClipSide([rng.standard_normal((int(rng.integers(2, 9)), d)).astype(np.float32) for _ in texts],
                     glosses, vectors=unit(rng.standard_normal((len(texts), 8))).astype(np.float32))
    sents = TextSide(texts, [rng.standard_normal((int(rng.integers(2, 6)), d)).astype(np.float32) for _ in texts],
                     vectors=unit(rng.standard_normal((len(texts), 8))).astype(np.float32))
    train_texts, train_glosses = _pairs(60, seed=2)
    model = RetrievalModel(net)
    report = fit_stages(model, clips, sents, Lexicon.train(train_texts, train_glosses, prefix=0), likelihood_depth=4)
    assert set(report) == {"lexicon", "likelihood"} and set(report["likelihood"]) == {"t2v", "v2t"}
    for f in model.lexicon.fusion.values():
        f["weight"] = 1.0
    for f in model.likelihood.fusion.values():
        f["weight"] = 1.0
    return model, clips, sents


def test_one_query_ranks_as_its_column_of_the_evaluation_matrix(cascade):
    model, clips, sents = cascade
    pipeline = RankingPipeline(model)
    full = pipeline.score_matrix(clips, sents, "full")
    fused = pipeline.score_matrix(clips, sents, "fused")
    depth = model.likelihood.depth
    for q in range(len(sents)):
        query = TextSide([sents.texts[q]], [sents.tokens[q]])
        order, scores = pipeline.rank("t2v", clips, query, "full")
        assert order.tolist() == np.argsort(-full["t2v"][:, q], kind="stable").tolist()
        # the likelihood stage reorders the head of the fused ranking and leaves the tail as it was
        before = np.argsort(-fused["t2v"][:, q], kind="stable")
        assert set(order[:depth].tolist()) == set(before[:depth].tolist())
        assert order[depth:].tolist() == before[depth:].tolist()
        assert np.allclose(scores[before[depth:]], fused["t2v"][before[depth:], q], atol=1e-5)
    for c in range(len(clips)):
        query = ClipSide([clips.tokens[c]], [clips.readings[c]])
        order, _ = pipeline.rank("v2t", query, sents, "full")
        assert order.tolist() == np.argsort(-full["v2t"][c], kind="stable").tolist()
    assert any((full[d] != fused[d]).any() for d in ("t2v", "v2t")), "the likelihood stage changed nothing"
    assert any((fused[d] != pipeline.score_matrix(clips, sents, "cico")[d]).any() for d in ("t2v", "v2t"))


def test_first_stage_cut_on_a_whole_matrix():
    scores = np.array([[0.9, 0.1], [0.5, 0.8], [0.7, 0.2]], np.float32)  # 3 clips x 2 sentences
    first = np.array([[0.1, 0.9], [0.8, 0.1], [0.9, 0.5]], np.float32)
    t2v = restrict_to_first_stage(scores, first, 2, "t2v")
    # sentence 0: global top-2 are clips 2 and 1, ordered by the score (0.7 > 0.5); clip 0 follows
    assert np.argsort(-t2v[:, 0], kind="stable").tolist() == [2, 1, 0]
    assert np.argsort(-t2v[:, 1], kind="stable").tolist() == [2, 0, 1]
    v2t = restrict_to_first_stage(scores, first, 1, "v2t")
    assert [int(np.argmax(r)) for r in v2t] == [1, 0, 0]  # each clip keeps only its global best


def test_fitted_stages_belong_to_their_weights(cascade, tmp_path):
    model, _, _ = cascade
    folder = tmp_path / "run"
    save_model(model.net, folder)
    model.path = folder
    model.save_stages()
    loaded = load_retrieval_model(folder)
    assert loaded.hash == model.hash and loaded.lexicon.fitted_on == model.hash
    assert loaded.lexicon.fusion == model.lexicon.fusion and loaded.likelihood.fusion == model.likelihood.fusion
    with torch.no_grad():  # new weights saved over them: the stages were fitted on the old scores
        model.net.logit_scale_fine.add_(1.0)
    save_model(model.net, folder)
    stale = load_retrieval_model(folder)
    assert stale.hash != model.lexicon.fitted_on
    assert stale.lexicon is None and stale.likelihood is None


def test_unavailable_scores_are_refused_with_the_reason():
    bare = RankingPipeline(None)
    assert bare.resolve_score(None, readings_known=False, where="x") == "cico"
    with pytest.raises(SlsearchError, match="no gloss lexicon"):
        bare.resolve_score("fused", readings_known=False, where="x")
    with pytest.raises(SlsearchError, match="no decoder-likelihood stage"):
        bare.resolve_score("full", readings_known=False, where="x")
    with pytest.raises(SlsearchError, match="--score must be one of"):
        bare.resolve_score("best", readings_known=False, where="x")
