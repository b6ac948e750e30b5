"""The V2T hubness stage (slsearch.rank.hubness_stage): hub scores against a bank of training clips, the
weight fitted on dev, the stage in the cascade, saved with the checkpoint and left out for other weights."""

from dataclasses import replace

import numpy as np
import pytest

from slsearch.errors import SlsearchError
from slsearch.eval.metrics import paired_ranks, paired_recall_at_1
from slsearch.rank import ClipSide, RankingPipeline, TextSide, fit_stages, load_retrieval_model
from slsearch.rank.cico import cico_matrix
from slsearch.rank.hubness_stage import HUBNESS_FILE, HubnessStage


def _bank_stage(calls):
    """A stage whose score of (bank clip b, sentence s) is b's row of a fixed table, by the sentence's text."""
    table = {"a": [1.0, 5.0, 0.0, 2.0], "b": [0.0, 0.5, 0.2, 0.1], "c": [3.0, 3.0, 3.0, 3.0]}

    def scores(tokens, readings, texts, text_tokens):
        calls.append(list(texts))
        assert len(tokens) == 4 and readings == ["X"] * 4
        return np.array([table[t] for t in texts], np.float32).T  # (bank, sentences)
    return scores


def test_a_hub_score_is_the_mean_of_the_k_best_bank_scores_computed_once_per_sentence():
    calls = []
    stage = HubnessStage([np.zeros((2, 3), np.float32)] * 4, ["X"] * 4, k=2)
    tokens = [np.ones((2, 3), np.float32)] * 3
    hubs = stage.hubs(["a", "b", "c"], tokens, _bank_stage(calls))
    assert np.allclose(hubs, [(5 + 2) / 2, (0.5 + 0.2) / 2, 3.0])
    assert np.allclose(stage.hubs(["c", "a"], tokens[:2], _bank_stage(calls)), [3.0, 3.5])
    assert calls == [["a"], ["b"], ["c"]]  # the second call found both in the memo
    stage.fusion = {"v2t": {"weight": 2.0}}
    prev = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.allclose(stage.combine(prev, hubs), prev - 2.0 * hubs[None, :])
    assert stage.applies("v2t", "fused") and not stage.applies("t2v", "fused") and not stage.applies("v2t", "cico")


def test_fit_discounts_a_sentence_every_clip_prefers():
    """Sentence 0 is a hub: every clip scores it a little above its own sentence. Its hub score says so;
    the fitted weight lowers it and every clip finds its own sentence."""
    n = 6
    prev = np.eye(n, dtype=np.float32)
    prev[:, 0] += 1.2
    hubs = np.array([2.0] + [1.0] * (n - 1), np.float32)
    stage = HubnessStage([np.zeros((1, 2), np.float32)])
    f = stage.fit(prev, hubs)
    assert paired_recall_at_1(prev, "v2t") == pytest.approx(100 / n)
    assert f["dev_R@1_before"] == pytest.approx(100 / n, abs=0.01) and f["dev_R@1"] == 100.0
    assert f["dev_MRR"] == 100.0 and f["dev_MRR_before"] < 100.0  # picked by mean reciprocal rank
    assert f["share"] > 0 and f["weight"] == pytest.approx(f["share"] * prev.std() / hubs.std(), rel=1e-5)
    # hub scores that say nothing (no sentence stands out) leave the ranking as it was: weight 0
    assert stage.fit(np.eye(n, dtype=np.float32), np.ones(n, np.float32))["weight"] == 0.0
    with pytest.raises(ValueError, match="paired square"):
        stage.fit(np.zeros((3, 4), np.float32), np.ones(4, np.float32))


def _toy(seed: int, n: int, d: int, rng=None):
    rng = rng or np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(2, 7)), d)).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def fitted(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint (CiCo only: no lexicon, no trained decoder) with a hubness stage fitted on a toy
    dev set whose sentence 0 is a hub, from a bank of clips that also prefer it."""
    import shutil

    folder = tmp_path_factory.mktemp("hub") / "run"
    shutil.copytree(tiny_checkpoint, folder)
    model = load_retrieval_model(folder)
    model.lexicon = None  # CiCo below the stage: these toy clips have no gloss readings
    d = model.net.token_dim
    rng = np.random.default_rng(0)
    texts = [f"satz {i}" for i in range(10)]
    text_tokens = _toy(1, 10, d, rng)
    # each clip is its sentence's tokens plus noise, and plus the hub sentence's tokens: the hub attracts all
    hub = text_tokens[0]
    clips = [np.concatenate([t + 0.3 * rng.standard_normal(t.shape).astype(np.float32), hub]) for t in text_tokens]
    bank = [np.concatenate([b, hub]) for b in _toy(2, 30, d, rng)]
    dev = (ClipSide(clips), TextSide(texts, text_tokens))
    report = fit_stages(model, *dev, bank=ClipSide(bank))
    return model, dev, report, folder


def test_the_cascade_applies_the_fitted_stage_to_v2t_only(fitted):
    model, (clips, sents), report, _ = fitted
    f = report["hubness"]
    assert model.hubness.below == "cico" and len(model.hubness.bank_tokens) == 30
    cico = cico_matrix(clips.tokens, sents.tokens, model.temperature)
    assert f["dev_R@1_before"] == pytest.approx(paired_recall_at_1(cico, "v2t"), abs=0.01)
    assert f["dev_MRR_before"] == pytest.approx(100 * (1 / paired_ranks(cico, "v2t")).mean(), abs=0.01)
    if not f["weight"]:  # the toy must exercise the stage: give it a weight if dev picked none
        model.hubness.fusion["v2t"]["weight"] = 0.5
    w = model.hubness.fusion["v2t"]["weight"]
    pipeline = RankingPipeline(model)
    hubs = pipeline.sentence_hubs(sents)
    bank_cico = cico_matrix(model.hubness.bank_tokens, sents.tokens, model.temperature)
    assert np.allclose(hubs, np.sort(bank_cico, axis=0)[-model.hubness.k:].mean(0), atol=1e-5)
    assert hubs[0] == hubs.max()  # the bank's clips all carry the hub sentence's signing
    full = pipeline.score_matrix(clips, sents, "full")
    assert np.allclose(full["v2t"], cico - w * hubs[None, :], atol=1e-5)
    assert np.allclose(full["t2v"], cico, atol=1e-5)
    assert np.allclose(pipeline.score_matrix(clips, sents, "cico")["v2t"], cico)  # CiCo asked for is CiCo alone
    # one query ranks as its row of the matrix
    for c in range(len(clips)):
        order, scores = pipeline.rank("v2t", ClipSide([clips.tokens[c]]), sents, "full")
        assert order.tolist() == np.argsort(-full["v2t"][c], kind="stable").tolist()
        assert np.allclose(scores, full["v2t"][c], atol=1e-5)


def test_saved_with_the_weights_and_left_out_for_other_weights(fitted):
    model, (clips, sents), _, folder = fitted
    model.save_stages()
    back = load_retrieval_model(folder)
    back.lexicon = None
    assert back.hubness.fitted_on == model.hash and back.hubness.fusion == model.hubness.fusion
    assert back.hubness.k == model.hubness.k and back.hubness.below == "cico"
    for a, b in zip(back.hubness.bank_tokens, model.hubness.bank_tokens):
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-2)  # float16 on disk
    assert np.allclose(RankingPipeline(back).score_matrix(clips, sents, "full")["v2t"],
                       RankingPipeline(model).score_matrix(clips, sents, "full")["v2t"], atol=1e-2)
    stale = replace(back.hubness, fitted_on="other weights")
    stale.save(folder)
    assert load_retrieval_model(folder).hubness is None
    (folder / HUBNESS_FILE).write_bytes(b"not a zip")
    with pytest.raises(SlsearchError, match="unreadable hubness stage"):
        load_retrieval_model(folder)
    (folder / HUBNESS_FILE).unlink()


def test_only_the_bank_clips_nearest_a_sentence_are_scored(monkeypatch):
    """A bank larger than PREFILTER: the stage scores the PREFILTER clips whose mean token state is nearest
    the sentence's, and the hub score is the k best of those."""
    from slsearch.rank import hubness_stage

    monkeypatch.setattr(hubness_stage, "PREFILTER", 3)
    axes = np.eye(4, dtype=np.float32)
    # clip j points along axis j % 4, scaled: clips 0, 4 along axis 0, clips 1, 5 along axis 1, ...
    bank = [np.stack([axes[j % 4] * (1 + j), axes[j % 4] * (1 + j)]) for j in range(8)]
    stage = HubnessStage(bank, None, k=2, below="cico")
    seen = []

    def scores(tokens, readings, texts, text_tokens):
        seen.append(sorted(int(t[0].argmax()) * 10 + int(t[0].max()) - 1 for t in tokens))  # axis*10 + clip index
        return np.array([[t[0].max()] for t in tokens], np.float32)  # a clip's score: its scale

    sentence = np.array([[1.0, 0.2, 0, 0], [1.0, 0.1, 0, 0]], np.float32)  # nearest axis 0, then axis 1
    hub = stage.hubs(["s"], [sentence], scores)
    assert len(seen) == 1 and len(seen[0]) == 3
    assert {0, 4} <= {x % 10 for x in seen[0]} and all(x // 10 in (0, 1) for x in seen[0])
    picked = sorted(x % 10 + 1 for x in seen[0])  # the scales of the clips scored
    assert hub[0] == pytest.approx(np.mean(picked[-2:]))
