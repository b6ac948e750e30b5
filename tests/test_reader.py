"""The V2T reader stage (slsearch.rank.reader_stage): a translate-stage checkpoint re-reads each query clip's
first candidates after the likelihood stage; fitted by `slsearch calibrate --reader`, copied into the retrieval
checkpoint, applied by eval and search alike, refused or left out when it does not fit."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data.manifest import read_manifest
from slsearch.encode import encode_texts, encode_videos
from slsearch.errors import SlsearchError
from slsearch.eval.retrieval import evaluate_index, evaluate_model
from slsearch.index.search import Searcher
from slsearch.models.checkpoint import load_model
from slsearch.rank import ClipSide, RankingPipeline, TextSide, load_retrieval_model
from slsearch.rank.reader_stage import READER_DIR, READER_FILE, ReaderStage

runner = CliRunner()


@pytest.fixture(scope="module")
def joint_and_reader(tiny_corpus, tmp_path_factory):
    """A joint run with the LM loss and the null clip, and a translate stage trained from it."""
    from slsearch.training.loop import train

    root = tmp_path_factory.mktemp("reader")
    joint = root / "joint"
    train("tiny", *tiny_corpus, joint, overrides=["loss.gloss_weight=2.0", "loss.lm_weight=4", "train.epochs=12",
                                                  "model.lm_prior_rate=0.2"], progress=False)
    slt = root / "slt"
    r = runner.invoke(app, ["train", "--recipe", "translate", "--init", str(joint), "--manifest", str(tiny_corpus[0]),
                            "--dev", str(tiny_corpus[1]), "--out", str(slt), "--set", "train.epochs=3",
                            "--set", "train.batch_size=16", "--json"])
    assert r.exit_code == 0, r.output
    return joint, slt


def test_calibrate_reader_then_eval_and_search_rank_alike(joint_and_reader, tiny_corpus, tmp_path):
    joint, slt = joint_and_reader
    run = tmp_path / "run"
    shutil.copytree(joint, run)
    r = runner.invoke(app, ["calibrate", "--model", str(run), "--dev", str(tiny_corpus[1]), "--reader", str(slt),
                            "--json"])
    assert r.exit_code == 0, r.output
    read = json.loads(r.stdout.strip().splitlines()[-1])["reader"]
    assert read["std"] > 0 and read["dev_MRR"] >= read["dev_MRR_before"]  # weight 0 is in the grid
    # the translate checkpoint is copied in: the folder stays whole without the original
    assert (run / READER_DIR / "model.safetensors").exists() and (run / READER_FILE).exists()
    model = load_retrieval_model(run)
    assert model.reader.fitted_on == model.hash and model.reader.reader_hash == load_model(slt).checkpoint_hash
    assert model.reader.scorer.fusion["v2t"] == read
    # read on a CPU by an int8 copy of its decoder, as fitted
    assert model.reader.scorer.v2t_fast and model.reader.fast_decoder is not model.reader.net.decoder
    # a non-zero weight, so the test exercises the stage whatever dev picked
    model.reader.scorer.fusion["v2t"]["weight"] = 1.5
    model.reader.save(run)

    model = load_retrieval_model(run)
    clips = read_manifest(tiny_corpus[0])
    texts = sorted({c.text for c in clips})
    net = model.net
    videos = encode_videos(net, clips)
    reader_tokens = model.reader.encode(clips)
    assert [t.shape[1] for t in reader_tokens[:1]] == [net.token_dim]
    text_side = TextSide(texts, encode_texts(net, texts).tokens)
    with_reader = ClipSide(videos.tokens, videos.readings, reader_tokens=reader_tokens)
    pipeline = RankingPipeline(model)
    full = pipeline.score_matrix(with_reader, text_side, "full")
    before = RankingPipeline(replace(model, reader=None)).score_matrix(with_reader, text_side, "full")
    # V2T is the likelihood stage's order re-read on each query's first `depth` by the reader's PMI; T2V untouched
    raw = model.reader.pair_scores(before["v2t"], reader_tokens, texts)
    assert (~np.isnan(raw)).sum() == model.reader.scorer.depth * len(clips)
    assert np.allclose(full["v2t"], model.reader.combine(before["v2t"], raw), atol=1e-5)
    assert np.allclose(full["t2v"], before["t2v"])
    assert not np.array_equal(np.argsort(-full["v2t"], 1)[:, :3], np.argsort(-before["v2t"], 1)[:, :3])
    # clips without the reader's token states (an index stores none) rank as the stage before
    plain = pipeline.score_matrix(ClipSide(videos.tokens, videos.readings), text_side, "full")
    assert np.allclose(plain["v2t"], before["v2t"])

    # eval encodes the clips with the reader too and says so; a search of a clip ranks as eval's row
    report = evaluate_model(run, tiny_corpus[0], progress=False)
    assert report["stages"]["v2t"][-1] == "reader" and "reader" not in report["stages"]["t2v"]
    out = tmp_path / "idx"
    r = runner.invoke(app, ["index", str(tiny_corpus[0]), "--model", str(run), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    searcher = Searcher(out)
    for i in (1, 9):
        hits = searcher.search_video(clips[i].path, k=4, n_candidates=len(texts))
        assert [h.text for h in hits] == [texts[j] for j in np.argsort(-full["v2t"][i], kind="stable")[:4]]
    assert "reader" not in evaluate_index(out, progress=False)["stages"]["v2t"]  # no reader tokens stored
    r = runner.invoke(app, ["calibrate", "--model", str(run), "--dev", str(tiny_corpus[1])])  # refits its own reader
    assert r.exit_code == 0 and "V2T re-read by the translate-stage model" in r.stdout, r.output


def test_a_reader_that_does_not_fit_is_refused_or_left_out(joint_and_reader, tiny_corpus, tiny_checkpoint, tmp_path):
    joint, slt = joint_and_reader
    # a checkpoint without a sentence prior cannot read V2T
    r = runner.invoke(app, ["calibrate", "--model", str(joint), "--dev", str(tiny_corpus[1]),
                            "--reader", str(tiny_checkpoint)])
    assert r.exit_code != 0 and "no sentence prior" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["calibrate", "--model", str(joint), "--dev", str(tiny_corpus[1]),
                            "--reader", str(tmp_path / "nowhere")])
    assert r.exit_code != 0 and "nowhere" in r.output and "Traceback" not in r.output
    run = tmp_path / "run"
    shutil.copytree(joint, run)
    model = load_retrieval_model(run)
    stage = ReaderStage(slt)
    stage.scorer.fusion = {"v2t": {"mean": 0.0, "std": 1.0, "weight": 1.0}}
    model.reader = stage
    model.save_stages()
    assert load_retrieval_model(run).reader is not None
    # fitted on other weights: left out on load, like the other stages
    data = json.loads((run / READER_FILE).read_text())
    (run / READER_FILE).write_text(json.dumps({**data, "fitted_on": "0123456789abcdef"}))
    assert load_retrieval_model(run).reader is None
    (run / READER_FILE).write_text(json.dumps(data))
    # the copied translate checkpoint replaced by other weights: refused when first read
    shutil.rmtree(run / READER_DIR)
    shutil.copytree(joint, run / READER_DIR)
    with pytest.raises(SlsearchError, match="not the weights the reader stage was fitted with"):
        load_retrieval_model(run).reader.net
    shutil.rmtree(run / READER_DIR)
    with pytest.raises(SlsearchError, match="translate checkpoint is missing"):
        load_retrieval_model(run)
    (run / READER_FILE).write_text("{not json")
    with pytest.raises(SlsearchError, match="unreadable reader stage"):
        load_retrieval_model(run)
