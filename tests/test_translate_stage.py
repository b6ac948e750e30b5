"""`slsearch train --stage translate --init RUN`: fine-tunes encoder + decoder, picks the epoch by dev BLEU-4."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.errors import SlsearchError
from slsearch.models.checkpoint import load_model
from slsearch.training.loop import train

runner = CliRunner()


def test_translate_stage_trains_from_a_joint_checkpoint(tiny_demo, tmp_path):
    workdir, _ = tiny_demo
    corpus = workdir / "corpus"
    out = tmp_path / "slt"
    r = runner.invoke(app, ["train", "--stage", "translate", "--init", str(workdir / "model"),
                            "--manifest", str(corpus / "train.jsonl"), "--dev", str(corpus / "dev.jsonl"),
                            "--out", str(out), "--set", "train.epochs=3", "--set", "train.batch_size=16", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output.strip().splitlines()[-1])
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2, 3]
    assert all("BLEU-4" in row and "cico_loss" not in row for row in log)  # LM loss only
    assert log[-1]["lm_loss"] < log[0]["lm_loss"]
    assert result["best_epoch"] == max(log, key=lambda row: row["BLEU-4"])["epoch"]
    cfg = json.loads((out / "config.json").read_text())
    joint = json.loads((workdir / "model" / "config.json").read_text())
    assert cfg["recipe"]["train"]["stage"] == "translate"
    assert cfg["model"] == joint["model"]  # same architecture and tokenizer as the joint run
    model = load_model(out)
    assert model.tokenizer.vocab_size == load_model(workdir / "model").tokenizer.vocab_size


def test_translate_stage_needs_an_init(tiny_demo, tmp_path):
    corpus = tiny_demo[0] / "corpus"
    with pytest.raises(SlsearchError, match="needs train.init"):
        train("translate", corpus / "train.jsonl", corpus / "dev.jsonl", tmp_path / "x", progress=False)
