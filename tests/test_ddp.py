"""Distributed data-parallel training (issue 19): 2 CPU processes on gloo train what one process trains.

The tiny recipe has no dropout and no null-clip draws, so a single process with the global batch and
`torchrun --nproc_per_node 2` with half of it per rank see the same clips, stretches and padding at
every step; the per-step losses and the final weights must agree up to float reduction order
(tolerances below). The batch (13) does not split evenly: ranks get 7 and 6 clips.

This file is also the worker torchrun starts: `torchrun ... tests/test_ddp.py RECORD slsearch train ...`
runs the `slsearch train` command line (what `torchrun -m slsearch train ...` runs) with the
per-step losses recorded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
# the run: 2 epochs of 3 steps (40 clips in batches of 13; the last clip is dropped), all four losses, half
# the batches of textual neighbours (clips of one sentence meet there: the ranks gather their text keys)
SETS = ["train.epochs=2", "train.batch_size=13", "loss.gloss_weight=1.0", "likelihood.enabled=false",
        "lexicon.enabled=false", "train.neighbour_batches=0.5"]
LOSS_RTOL = 1e-4  # per-step losses, relative
WEIGHT_ATOL = 1e-3  # final weights (last/model.safetensors), absolute, on weights of order 0.01-1
# The biases of the convolutions before batch norm have a gradient of exactly zero in exact arithmetic
# (the norm subtracts them again): AdamW turns its float noise into steps of up to the learning rate,
# and the norm's running mean follows them. One process with 1 thread vs 2 threads differs there by
# 1.7e-3 / 4e-4 after these 6 steps: the same as 2 processes vs 1 (1.8e-3 / 4.5e-4). They get the
# bound of 6 AdamW steps at lr 2e-3.
NOISE_ONLY = ("conv.bias", "bn.running_mean")
NOISE_ATOL = 1.2e-2


def train_recording(record, run):
    """run() (a training) with this process's per-step losses written to RECORD.rank<R>.json."""
    from slsearch.models import losses as losses_module
    from slsearch.training import loop

    steps = []

    class Recording(losses_module.C2RLLoss):
        def forward(self, *a, **k):
            out = super().forward(*a, **k)
            row = {name: float(v.detach()) for name, v in out.items()}
            row["loss"] = sum(row.values())
            steps.append(row)
            return out

    real = loop.C2RLLoss
    loop.C2RLLoss = Recording
    try:
        result = run()
    finally:
        loop.C2RLLoss = real
        rank = os.environ.get("RANK", "0")
        Path(f"{record}.rank{rank}.json").write_text(json.dumps(steps))
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], nproc: int = 2, timeout: int = 120, **env_vars) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "tests"), **env_vars}
    cmd = [str(TORCHRUN), "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _steps(record: Path, ranks: int) -> list[dict[str, float]]:
    """Per-step losses of the global batch: the mean of the ranks' values (see BatchGroup)."""
    per_rank = [json.loads(Path(f"{record}.rank{r}.json").read_text()) for r in range(ranks)]
    assert len({len(p) for p in per_rank}) == 1
    return [{k: sum(p[s][k] for p in per_rank) / ranks for k in per_rank[0][s]} for s in range(len(per_rank[0]))]


@pytest.fixture(scope="module")
def runs(tiny_corpus, tmp_path_factory):
    """(single-process run folder, its steps, 2-process run folder, its steps, torchrun's output)."""
    from slsearch.training.loop import train

    d = tmp_path_factory.mktemp("ddp")
    train_manifest, dev_manifest = map(str, tiny_corpus)
    train_recording(d / "single-steps", lambda: train("tiny", train_manifest, dev_manifest, d / "single",
                                                      overrides=SETS + ["train.threads=2"], progress=False))
    sets = [a for s in SETS + ["train.threads=1"] for a in ("--set", s)]
    proc = torchrun([str(Path(__file__)), str(d / "ddp-steps"), "train", "--recipe", "tiny", "--manifest",
                     train_manifest, "--dev", dev_manifest, "--out", str(d / "ddp"), "--json", *sets],
                    SLSEARCH_WORKSPACE=str(d / "workspace.toml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return d / "single", _steps(d / "single-steps", 1), d / "ddp", _steps(d / "ddp-steps", 2), proc


def test_two_processes_train_what_one_process_trains(runs):
    from safetensors.torch import load_file

    single, single_steps, ddp, ddp_steps, _ = runs
    assert len(single_steps) == len(ddp_steps) == 6
    assert set(single_steps[0]) == {"cico_loss", "global_loss", "lm_loss", "gloss_loss", "loss"}
    for s, (a, b) in enumerate(zip(single_steps, ddp_steps)):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=LOSS_RTOL), (s, k, a[k], b[k])
    a = load_file(str(single / "last" / "model.safetensors"))
    b = load_file(str(ddp / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    diff = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a}
    worst = max(v for k, v in diff.items() if not k.endswith(NOISE_ONLY))
    assert worst < WEIGHT_ATOL, sorted(diff.items(), key=lambda kv: -kv[1])[:5]
    assert max(diff.values()) < NOISE_ATOL
    # batch norm's running statistics are the global batch's too
    bn = [k for k in a if k.endswith("running_var")]
    assert bn and all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5) for k in bn)


def test_only_rank_zero_writes_and_every_rank_agrees(runs):
    single, _, ddp, _, proc = runs
    log = [json.loads(line) for line in (ddp / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # one writer: no duplicated rows
    single_log = [json.loads(line) for line in (single / "train_log.jsonl").read_text().splitlines()]
    for r, s in zip(log, single_log):
        assert r["loss"] == pytest.approx(s["loss"], rel=LOSS_RTOL)
        assert r["clips_per_s"] > 0
    cfg = json.loads((ddp / "config.json").read_text())
    assert cfg["best_epoch"] == max(log, key=lambda r: r["score"])["epoch"]
    state = torch.load(ddp / "last" / "trainer_state.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["torch_rng_ranks"]) == 2
    assert not list(ddp.glob("*.tmp"))
    # the command line: one JSON result (rank 0's), the model recorded in the workspace once
    result = json.loads(proc.stdout)
    assert result["out"] == str(ddp) and result["epochs_run"] == 2
    assert 'model = "ddp"' in (ddp.parent / "workspace.toml").read_text()
    assert proc.stderr.count("(the default from now on)") == 1


def test_a_two_process_run_resumes_in_one_process(runs, tiny_corpus, tmp_path):
    """The batches do not depend on the number of processes: a 2-process run's state resumes in one
    process (each rank's dropout stream cannot carry over; a note says so)."""
    import shutil

    from slsearch.training.loop import train

    _, _, ddp, _, _ = runs
    shutil.copytree(ddp, tmp_path / "run")
    notes = []
    result = train("tiny", *tiny_corpus, tmp_path / "run", overrides=SETS + ["train.threads=1"], progress=False,
                   notify=lambda kind, payload: notes.append(payload) if kind == "note" else None)
    assert result.epochs_run == 2
    assert any("resuming a run of 2 process(es) with 1" in n for n in notes), notes


def test_ddp_with_parameters_left_unused(tiny_corpus, tmp_path, monkeypatch):
    """Without the LM loss the decoder is unused: DDP looks for unused parameters, and the logit scales
    the model returns as bare parameters must not be taken for unused ones. A process group of one
    runs the whole distributed path in this process."""
    import torch.distributed as dist

    from slsearch.training import distributed, loop

    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{_free_port()}")
    try:
        world = distributed.World(0, 1, 0, torch.device("cpu"), dist.new_group(backend="gloo"), owned=False)
        monkeypatch.setattr(distributed, "setup", lambda device: world)
        result = loop.train("tiny", *tiny_corpus, tmp_path / "out", progress=False,
                            overrides=SETS + ["train.epochs=1", "loss.lm_weight=0"])
    finally:
        dist.destroy_process_group()
    assert result.epochs_run == 1 and (tmp_path / "out" / "model.safetensors").exists()


def test_batch_smaller_than_the_processes_is_refused(tiny_corpus, tmp_path, monkeypatch):
    from slsearch.errors import SlsearchError
    from slsearch.training import distributed, loop

    world = distributed.World(0, 4, 0, torch.device("cpu"), None, owned=False)
    monkeypatch.setattr(distributed, "setup", lambda device: world)
    with pytest.raises(SlsearchError, match="train.batch_size 2 is smaller than the 4 processes"):
        loop.train("tiny", *tiny_corpus, tmp_path / "out", overrides=["train.batch_size=2"], progress=False)
    assert not (tmp_path / "out").exists()


def test_batch_parts_and_gather_shapes():
    from slsearch.training.distributed import World, _split_bounds

    assert _split_bounds(13, 2) == [0, 7, 13]
    assert _split_bounds(5, 3) == [0, 2, 4, 5]
    parts = [World(r, 3, r, torch.device("cpu"), None).part(8) for r in range(3)]
    assert [(p.start, p.stop) for p in parts] == [(0, 3), (3, 6), (6, 8)]
    world = World(0, 2, 0, torch.device("cpu"), None)
    assert [len(b) for b in world.usable([torch.arange(5), torch.arange(1), torch.arange(2)])] == [5, 2]


def test_collate_part_builds_the_slice_of_the_whole_batch(tiny_corpus):
    """A rank's part of a batch: the same clips, stretches and frame padding as the whole batch's rows."""
    import numpy as np

    from slsearch.data.manifest import read_manifest
    from slsearch.models.tokenizer import TextTokenizer
    from slsearch.training.data import collate, load_features

    class Identity:
        def prepare(self, pose):
            return pose.reshape(pose.shape[0], -1)

    clips = read_manifest(tiny_corpus[0])[:9]
    data = load_features(clips, Identity(), 4, tiny_corpus[0])
    tok = TextTokenizer.from_corpus(data.texts, 100, 16)
    idx = np.array([3, 1, 4, 0, 8, 5, 2])
    whole = collate(data, idx, tok, np.random.default_rng(7), 200, 0.3)
    for part in (slice(0, 4), slice(4, 7)):
        half = collate(data, idx, tok, np.random.default_rng(7), 200, 0.3, part=part)
        assert half["features"].shape[1] == whole["features"].shape[1]
        torch.testing.assert_close(half["features"], whole["features"][part], rtol=0, atol=0, equal_nan=True)
        assert torch.equal(half["lengths"], whole["lengths"][part])


if __name__ == "__main__":  # the torchrun worker: RECORD, then the slsearch command line
    from slsearch.cli import app

    record_path, *cli_args = sys.argv[1:]
    train_recording(record_path, lambda: app(cli_args, standalone_mode=False))
