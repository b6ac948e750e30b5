"""CVT-SLR (issue 17): the gloss VAE, the recogniser's shapes and masks, the adapter's start, the
alignment loss and the gloss bigram LM by hand, and the recogniser trained and used from the CLI."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data.manifest import read_manifest, write_manifest
from slsearch.models.ctc import BigramLM, prefix_beam_search
from slsearch.models.cvt_slr import (CVTSLR, GlossVAE, RecognizerModelConfig, VAEShape, alignment_loss, pad_ids,
                                     reconstruction_accuracy)
from slsearch.training.recipe import load_recipe

runner = CliRunner()

TINY = ["model.video_dim=32", "vae.heads=2", "vae.ffn=64", "vae.lstm_hidden=32", "vae.epochs=40", "vae.batch_size=8", "vae.lr=3e-3",
        "train.epochs=12", "train.batch_size=8", "train.threads=2", "optim.lr=3e-3"]


def tiny_sequences(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return [list(rng.choice(10, size=rng.integers(2, 5), replace=False) + 1) for _ in range(n)]


def test_vae_pretraining_learns_to_give_the_glosses_back():
    from slsearch.training.recognizer import pretrain_vae, vae_shape

    torch.manual_seed(0)
    recipe = load_recipe("recognizer", TINY)
    seqs = tiny_sequences()
    shape = vae_shape(recipe, 10, 32)
    before = reconstruction_accuracy(GlossVAE(shape), seqs)
    vae, log = pretrain_vae(recipe, seqs, [], shape, torch.device("cpu"))
    assert log[-1]["reconstruction"] < 0.5 * log[0]["reconstruction"]
    assert log[-1]["kl"] > 0  # the posterior is used, not collapsed to the prior
    after = reconstruction_accuracy(vae, seqs)
    assert before < 0.3 and after > 0.9
    # the decoder reads z: from the prior alone (mu = 0) it cannot give the glosses back
    with torch.no_grad():
        ids = pad_ids(seqs)
        out = vae(ids, sample=False)
        assert out["logits"].shape == (40, 4, 11) and out["mask"].sum() == sum(map(len, seqs))


def small_model(classes=6, dim=16):
    torch.manual_seed(0)
    cfg = RecognizerModelConfig([f"G{i}" for i in range(classes)], input_dim=12, dim=dim, dropout=0.0,
                                vae={"layers": 1, "heads": 2, "ffn": 32, "lstm_hidden": 8, "lstm_layers": 1,
                                     "dropout": 0.0})
    return CVTSLR(cfg).eval()


def test_recognizer_shapes_masks_and_batch_independence():
    model = small_model()
    x = torch.randn(2, 21, 12)
    lengths = torch.tensor([21, 9])
    x[1, 9:] = 0
    with torch.no_grad():
        r = model.encode_video(x, lengths)
        alone = model.encode_video(x[1:, :9], lengths[1:])
    assert r["gloss_logits"].shape == (2, 6, 7) and r["visual_logits"].shape == (2, 6, 7)
    assert r["mask"].sum(1).tolist() == [6, 3]  # ceil(ceil(T / 2) / 2)
    assert r["visual"].shape == r["textual"].shape == (2, 6, 16)
    assert torch.all(r["visual"][1, 3:] == 0) and torch.all(r["textual"][1, 3:] == 0)
    torch.testing.assert_close(r["gloss_logits"][1, :3], alone["gloss_logits"][0], atol=1e-5, rtol=1e-4)


def test_adapter_starts_as_the_vae_word_embeddings():
    model = small_model()
    vae = GlossVAE(VAEShape(6, 16, 1, 2, 32, 8, 1, 0.0))
    with torch.no_grad():
        vae.encoder.embed.weight.normal_()
    model.load_vae(vae)
    E = vae.encoder.embed.weight
    torch.testing.assert_close(model.adapter.embed.weight, E.t())
    torch.testing.assert_close(model.textual.to_mu.weight, vae.encoder.to_mu.weight)
    with torch.no_grad():
        onehot = torch.eye(7)[[3, 5]]
        torch.testing.assert_close(model.adapter(onehot), E[[3, 5]])  # a sure gloss -> its embedding
        p = torch.tensor([[0.0, 0.5, 0.5, 0, 0, 0, 0]])
        torch.testing.assert_close(model.adapter(p), 0.5 * (E[1] + E[2])[None])


def test_visual_module_from_a_retrieval_video_tower():
    from slsearch.models.video_tower import PoseFrontEnd, VideoTower

    torch.manual_seed(1)
    tower = VideoTower(PoseFrontEnd(16, 12), d=16, kernel=5, layers=1, heads=2, ffn=32)
    model = small_model()
    model.load_visual(tower)
    torch.testing.assert_close(model.front_end.embed[0].weight, tower.front_end.embed[0].weight)
    torch.testing.assert_close(model.blocks[1].conv.weight, tower.blocks[1].conv.weight)


TOWER = {"streams": ["pose", "pose_windows"], "input_dim": 12, "video_dim": 16, "video_layers": 1, "video_heads": 2,
         "video_ffn": 32, "token_dim": 16, "embed_dim": 16, "dropout": 0.0, "stream_window": 4, "stream_stride": 2}


def test_tower_mode_reads_what_the_retrieval_gloss_head_reads():
    """recognizer.visual = tower: the whole video tower (both streams, the encoder) is copied, and the shared
    classifier starts from the gloss head row by row by name, so the visual logits equal the head's."""
    from slsearch.models.cvt_slr import TOWER_KEYS
    from slsearch.models.model import ModelConfig, build_video_tower

    torch.manual_seed(2)
    theirs = ["G3", "G0", "X", "G1", "G5", "G2", "G4"]  # another order, and a gloss the recogniser lacks
    retrieval = build_video_tower(ModelConfig(**TOWER, glosses=theirs)).eval()
    ours = [f"G{i}" for i in range(6)] + ["NEW"]
    cfg = RecognizerModelConfig(ours, input_dim=12, dim=16, dropout=0.0,
                                vae={"layers": 1, "heads": 2, "ffn": 32, "lstm_hidden": 8, "lstm_layers": 1,
                                     "dropout": 0.0}, tower={k: v for k, v in TOWER.items() if k in TOWER_KEYS})
    model = CVTSLR(cfg).eval()
    assert model.load_visual(retrieval, theirs) == 6  # NEW has no row in the head
    x = torch.randn(2, 23, 12)
    lengths = torch.tensor([23, 11])
    x[1, 11:] = 0
    with torch.no_grad():
        head = retrieval(x, lengths)
        r = model.encode_video(x, lengths)
    assert torch.equal(r["mask"], head["mask"])
    cols = [0] + [theirs.index(g) + 1 for g in ours[:6]]
    torch.testing.assert_close(r["visual_logits"][..., :7][r["mask"]], head["gloss_logits"][..., cols][r["mask"]])
    assert torch.all(r["visual"][1, 3:] == 0) and r["gloss_logits"].shape == (2, 6, 8)
    # the prepared input feeds both streams; a checkpoint round trip rebuilds the tower
    assert model.front_end.feeds and model.front_end is model.tower.front_end
    again = CVTSLR(RecognizerModelConfig(**json.loads(json.dumps(cfg.__dict__))))
    again.load_state_dict(model.state_dict())


def test_tower_mode_needs_a_retrieval_model():
    with pytest.raises(Exception, match="--init"):
        load_recipe("recognizer", ["recognizer.visual=tower"])


def test_alignment_loss_by_hand():
    v = torch.tensor([[[2.0, 0.0]], [[0.0, 3.0]]])  # (B=2, T=1, d=2): normalised to e1, e2
    mask = torch.ones(2, 1, dtype=torch.bool)
    # P = I: each row's CE is -log(e / (e + 1)) = log(1 + 1/e)
    assert float(alignment_loss(v, v, mask)) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    swapped = v.flip(0)  # the positives now sit off the diagonal
    assert float(alignment_loss(v, swapped, mask)) == pytest.approx(math.log(1 + math.e), abs=1e-6)
    assert float(alignment_loss(v, v, mask, temperature=0.1)) == pytest.approx(math.log(1 + math.exp(-10)), abs=1e-6)
    # padded positions do not count, whatever they hold
    padded = torch.cat([v, torch.full((2, 1, 2), 7.0)], 1)
    m2 = torch.tensor([[True, False], [True, False]])
    assert float(alignment_loss(padded, padded, m2)) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # asymmetric: S -> V and V -> S rows averaged: v1 = e1, v2 = (e1 + e2)/sqrt2; t = e1, e2
    a = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])
    b = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    s = 1 / math.sqrt(2)
    P = np.array([[1.0, 0.0], [s, s]])
    ce = lambda M: np.mean([-(M[i, i] - np.log(np.exp(M[i]).sum())) for i in range(2)])
    assert float(alignment_loss(a, b, mask)) == pytest.approx(0.5 * (ce(P) + ce(P.T)), abs=1e-6)


def test_bigram_lm_by_hand_and_in_the_beam_search():
    lm = BigramLM.from_sequences([[1, 2], [1]], classes=2, k=1.0)
    # counts: (BOS,1)=2 (1,2)=1 (2,END)=1 (1,END)=1; denominators count(prev) + k * 3
    assert math.exp(lm.log_prob(0, 1)) == pytest.approx(3 / 5)
    assert math.exp(lm.log_prob(0, 2)) == pytest.approx(1 / 5)
    assert math.exp(lm.log_prob(1, 2)) == pytest.approx(2 / 5)
    assert math.exp(lm.log_prob(1, 0)) == pytest.approx(2 / 5)
    assert math.exp(lm.log_prob(2, 0)) == pytest.approx(2 / 4)
    assert lm.sequence_log_prob([1, 2]) == pytest.approx(math.log(3 / 5 * 2 / 5 * 2 / 4))
    assert BigramLM.from_dict(json.loads(json.dumps(lm.to_dict()))).counts == lm.counts
    # one frame: CTC prefers gloss 2 (0.46 vs 0.44); the LM prefers gloss 1 (3/5 * 2/5 vs 1/5 * 2/4)
    logp = np.log(np.array([[0.10, 0.44, 0.46]]))
    assert prefix_beam_search(logp, beam=4)[0] == [2]
    labels, score = prefix_beam_search(logp, beam=4, lm=lm, lm_weight=1.0)
    assert labels == [1] and score == pytest.approx(math.log(0.44 * 3 / 5 * 2 / 5))
    assert prefix_beam_search(logp, beam=4, lm=lm, lm_weight=0.0)[0] == [2]
    # weight 2: gloss 1 scores 0.44 * (3/5 * 2/5)^2 = 0.0253, the empty reading 0.1 * P(END | BOS)^2 = 0.004;
    # a per-gloss bonus of -3 (e^-3 = 0.0498 per gloss) makes gloss 1 0.00126 and the empty reading wins
    assert math.exp(lm.log_prob(0, 0)) == pytest.approx(1 / 5)
    assert prefix_beam_search(logp, beam=4, lm=lm, lm_weight=2.0)[0] == [1]
    labels, score = prefix_beam_search(logp, beam=4, lm=lm, lm_weight=2.0, lm_bonus=-3.0)
    assert labels == [] and score == pytest.approx(math.log(0.1) + 2 * math.log(1 / 5))
    labels, score = prefix_beam_search(logp, beam=4, lm=lm, lm_weight=2.0, lm_bonus=1.0)
    assert labels == [1] and score == pytest.approx(math.log(0.44) + 2 * math.log(6 / 25) + 1.0)


@pytest.fixture(scope="module")
def recognizer_run(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("cvt") / "rec"
    args = ["train", "--recipe", "recognizer", "--manifest", str(tiny_corpus[0]), "--dev", str(tiny_corpus[1]),
            "--out", str(out), "--json"]
    for s in TINY:
        args += ["--set", s]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout.strip().splitlines()[-1]), args


def test_recognizer_trains_below_the_untrained_wer(recognizer_run, tiny_corpus):
    from slsearch.eval.recognition import word_errors
    from slsearch.models.cvt_slr import load_recognizer
    from slsearch.training.data import load_features
    from slsearch.training.recognizer import dev_readings

    out, result, _ = recognizer_run
    assert (out / "vae" / "vae.safetensors").is_file() and (out / "lm.json").is_file()
    vae_cfg = json.loads((out / "vae" / "config.json").read_text())
    assert vae_cfg["log"][-1]["train_accuracy"] > 0.9
    model = load_recognizer(out)
    clips = read_manifest(tiny_corpus[1])
    feats = load_features(clips, model.front_end, 4, tiny_corpus[1]).features
    refs = [c.gloss for c in clips]
    trained = word_errors(refs, dev_readings(model, feats, model.config.glosses))["wer"]
    assert trained == pytest.approx(result["best_dev"]["dev_wer"])
    untrained = word_errors(refs, dev_readings(CVTSLR(model.config), feats, model.config.glosses))["wer"]
    assert untrained >= 90 and trained < 50, (untrained, trained)


def test_cli_round_trip_recognize_and_eval_wer(recognizer_run, tiny_corpus):
    out, _, args = recognizer_run
    r = runner.invoke(app, ["recognize", str(tiny_corpus[1]), "--model", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["model_kind"] == "recognizer" and len(rec["recognitions"]) == 10
    for item in rec["recognitions"]:
        for g in item["items"]:
            assert 0 <= g["start"] < g["end"] <= item["duration"] + 1e-6 and 0 < g["confidence"] <= 1
    e = runner.invoke(app, ["eval", "--wer", "--manifest", str(tiny_corpus[1]), "--model", str(out), "--json"])
    assert e.exit_code == 0, e.output
    report = json.loads(e.stdout)
    from slsearch.eval.recognition import word_errors

    again = word_errors([x["reference"] for x in rec["recognitions"]], [x["glosses"] for x in rec["recognitions"]])
    assert report["metrics"]["wer"] == again["wer"] and report["model_kind"] == "recognizer"
    lm = runner.invoke(app, ["eval", "--wer", "--manifest", str(tiny_corpus[1]), "--model", str(out), "--json",
                             "--lm-weight", "0.5"])
    assert lm.exit_code == 0, lm.output
    assert json.loads(lm.stdout)["lm_weight"] == 0.5
    # the VAE is not pretrained again when the run is repeated into the same folder
    again_run = runner.invoke(app, args + ["--set", "train.epochs=1"])
    assert again_run.exit_code == 0 and "already pretrained" in " ".join(again_run.stderr.split())


def test_gloss_less_manifests_are_refused(tiny_corpus, tmp_path, recognizer_run):
    out, _, _ = recognizer_run
    plain = tmp_path / "no-glosses.jsonl"
    clips = read_manifest(tiny_corpus[0])
    for c in clips:
        c.gloss = None
    write_manifest(clips, plain)
    r = runner.invoke(app, ["train", "--recipe", "recognizer", "--manifest", str(plain), "--dev", str(tiny_corpus[1]),
                            "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1 and "no-glosses.jsonl" in r.stderr and "gloss" in r.stderr
    e = runner.invoke(app, ["eval", "--wer", "--manifest", str(plain), "--model", str(out)])
    assert e.exit_code == 2 and len(e.stderr.strip().splitlines()) == 1 and "no-glosses.jsonl" in e.stderr


def test_an_index_can_store_a_recognisers_readings(recognizer_run, tiny_corpus, tmp_path):
    """`index --readings RUN`: every clip's stored reading is the recogniser's, index.json names it, a V2T search
    reads the query with it, and --add with another reader is refused."""
    from slsearch.data.poses import load_pose
    from slsearch.index.search import Searcher
    from slsearch.index.store import load_index
    from slsearch.recognition import load_gloss_reader, read_poses
    from slsearch.training.loop import train

    run, _, _ = recognizer_run
    model = tmp_path / "retrieval"
    train("tiny", *tiny_corpus, model, overrides=["loss.lm_weight=0", "loss.gloss_weight=2.0", "train.epochs=3"],
          progress=False)
    r = runner.invoke(app, ["index", str(tiny_corpus[1]), "--model", str(model), "--out", str(tmp_path / "idx"),
                            "--readings", str(run), "--json"])
    assert r.exit_code == 0, r.output
    index = load_index(tmp_path / "idx")
    assert index.info["readings"]["path"] == str(run.resolve())
    rows = index.clips.meta.to_pylist()
    reader = load_gloss_reader(run)
    clips = {c.id: c for c in read_manifest(tiny_corpus[1])}
    expected = read_poses(reader, [load_pose(clips[row["id"]]).data for row in rows[:4]])
    assert [row["gloss_reading"] for row in rows[:4]] == expected
    hits = Searcher(tmp_path / "idx").search_video(clips[rows[0]["id"]].path, k=3)
    assert len(hits) == 3
    more = tmp_path / "more.jsonl"
    write_manifest(read_manifest(tiny_corpus[0])[:3], more)
    r = runner.invoke(app, ["index", str(more), "--model", str(model), "--out", str(tmp_path / "idx"), "--add", "--json"])
    assert r.exit_code == 0, r.output  # --add reads the new clips with the index's own reader
    added = [row for row in load_index(tmp_path / "idx").clips.meta.to_pylist() if row["id"] not in clips]
    new_clips = {c.id: c for c in read_manifest(more)}
    assert [row["gloss_reading"] for row in added] == read_poses(reader, [load_pose(new_clips[row["id"]]).data
                                                                         for row in added])
    r = runner.invoke(app, ["index", str(more), "--model", str(model), "--out", str(tmp_path / "idx"), "--add",
                            "--readings", str(model)])
    assert r.exit_code == 2 and "one index keeps one reader" in r.output


def test_a_recogniser_on_a_dual_stream_retrieval_tower(tiny_corpus, tmp_path):
    """`train --recipe recognizer --init RUN --set recognizer.visual=tower` on a two-stream retrieval model with a
    gloss head: it starts from the head's reading (its first dev WER is the head's, near it after one epoch of
    a small learning rate), and `recognize` and `eval --wer` read with both streams."""
    from slsearch.eval.recognition import word_errors
    from slsearch.models.checkpoint import load_model
    from slsearch.models.cvt_slr import load_recognizer
    from slsearch.recognition import read_poses
    from slsearch.data.poses import load_pose
    from slsearch.training.loop import train

    retrieval = tmp_path / "retrieval"
    train("tiny", *tiny_corpus, retrieval, overrides=["loss.lm_weight=0", "loss.gloss_weight=4.0", "train.epochs=8",
                                                      'model.streams=["pose", "pose_windows"]'], progress=False)
    clips = read_manifest(tiny_corpus[1])
    refs = [c.gloss for c in clips]
    head = load_model(retrieval)
    head_wer = word_errors(refs, read_poses(head, [load_pose(c).data for c in clips]))["wer"]
    out = tmp_path / "rec"
    r = runner.invoke(app, ["train", "--recipe", "recognizer", "--manifest", str(tiny_corpus[0]), "--dev",
                            str(tiny_corpus[1]), "--out", str(out), "--init", str(retrieval), "--json",
                            "--set", "recognizer.visual=tower", "--set", "vae.heads=2", "--set", "vae.epochs=10",
                            "--set", "train.epochs=2", "--set", "train.batch_size=8", "--set", "optim.lr=1e-4"])
    assert r.exit_code == 0, r.output
    assert "the classifier from its gloss head" in " ".join(r.stderr.split())
    model = load_recognizer(out)
    assert model.config.tower["streams"] == ["pose", "pose_windows"] and model.front_end.feeds
    # recognizer.read = auto: each epoch's dev WER is its better branch's, and the kept epoch's branch is read
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    for row in log:
        assert row["dev_wer"] == min(row["dev_wer_textual"], row["dev_wer_visual"])
        assert row["dev_wer"] == row[f"dev_wer_{row['reads']}"]
    kept = min(log, key=lambda row: row["dev_wer"])
    assert model.config.reads == kept["reads"]
    # the visual branch is the head itself before step 2: equal WER
    from slsearch.training.data import load_features
    from slsearch.training.recognizer import dev_readings

    fresh = CVTSLR(model.config)
    fresh.load_visual(head.video, head.config.glosses)
    feats = load_features(clips, fresh.front_end, 4, tiny_corpus[1]).features
    assert word_errors(refs, dev_readings(fresh, feats, fresh.config.glosses, key="visual_logits"))["wer"] == \
        pytest.approx(head_wer)
    e = runner.invoke(app, ["eval", "--wer", "--manifest", str(tiny_corpus[1]), "--model", str(out), "--json",
                            "--beam", "1"])  # greedy, as the dev WER that picked the epoch
    assert e.exit_code == 0, e.output
    assert json.loads(e.stdout)["metrics"]["wer"] == pytest.approx(json.loads(r.stdout.strip().splitlines()[-1])
                                                                   ["best_dev"]["dev_wer"])
    rec = runner.invoke(app, ["recognize", str(tiny_corpus[1]), "--model", str(out), "--json"])
    assert rec.exit_code == 0 and len(json.loads(rec.stdout)["recognitions"]) == len(clips)
