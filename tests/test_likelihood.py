"""The decoder-likelihood re-ranking stage: scores, the per-query re-rank, calibration, search = eval."""

import json
import shutil
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data.manifest import read_manifest
from slsearch.encode import encode_texts, encode_videos
from slsearch.index.search import Searcher
from slsearch.models import likelihood as likelihood_module
from slsearch.errors import SlsearchError
from slsearch.models.checkpoint import load_model, save_model
from slsearch.models.decoder import shift_for_lm
from slsearch.models.likelihood import sentence_loglik, sentence_prior
from slsearch.rank import ClipSide, RankingPipeline, RetrievalModel, TextSide, load_retrieval_model
from slsearch.rank import pipeline as pipeline_module
from slsearch.rank.hubness_stage import HUBNESS_FILE
from slsearch.rank.likelihood_stage import LIKELIHOOD_FILE, LikelihoodStage

runner = CliRunner()


@pytest.fixture(scope="module")
def prior_run(tiny_corpus, tmp_path_factory):
    """tiny.toml with the LM loss (weighted up: the tiny decoder learns slowly), the gloss head and the
    null clip: the run calibrates both stages."""
    from slsearch.training.loop import train

    out = tmp_path_factory.mktemp("likelihood") / "run"
    train("tiny", *tiny_corpus, out, overrides=["loss.gloss_weight=2.0", "loss.lm_weight=4", "train.epochs=12",
                                                "model.lm_prior_rate=0.2"], progress=False)
    return out


def test_sentence_loglik_is_the_decoders_log_probability(prior_run, tiny_corpus, monkeypatch):
    model = load_model(prior_run)
    clips = read_manifest(tiny_corpus[0])[:5]
    tokens = encode_videos(model, clips).tokens
    texts = [c.text for c in clips]
    monkeypatch.setattr(likelihood_module, "_BATCH", 2)  # batches of unequal clip lengths
    got = sentence_loglik(model, tokens, texts)
    for tok, text, value in zip(tokens, texts, got):
        ids, mask = model.tokenizer([text])
        dec_in, dec_mask, labels = shift_for_lm(ids, mask, model.tokenizer.bos_id, model.tokenizer.pad_id)
        with torch.no_grad():
            logits = model.decoder(torch.from_numpy(tok)[None], torch.ones(1, len(tok), dtype=torch.bool), dec_in, dec_mask)
        expected = -torch.nn.functional.cross_entropy(logits[0], labels[0], reduction="sum").item()
        assert value == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="aligned"):
        sentence_loglik(model, tokens[:2], texts)
    # a T2V query reads one sentence against every candidate (tokenized once): the same as pair by pair,
    # mixed with other sentences in the batch
    mixed = [texts[0], texts[1], texts[0], texts[0], texts[2]]
    alone = [sentence_loglik(model, [tok], [text])[0] for tok, text in zip(tokens, mixed)]
    assert sentence_loglik(model, tokens, mixed) == pytest.approx(alone, abs=1e-4)


def test_tokenizer_batch_is_each_sentence_padded(prior_run):
    tok = load_model(prior_run).tokenizer
    long = " ".join(["wetter"] * (tok.max_length + 10))
    texts = ["morgen regen im norden", "", long, "sonne"]
    ids, mask = tok(texts)
    for row, text in enumerate(texts):
        one = tok.ids(text)
        assert ids[row, : len(one)].tolist() == one and mask[row].sum() == len(one)
        assert (ids[row, len(one):] == tok.pad_id).all()
    assert mask[2].sum() == tok.max_length and ids[1, 0] == tok.eos_id


def test_a_trained_decoder_explains_its_own_clips_best(prior_run, tiny_corpus):
    """Real behaviour: a sentence is likelier read against its own clip than against another clip, and
    reading the null clip gives a prior that does not depend on any clip."""
    model = load_model(prior_run)
    clips = read_manifest(tiny_corpus[0])
    tokens = encode_videos(model, clips).tokens
    texts = [c.text for c in clips]
    own = sentence_loglik(model, tokens, texts)
    other = sentence_loglik(model, tokens[1:] + tokens[:1], texts)
    assert (own > other).mean() >= 0.7  # chance: 0.5 (0.825 when written)
    prior = sentence_prior(model, texts)
    assert np.isfinite(prior).all() and (prior < 0).all()
    assert np.allclose(sentence_prior(model, texts[:3]), prior[:3], atol=1e-4)
    # a model trained without the null clip has no prior to give
    no_prior = load_model(prior_run)
    no_prior.null_video = None
    with pytest.raises(ValueError, match="without a sentence prior"):
        sentence_prior(no_prior, texts[:1])


def _toy_pipeline(monkeypatch, stage: LikelihoodStage, previous: np.ndarray, raw: dict[int, float], calls: list):
    """A pipeline whose CiCo stage returns `previous` and whose decoder scores clip k (its tokens are all k)
    with raw[k]; every candidate the decoder is asked about lands in `calls`."""
    monkeypatch.setattr(pipeline_module, "cico_matrix", lambda clips, texts, temperature, progress=None: previous)

    def raw_scores(net, direction, clip_tokens, texts, priors=None, progress=False, decoder=None, group=None):
        calls.extend((direction, int(t[0, 0])) for t in clip_tokens)
        return np.array([raw[int(t[0, 0])] for t in clip_tokens], np.float32)

    stage.raw_scores = raw_scores
    net = SimpleNamespace(config=SimpleNamespace(cico_temperature=0.07))
    return RankingPipeline(RetrievalModel(net, likelihood=stage))


def test_rerank_reorders_the_head_and_keeps_the_tail_below(monkeypatch):
    stage = LikelihoodStage(depth=3, fusion={"t2v": {"mean": 0.0, "std": 1.0, "weight": 1.0}})
    previous = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.95], np.float32)  # head by previous score: 5, 0, 1
    raw = {5: -3.0, 0: 0.0, 1: 2.0}
    # the stage on a (clips, 1 sentence) block: one T2V query
    clips, queries = stage.heads(previous[:, None], "t2v")
    assert clips.tolist() == [5, 0, 1] and queries.tolist() == [0, 0, 0]
    block = np.full((6, 1), np.nan, np.float32)
    block[clips, 0] = [raw[int(c)] for c in clips]
    combined = stage.combine(previous[:, None], block, "t2v")[:, 0]
    assert np.argsort(-combined, kind="stable").tolist() == [1, 0, 5, 2, 3, 4]  # the tail below, in its old order
    assert combined[1] == pytest.approx(2.8) and combined[0] == pytest.approx(0.9)
    # one search through the pipeline: the head re-ranked, the tail keeps its previous scores
    calls = []
    pipeline = _toy_pipeline(monkeypatch, stage, previous[:, None], raw, calls)
    tokens = [np.full((2, 4), k, np.float32) for k in range(6)]
    order, final = pipeline.rank("t2v", ClipSide(tokens), TextSide(["regen"], [np.ones((3, 4), np.float32)]), "full")
    assert order.tolist() == [1, 0, 5, 2, 3, 4]  # 0.8+2, 0.9+0, 0.95-3; then the tail in its old order
    assert final[1] == pytest.approx(2.8) and final[3] == pytest.approx(0.6)
    assert sorted(calls) == [("t2v", 0), ("t2v", 1), ("t2v", 5)]  # the decoder read the head only
    # a direction without a weight is the previous order untouched
    assert np.array_equal(stage.combine(previous[None, :], np.full((1, 6), np.nan), "v2t"), previous[None, :])


def test_one_query_runs_the_decoder_for_its_own_direction_only(monkeypatch):
    """A V2T query with the stage calibrated for T2V alone is the previous order, without a decoder pass."""
    stage = LikelihoodStage(depth=3, fusion={"t2v": {"mean": 0.0, "std": 1.0, "weight": 1.0}})
    previous = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.95]], np.float32)  # one clip, six sentences
    calls = []
    pipeline = _toy_pipeline(monkeypatch, stage, previous, {0: 0.0}, calls)
    texts = TextSide([f"s{j}" for j in range(6)], [np.ones((3, 4), np.float32)] * 6)
    order, final = pipeline.rank("v2t", ClipSide([np.zeros((2, 4), np.float32)]), texts, "full")
    assert order.tolist() == [5, 0, 1, 2, 3, 4] and np.array_equal(final, previous[0])
    assert calls == []


def test_training_calibrates_the_stage_and_search_ranks_as_eval(prior_run, tiny_corpus, tmp_path):
    from slsearch.eval.retrieval import evaluate_index, evaluate_model

    model = load_retrieval_model(prior_run)
    assert model.likelihood is not None and set(model.likelihood.fusion) == {"t2v", "v2t"}
    assert model.likelihood.fitted_on == model.hash  # marked with the weights it was fitted on
    for f in model.likelihood.fusion.values():
        assert f["std"] > 0 and f["dev_R@1"] >= f["dev_R@1_before"]  # weight 0 is in the grid
    # the run fitted a V2T hubness stage on a bank of its training clips (all of them: fewer than the bank)
    assert model.hubness is not None and model.hubness.fitted_on == model.hash and model.hubness.below == "fused"
    assert len(model.hubness.bank_tokens) == len(read_manifest(tiny_corpus[0]))
    # non-zero weights so the test exercises the stages whatever dev picked
    model.likelihood.fusion = {d: {**f, "weight": 2.0} for d, f in model.likelihood.fusion.items()}
    model.likelihood.save(prior_run)
    model.hubness.fusion["v2t"]["weight"] = 0.5
    model.hubness.save(prior_run)

    out = tmp_path / "idx"
    r = runner.invoke(app, ["index", str(tiny_corpus[0]), "--model", str(prior_run), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    clips = read_manifest(tiny_corpus[0])
    texts = sorted({c.text for c in clips})  # the index's sentences are distinct
    searcher = Searcher(out)
    assert searcher.score == "full"
    model = searcher.model
    net = model.net
    videos = encode_videos(net, clips)
    clip_side = ClipSide(videos.tokens, videos.readings)
    text_side = TextSide(texts, encode_texts(net, texts).tokens)
    pipeline = RankingPipeline(model)
    stage2 = pipeline.score_matrix(clip_side, text_side, "fused")
    full = pipeline.score_matrix(clip_side, text_side, "full")
    # V2T's stage before is CiCo + lexicon less each sentence's hub score (T2V's has none)
    plain = RankingPipeline(replace(model, hubness=None)).score_matrix(clip_side, text_side, "fused")
    hubs = pipeline.sentence_hubs(text_side)
    assert np.allclose(stage2["v2t"], plain["v2t"] - 0.5 * hubs[None, :], atol=1e-5) and hubs.std() > 0
    assert np.allclose(stage2["t2v"], plain["t2v"])
    # the full matrix is the stage before re-ranked on each query's first `depth`
    for d in ("t2v", "v2t"):
        raw = model.likelihood.pair_scores(net, stage2[d], videos.tokens, texts, d, fast_decoder=model.fast_decoder)
        assert (~np.isnan(raw)).sum() == model.likelihood.depth * stage2[d].shape[0 if d == "v2t" else 1]
        assert np.allclose(model.likelihood.combine(stage2[d], raw, d), full[d], atol=1e-5)
    # the evaluation matrix re-ranks each query's first `depth` like search does
    t2v = full["t2v"]
    queries = [0, 3, 7]
    hits = searcher.search_text([texts[q] for q in queries], k=5, n_candidates=len(clips))
    for q, h in zip(queries, hits):
        assert [x.id for x in h] == [clips[i].id for i in np.argsort(-t2v[:, q], kind="stable")[:5]]
    v2t = full["v2t"]
    for i in (2, 11):
        h = searcher.search_video(clips[i].path, k=4, n_candidates=len(texts))
        assert [x.text for x in h] == [texts[j] for j in np.argsort(-v2t[i], kind="stable")[:4]]
    assert not np.array_equal(np.argsort(-t2v, 0)[:3], np.argsort(-stage2["t2v"], 0)[:3])  # it did re-rank
    # a search can skip the decoder (`query --score fused`): it then ranks as the stage before
    fused = Searcher(out, score="fused")
    for q, h in zip(queries, fused.search_text([texts[q] for q in queries], k=5, n_candidates=len(clips))):
        assert [x.id for x in h] == [clips[i].id for i in np.argsort(-stage2["t2v"][:, q], kind="stable")[:5]]
    r = runner.invoke(app, ["query", texts[3], "--index", str(out), "--score", "fused", "-k", "5",
                            "--candidates", str(len(clips)), "--json"])
    assert r.exit_code == 0, r.output
    assert [x["id"] for x in json.loads(r.stdout)["results"]] == \
           [clips[i].id for i in np.argsort(-stage2["t2v"][:, 3], kind="stable")[:5]]
    for bad, why in (("global", "for `slsearch eval`"), ("best", "--score must be one of")):
        r = runner.invoke(app, ["query", texts[3], "--index", str(out), "--score", bad])
        assert r.exit_code != 0 and why in r.output and "Traceback" not in r.output
    # the index stores each sentence's prior, so V2T does not recompute it per query (the matrices above
    # computed them: the same rankings)
    stored = dict(zip(searcher.texts.column("text"), searcher.sentence_priors))
    assert np.allclose([stored[t] for t in texts], sentence_prior(net, texts), atol=1e-4)

    full_eval = evaluate_model(prior_run, tiny_corpus[0], progress=False)
    assert full_eval["score"] == "full" and full_eval["metrics"]["paper/t2v_R@1"] >= 80
    assert full_eval["stages"] == {"t2v": ["cico", "lexicon", "likelihood"],
                                   "v2t": ["cico", "lexicon", "hubness", "likelihood"]}
    fused_eval = evaluate_model(prior_run, tiny_corpus[0], score="fused", progress=False)
    assert fused_eval["stages"] == {"t2v": ["cico", "lexicon"], "v2t": ["cico", "lexicon", "hubness"]}
    r = runner.invoke(app, ["eval", "--model", str(prior_run), "--manifest", str(tiny_corpus[0]), "--score", "cico"])
    assert r.exit_code == 0 and "stages: T2V cico; V2T cico" in r.stdout, r.output
    assert evaluate_index(out, progress=False)["score"] == "full"
    assert evaluate_model(prior_run, tiny_corpus[0], score="fused", progress=False)["score"] == "fused"

    # an index from before the column is refused, with what to do about it
    texts_meta = next(p for p in out.resolve().rglob("*.parquet") if "sentence_prior" in pq.read_schema(p).names)
    pq.write_table(pq.read_table(texts_meta).drop(["sentence_prior"]), texts_meta)
    with pytest.raises(SlsearchError, match="lacks the columns sentence_prior; rebuild"):
        Searcher(out)
    with pytest.raises(SlsearchError, match="lacks the columns sentence_prior; rebuild"):
        evaluate_index(out, progress=False)


def test_new_weights_leave_out_a_stale_likelihood_stage(prior_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(prior_run, run)
    assert LikelihoodStage.load(run).fusion == load_retrieval_model(prior_run).likelihood.fusion  # round trip
    (run / LIKELIHOOD_FILE).write_text("{not json")
    with pytest.raises(Exception, match="unreadable likelihood stage"):
        load_retrieval_model(run)
    shutil.copy(prior_run / LIKELIHOOD_FILE, run / LIKELIHOOD_FILE)
    # the same weights saved again: the stage still belongs to them
    net = load_model(prior_run)
    save_model(net, run)
    assert load_retrieval_model(run).likelihood.fusion == LikelihoodStage.load(prior_run).fusion
    # other weights: the file stays, but it was fitted on the old ones and is left out
    with torch.no_grad():
        next(net.parameters()).add_(0.01)
    save_model(net, run)
    assert (run / LIKELIHOOD_FILE).exists() and LikelihoodStage.load(run).fitted_on != net.checkpoint_hash
    model = load_retrieval_model(run)
    assert model.hash == net.checkpoint_hash and model.likelihood is None
    assert RankingPipeline(model).resolve_score(None, True, "run") != "full"


def test_v2t_reads_with_the_fast_decoder_only_in_stages_fitted_with_it(tmp_path):
    """A stage saved before V2T could read in int8 (no `v2t_fast` in its file) reads V2T with the network's
    own decoder, as its weights were fitted; T2V and newer stages read with the fast one, a query's
    candidates in one call (`group`: the depth, or fewer candidates)."""
    fusion = {d: {"mean": 0.0, "std": 1.0, "weight": 1.0} for d in ("t2v", "v2t")}
    (tmp_path / LIKELIHOOD_FILE).write_text(json.dumps({"depth": 3, "fusion": fusion, "fitted_on": "x"}))
    old = LikelihoodStage.load(tmp_path)
    assert not old.v2t_fast
    old.save(tmp_path)
    assert json.loads((tmp_path / LIKELIHOOD_FILE).read_text())["v2t_fast"] is False  # kept as it was
    calls = []

    def raw_scores(net, direction, clip_tokens, texts, priors=None, progress=None, decoder=None, group=None):
        calls.append((direction, decoder, group))
        return np.zeros(len(texts), np.float32)

    previous = np.arange(12, dtype=np.float32).reshape(3, 4)  # 3 clips x 4 sentences
    clip_tokens, texts, fast = [np.zeros((2, 4), np.float32)] * 3, ["a", "b", "c", "d"], object()
    for stage in (old, LikelihoodStage(depth=3, fusion=fusion)):
        stage.raw_scores = raw_scores
        for direction in ("t2v", "v2t"):
            stage.pair_scores(None, previous, clip_tokens, texts, direction, np.zeros(4), fast_decoder=fast)
    assert calls == [("t2v", fast, 3), ("v2t", None, 3), ("t2v", fast, 3), ("v2t", fast, 3)]
    calls.clear()
    deep = LikelihoodStage(depth=8, fusion=fusion)  # deeper than the candidates a query has
    deep.raw_scores = raw_scores
    for direction in ("t2v", "v2t"):
        deep.pair_scores(None, previous, clip_tokens, texts, direction, np.zeros(4), fast_decoder=fast)
    assert [c[2] for c in calls] == [3, 4]  # T2V: 3 clips a query, V2T: 4 sentences


def test_cli_calibrate(prior_run, tiny_corpus, tiny_checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(prior_run, run)
    (run / LIKELIHOOD_FILE).unlink()
    r = runner.invoke(app, ["calibrate", "--model", str(run), "--dev", str(tiny_corpus[1]), "--depth", "5", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["depth"] == 5 and set(out["fusion"]) == {"t2v", "v2t"}
    calibrated = load_retrieval_model(run)
    assert calibrated.likelihood.depth == 5 and calibrated.likelihood.fitted_on == calibrated.hash
    assert calibrated.likelihood.fusion == out["fusion"] and calibrated.likelihood.v2t_fast
    r = runner.invoke(app, ["calibrate", "--model", str(run), "--dev", str(tiny_corpus[1])])
    assert r.exit_code == 0 and "T2V" in r.stdout
    assert load_retrieval_model(run).likelihood.depth == 20  # the default
    # --bank: a new hubness stage on a sample of a training manifest's clips, then the likelihood on top
    (run / HUBNESS_FILE).unlink()
    r = runner.invoke(app, ["calibrate", "--model", str(run), "--dev", str(tiny_corpus[1]), "--bank",
                            str(tiny_corpus[0]), "--bank-size", "7", "--json"])
    assert r.exit_code == 0, r.output
    hub = json.loads(r.stdout.strip().splitlines()[-1])["hubness"]
    fitted = load_retrieval_model(run)
    assert hub["bank"] == 7 == len(fitted.hubness.bank_tokens) and fitted.hubness.fusion["v2t"]["share"] == hub["share"]
    assert fitted.hubness.fitted_on == fitted.hash and hub["dev_MRR"] >= hub["dev_MRR_before"]
    r = runner.invoke(app, ["calibrate", "--model", str(run), "--dev", str(tiny_corpus[1]), "--bank",
                            str(tiny_corpus[0]), "--bank-size", "0"])
    assert r.exit_code != 0 and "--bank-size must be at least 1" in r.output
    # a checkpoint whose decoder never trained is refused with the reason
    r = runner.invoke(app, ["calibrate", "--model", str(tiny_checkpoint), "--dev", str(tiny_corpus[1])])
    assert r.exit_code == 2 and "decoder was not trained" in r.stderr
