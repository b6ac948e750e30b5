"""The decoder-likelihood re-ranking stage: scores, the per-query re-rank, calibration, search = eval."""

import json
import shutil

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
from slsearch.models.checkpoint import load_model, save_model
from slsearch.models.decoder import shift_for_lm
from slsearch.models.likelihood import (LIKELIHOOD_FILE, LikelihoodReranker, sentence_loglik,
                                        sentence_prior)
from slsearch.training.dev_eval import cico_matrix
from slsearch.training.likelihood_fit import stage_two_matrices

runner = CliRunner()


@pytest.fixture(scope="module")
def prior_run(tiny_corpus, tmp_path_factory):
    """tiny.toml with the LM loss (weighted up: the tiny decoder learns slowly), the gloss head and the
    null clip: the run calibrates both stages."""
    from pathlib import Path

    from slsearch.training.loop import train

    out = tmp_path_factory.mktemp("likelihood") / "run"
    recipe = Path(__file__).resolve().parents[1] / "train" / "tiny.toml"
    train(recipe, *tiny_corpus, out, overrides=["loss.gloss_weight=2.0", "loss.lm_weight=4", "train.epochs=12",
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


def test_rerank_reorders_the_head_and_keeps_the_tail_below():
    reranker = LikelihoodReranker(depth=3, fusion={"t2v": {"mean": 0.0, "std": 1.0, "weight": 1.0}})
    previous = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.95])  # head by previous score: 5, 0, 1
    raw = {5: -3.0, 0: 0.0, 1: 2.0}
    order, final = reranker.rerank(previous, "t2v", lambda pos: np.array([raw[int(p)] for p in pos]))
    assert order.tolist() == [1, 0, 5, 2, 3, 4]  # 0.8+2, 0.9+0, 0.95-3; then the tail in its old order
    assert final[1] == pytest.approx(2.8) and final[3] == pytest.approx(0.6)
    # a direction without a weight is the previous order untouched
    order, final = reranker.rerank(previous, "v2t", lambda pos: 1 / 0)
    assert order.tolist() == [5, 0, 1, 2, 3, 4] and np.array_equal(final, previous.astype(np.float32))


def test_training_calibrates_the_stage_and_search_ranks_as_eval(prior_run, tiny_corpus, tmp_path):
    from slsearch.eval.retrieval import evaluate_index, evaluate_model

    model = load_model(prior_run)
    assert model.likelihood is not None and set(model.likelihood.fusion) == {"t2v", "v2t"}
    for f in model.likelihood.fusion.values():
        assert f["std"] > 0 and f["dev_R@1"] >= f["dev_R@1_before"]  # weight 0 is in the grid
    # a non-zero weight so the test exercises the stage whatever dev picked
    model.likelihood.fusion = {d: {**f, "weight": 2.0} for d, f in model.likelihood.fusion.items()}
    model.likelihood.save(prior_run)

    out = tmp_path / "idx"
    r = runner.invoke(app, ["index", str(tiny_corpus[0]), "--model", str(prior_run), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    clips = read_manifest(tiny_corpus[0])
    texts = sorted({c.text for c in clips})  # the index's sentences are distinct
    searcher = Searcher(out)
    model = searcher.model
    videos = encode_videos(model, clips)
    cico = cico_matrix(videos, encode_texts(model, texts)).numpy()
    stage2 = stage_two_matrices(model, videos, texts, cico)
    # the evaluation matrix re-ranks each query's first `depth` like search does
    t2v = model.likelihood.rerank_matrix(model, stage2["t2v"], videos.tokens, texts, "t2v")
    queries = [0, 3, 7]
    hits = searcher.search_text([texts[q] for q in queries], k=5, n_candidates=len(clips))
    for q, h in zip(queries, hits):
        assert [x.id for x in h] == [clips[i].id for i in np.argsort(-t2v[:, q], kind="stable")[:5]]
    v2t = model.likelihood.rerank_matrix(model, stage2["v2t"], videos.tokens, texts, "v2t")
    for i in (2, 11):
        h = searcher.search_video(clips[i].path, k=4, n_candidates=len(texts))
        assert [x.text for x in h] == [texts[j] for j in np.argsort(-v2t[i], kind="stable")[:4]]
    assert not np.array_equal(np.argsort(-t2v, 0)[:3], np.argsort(-stage2["t2v"], 0)[:3])  # it did re-rank
    # the index stores each sentence's prior, so V2T does not recompute it per query
    stored = dict(zip(searcher.texts.coll.column("text"), searcher.texts.priors))
    assert np.allclose([stored[t] for t in texts], sentence_prior(model, texts), atol=1e-4)

    # an index from before the column: priors are computed per query, with the same ranking
    texts_meta = next(p for p in out.resolve().rglob("*.parquet") if "sentence_prior" in pq.read_schema(p).names)
    pq.write_table(pq.read_table(texts_meta).drop(["sentence_prior"]), texts_meta)
    older = Searcher(out)
    assert older.texts.priors is None
    assert [x.text for x in older.search_video(clips[2].path, k=4, n_candidates=len(texts))] == \
        [texts[j] for j in np.argsort(-v2t[2], kind="stable")[:4]]

    full = evaluate_model(prior_run, tiny_corpus[0], progress=False)
    assert full["score"] == "full" and full["metrics"]["paper/t2v_R@1"] >= 80
    assert evaluate_index(out, progress=False)["score"] == "full"
    assert evaluate_model(prior_run, tiny_corpus[0], score="fused", progress=False)["score"] == "fused"


def test_new_weights_drop_a_stale_likelihood_stage(prior_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(prior_run, run)
    assert LikelihoodReranker.load(run).fusion == load_model(prior_run).likelihood.fusion  # round trip
    (run / LIKELIHOOD_FILE).write_text("{not json")
    with pytest.raises(Exception, match="unreadable likelihood stage"):
        load_model(run)
    model = load_model(prior_run)
    save_model(model, run)
    assert not (run / LIKELIHOOD_FILE).exists() and load_model(run).likelihood is None


def test_cli_calibrate(prior_run, tiny_corpus, tiny_checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(prior_run, run)
    (run / LIKELIHOOD_FILE).unlink()
    r = runner.invoke(app, ["calibrate", "--model", str(run), "--dev", str(tiny_corpus[1]), "--depth", "5", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["depth"] == 5 and set(out["fusion"]) == {"t2v", "v2t"}
    assert load_model(run).likelihood.depth == 5
    r = runner.invoke(app, ["calibrate", "--model", str(run), "--dev", str(tiny_corpus[1])])
    assert r.exit_code == 0 and "T2V" in r.stdout
    # a checkpoint whose decoder never trained is refused with the reason
    r = runner.invoke(app, ["calibrate", "--model", str(tiny_checkpoint), "--dev", str(tiny_corpus[1])])
    assert r.exit_code == 2 and "decoder was not trained" in r.stderr
