"""`slsearch train` on a few dozen generated clips: learns, checkpoints, resumes, refuses bad input."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from gloss_poses import make_corpus
from slsearch import load_model
from slsearch.cli import app
from slsearch.data.manifest import Clip, read_manifest, write_manifest
from slsearch.errors import SlsearchError
from slsearch.training import loop
from slsearch.training.dev_eval import evaluate_retrieval
from slsearch.training.loop import train
from slsearch.training.recipe import load_recipe, recipe_from_dict

TINY = "tiny"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    return make_corpus(d, 48, seed=0, name="train"), make_corpus(d, 16, seed=1, name="dev")


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    result = train(TINY, *corpus, out, progress=False)
    return result, out


def test_tiny_training_retrieves_far_above_chance(trained, corpus):
    result, out = trained
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab_trim.json", "train_log.jsonl"):
        assert (out / name).exists(), name
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 13))
    assert log[-1]["loss"] < log[0]["loss"]
    assert {"cico_loss", "global_loss", "lm_loss", "clips_per_s", "cico_t2v_R@1", "cico_v2t_R@1"} <= set(log[0])
    # the folder is the best-on-dev checkpoint
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["best_epoch"] == result.best_epoch == max(log, key=lambda r: r["score"])["epoch"]
    model = load_model(out)
    clips = read_manifest(corpus[0])
    m, (clip_side, text_side) = evaluate_retrieval(model, clips, [c.text for c in clips])
    assert len(clip_side) == len(text_side) == len(clips) and text_side.texts == [c.text for c in clips]
    # 48 candidates: chance R@1 is 2 %
    assert m["cico_t2v_R@1"] >= 60 and m["cico_v2t_R@1"] >= 60, m
    assert m["global_t2v_R@1"] >= 40 and m["global_v2t_R@1"] >= 40, m
    assert result.best_dev["cico_t2v_R@1"] >= 40 and result.best_dev["cico_v2t_R@1"] >= 40, result.best_dev


def test_resume_after_interruption_matches_uninterrupted(corpus, tmp_path, monkeypatch):
    sets = ["train.epochs=3"]
    full = train(TINY, *corpus, tmp_path / "full", overrides=sets, progress=False)
    real_eval, calls = loop.evaluate_retrieval, []

    def interrupted_eval(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # dies during epoch 2's evaluation
        return real_eval(*a, **k)

    monkeypatch.setattr(loop, "evaluate_retrieval", interrupted_eval)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, *corpus, tmp_path / "cut", overrides=sets, progress=False)
    monkeypatch.setattr(loop, "evaluate_retrieval", real_eval)
    resumed = train(TINY, *corpus, tmp_path / "cut", overrides=sets, progress=False)
    assert resumed.epochs_run == full.epochs_run == 3
    a = load_file(str(tmp_path / "full" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(l)["epoch"] for l in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]
    with pytest.raises(SlsearchError, match="different recipe"):
        train(TINY, *corpus, tmp_path / "cut", overrides=["train.epochs=4"], progress=False)


def _bad_manifest(tmp_path, corpus, change):
    clips = read_manifest(corpus[0])[:6]
    change(clips)
    path = tmp_path / "bad" / f"train{len(list(tmp_path.glob('bad/*.jsonl')))}.jsonl"
    write_manifest(clips, path)
    return path


def test_bad_input_refused_before_training(corpus, tmp_path):
    out = tmp_path / "out"
    cases = []
    cases.append((_bad_manifest(tmp_path, corpus, lambda c: setattr(c[2], "path", tmp_path / "gone.npz")),
                  "gone.npz: file of clip"))
    cases.append((_bad_manifest(tmp_path, corpus, lambda c: setattr(c[3], "text", None)), "empty sentence"))
    short = tmp_path / "short.npz"
    np.savez(short, pose=np.load(read_manifest(corpus[0])[0].path)["pose"][:3], fps=np.float32(25))
    cases.append((_bad_manifest(tmp_path, corpus, lambda c: setattr(c[1], "path", short)),
                  "3 frames, fewer than the temporal stride 4"))
    for manifest, message in cases:
        with pytest.raises(SlsearchError, match=message):
            train(TINY, manifest, corpus[1], out, progress=False)
        assert not (out / "model.safetensors").exists()
    with pytest.raises(SlsearchError, match="unknown recipe key train.epochz"):
        train(TINY, *corpus, out, overrides=["train.epochz=3"], progress=False)
    with pytest.raises(SlsearchError, match="optim.lr: expected float"):
        load_recipe(TINY, ["optim.lr=fast"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nvideo_dim = 64\nwings = 2\n")
    with pytest.raises(SlsearchError, match="unknown recipe key model.wings"):
        load_recipe(bad)


def test_recipe_overrides():
    r = load_recipe(TINY, ["optim.lr=1e-4", "train.epochs=2", "optim.betas=[0.9, 0.95]", "train.precision=\"bf16\""])
    assert (r.optim.lr, r.train.epochs, r.optim.betas, r.train.precision) == (1e-4, 2, [0.9, 0.95], "bf16")
    assert r.model.video_dim == 64  # from the file
    with pytest.raises(SlsearchError, match="unknown recipe key optim.optimizer"):  # retired: AdamW only
        load_recipe(TINY, ["optim.optimizer=sgd"])
    # a checkpoint saved before the retired switches went still reads (they were at their defaults)
    saved = load_recipe(TINY).to_dict()
    saved["optim"].update(optimizer="adamw", momentum=0.9)
    saved["train"].update(ema_decay=0.0, concat_prob=0.0, feature_noise=0.0)
    assert recipe_from_dict(saved).to_dict() == load_recipe(TINY).to_dict()


def test_packaged_recipes_by_name_or_path(tmp_path, monkeypatch):
    from slsearch.training.recipe import find_recipe, recipe_names

    names = recipe_names()
    assert {"tiny", "demo", "cpu", "gpu", "translate"} <= set(names)
    for name in names:
        assert find_recipe(name).name == f"{name}.toml"
        if name != "translate":  # the translate stage also needs train.init
            load_recipe(name)  # every packaged recipe parses
    assert load_recipe("translate", ['train.init="runs/x"']).train.stage == "translate"
    mine = tmp_path / "mine.toml"
    mine.write_text("[train]\nepochs = 3\n")
    assert load_recipe(mine).train.epochs == 3  # a path still works
    monkeypatch.chdir(tmp_path)
    assert load_recipe("mine.toml").train.epochs == 3  # a relative path too
    with pytest.raises(SlsearchError, match=r"unknown recipe 'cpux': the packaged recipes are .*cpu.*tiny"):
        load_recipe("cpux")
    with pytest.raises(SlsearchError, match="train/cpu.toml: recipe not found"):
        load_recipe("train/cpu.toml")


def test_cli_train_json_and_error(corpus, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--recipe", TINY, "--manifest", str(corpus[0]), "--dev", str(corpus[1]),
                              "--out", str(tmp_path / "cli"), "--set", "train.epochs=1", "--set",
                              "optim.lr=0.05", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # the JSON alone: the epoch tables went to stderr
    assert data["epochs_run"] == 1 and data["stopped"] == "epochs"
    res = runner.invoke(app, ["train", "--recipe", TINY, "--manifest", str(corpus[0]), "--dev", str(corpus[1]),
                              "--out", str(tmp_path / "cli2"), "--set", "loss.wings=1"])
    assert res.exit_code == 2 and "unknown recipe key loss.wings" in res.output


def _lrs(recipe, steps: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = loop.make_scheduler(opt, recipe, steps_per_epoch=10)
    lrs = []
    for _ in range(steps):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return lrs


def test_schedule_follows_the_epochs_not_the_clock(monkeypatch):
    overrides = ["train.epochs=5", "optim.warmup_epochs=1", "optim.min_lr_ratio=0.0"]
    plain = _lrs(load_recipe(TINY, overrides), 60)
    clock = [0.0]

    def slow_machine() -> float:  # every reading an hour later: any wall-clock term would show
        clock[0] += 3600.0
        return clock[0]

    monkeypatch.setattr(loop.time, "perf_counter", slow_machine)
    monkeypatch.setattr(loop.time, "time", slow_machine)
    guarded = _lrs(load_recipe(TINY, overrides + ["train.max_minutes=1"]), 60)
    assert guarded == plain
    assert plain[0] == pytest.approx(0.1) and plain[9] == pytest.approx(1.0)  # warm-up over the first epoch
    assert plain[10 + 20] == pytest.approx(0.5, abs=1e-6)  # cosine half-way through the 40 steps after it
    assert plain[50] == pytest.approx(0.0, abs=1e-9) and plain[59] == pytest.approx(0.0, abs=1e-9)


def test_max_minutes_is_a_guard_that_stops_the_run(corpus, tmp_path):
    result = train(TINY, *corpus, tmp_path / "guard", progress=False,
                   overrides=["train.epochs=4", "train.max_minutes=1e-6", "train.patience=0"])
    assert result.stopped == "time_limit" and result.epochs_run == 1
    log = [json.loads(line) for line in (tmp_path / "guard" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["lr"] > 2 * 0.05 * 2e-3  # tiny.toml: far above the annealed floor
    # the same run resumed without the guard goes on to its epoch budget
    resumed = train(TINY, *corpus, tmp_path / "guard", progress=False,
                    overrides=["train.epochs=4", "train.max_minutes=0", "train.patience=0"])
    assert resumed.stopped == "epochs" and resumed.epochs_run == 4


def test_threads_auto_and_the_cli_wait_policy(monkeypatch):
    import subprocess
    import sys

    assert loop.pick_threads(3) == 3
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert loop.pick_threads(0) == torch.get_num_threads()
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert loop.pick_threads(0) == 1  # spinning threads: one, they collapse beside a busy process
    code = "import os, sys, slsearch.cli; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["PASSIVE", "False"]  # set before the CLI's first torch import
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "ACTIVE"  # the user's choice wins


def test_gloss_ctc_head_trains_where_the_manifest_has_glosses(corpus, tmp_path):
    out = tmp_path / "gloss"
    train(TINY, *corpus, out, overrides=["loss.gloss_weight=1.0", "train.epochs=4"], progress=False)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["gloss_loss"] < 0.7 * log[0]["gloss_loss"]
    model = load_model(out)
    assert model.config.glosses == sorted({g for c in read_manifest(corpus[0]) for g in c.gloss.split()})
    assert model.video.gloss_head.out_features == len(model.config.glosses) + 1  # + CTC blank
    # a manifest without glosses trains without the head (and says so)
    bare = tmp_path / "bare.jsonl"
    write_manifest([Clip(c.id, c.path, c.text) for c in read_manifest(corpus[0])], bare)
    train(TINY, bare, corpus[1], tmp_path / "bare", overrides=["loss.gloss_weight=1.0", "train.epochs=1"],
          progress=False)
    assert load_model(tmp_path / "bare").video.gloss_head is None
    assert json.loads((tmp_path / "bare" / "config.json").read_text())["recipe"]["loss"]["gloss_weight"] == 0


def test_gloss_ctc_ignores_clips_without_glosses():
    from slsearch.models.losses import gloss_ctc

    logits = torch.randn(3, 6, 5, requires_grad=True)
    mask = torch.ones(3, 6, dtype=torch.bool)
    targets = torch.tensor([[1, 2], [0, 0], [3, 0]])
    both = gloss_ctc(logits, mask, targets, torch.tensor([2, 0, 1]))
    alone = gloss_ctc(logits[[0, 2]], mask[[0, 2]], targets[[0, 2]], torch.tensor([2, 1]))
    assert torch.allclose(both, alone)
    both.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1].abs().sum() == 0
    none = gloss_ctc(logits, mask, targets, torch.zeros(3, dtype=torch.long))
    assert float(none.detach()) == 0.0


def test_translate_reports_what_the_gloss_head_reads(corpus, tmp_path):
    from slsearch.models.translator import DecodeConfig, translate

    out = tmp_path / "gloss"
    train(TINY, *corpus, out, overrides=["loss.gloss_weight=2.0", "train.epochs=12"], progress=False)
    model = load_model(out)
    clips = read_manifest(corpus[0])[:16]
    readings = [t.glosses for t in translate(model, clips, DecodeConfig(beam=1))]
    right = sum(r == c.gloss for r, c in zip(readings, clips))
    assert right >= 8, list(zip(readings, [c.gloss for c in clips]))  # 2-3 glosses of 8: chance is ~0
    r = CliRunner().invoke(app, ["translate", str(clips[0].path), "--model", str(out), "--json", "--beam", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["translations"][0]["glosses"] == readings[0]


def test_features_mapped_from_disk_train_the_same_weights(corpus, trained, tmp_path):
    """train.features=disk: the loaded features are mapped from a file in the run's folder, unlinked at
    once (nothing is left behind, whatever stops the run); the steps see the same numbers as from memory."""
    from slsearch.training.data import load_features

    front_end = load_model(trained[1]).video.front_end
    clips = read_manifest(corpus[1])
    in_memory = load_features(clips, front_end, 4, corpus[1])
    mapped = load_features(clips, front_end, 4, corpus[1], spill_dir=tmp_path / "spill")
    assert len(mapped) == len(in_memory) and list(mapped.lengths) == list(in_memory.lengths)
    for a, b in zip(in_memory.features, mapped.features):
        assert np.array_equal(a, b) and a.dtype == b.dtype == np.float16
        base = b
        while base.base is not None and not isinstance(base, np.memmap):
            base = base.base
        assert isinstance(base, np.memmap) and not b.flags.writeable
    assert not list((tmp_path / "spill").iterdir())

    sets = ["train.epochs=2"]
    train(TINY, *corpus, tmp_path / "memory", overrides=sets + ["train.features=memory"], progress=False)
    train(TINY, *corpus, tmp_path / "disk", overrides=sets + ["train.features=disk"], progress=False)
    a = load_file(str(tmp_path / "memory" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "disk" / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((tmp_path / "disk").glob(".features-*"))
    with pytest.raises(SlsearchError, match="train.features must be auto, memory or disk"):
        load_recipe(TINY, ["train.features=ssd"])


def test_text_neighbours_share_words_and_skip_the_same_sentence():
    from slsearch.models.tokenizer import TextTokenizer
    from slsearch.training.data import text_neighbours

    texts = ["regen im norden", "regen im süden", "sonne und wärme", "sonne und hitze", "regen im norden",
             "im norden regen", "nebel"]
    tok = TextTokenizer.from_corpus(texts * 5, vocab_size=60)
    nb = text_neighbours([tok.ids(t) for t in texts], k=3)
    assert nb.shape == (7, 3)
    for i, row in enumerate(nb):
        assert i not in row
    # the same sentence (4) and its reordering (5) are no neighbours of clip 0; the sentence one word off is
    assert nb[0][0] == 1 and 4 not in nb[0] and 5 not in nb[0]
    assert nb[2][0] == 3 and nb[3][0] == 2
    assert (nb[6] == -1).all()  # "nebel" shares no subword with any other sentence


def test_neighbour_batches_keep_seeds_and_draw_their_neighbours():
    from slsearch.training.data import with_neighbour_batches

    n, size = 64, 8
    neighbours = np.array([[(i + d) % n for d in range(1, 5)] for i in range(n)])  # clip i's: i+1 .. i+4
    rng = np.random.default_rng(0)
    batches = [rng.permutation(n)[k:k + size] for k in range(0, n, size)]
    state = rng.bit_generator.state
    assert with_neighbour_batches(batches, neighbours, 0.0, rng) is batches  # share 0: nothing, rng unused
    assert rng.bit_generator.state == state
    hard = with_neighbour_batches(batches, neighbours, 1.0, rng, group=4)
    assert len(hard) == len(batches)
    for before, after in zip(batches, hard):
        assert len(after) == size and len(set(after.tolist())) == size
        seeds = before[:2]  # size // group
        assert after[:2].tolist() == seeds.tolist()
        near = {int(c) for s in seeds for c in neighbours[s]} | set(seeds.tolist())
        # each seed brings up to 3 of its 4 neighbours; only a neighbour shared by both seeds leaves a gap
        from_neighbours = sum(int(c) in near for c in after)
        assert from_neighbours >= size - 1
    half = with_neighbour_batches(batches, neighbours, 0.5, np.random.default_rng(1))
    assert sum(not np.array_equal(a, b) for a, b in zip(batches, half)) == 4


def test_neighbour_batches_share_is_checked():
    with pytest.raises(SlsearchError, match="neighbour_batches must be between 0 and 1"):
        load_recipe("tiny", ["train.neighbour_batches=1.5"])
