"""Gloss-to-text ceiling (issue 6): the trainer learns on a tiny gloss corpus and reports the six metrics."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slsearch.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # a benchmark's own module
from gloss2text import Gloss2TextConfig, build_vocab, gloss_batch, read_pairs, train_gloss2text  # noqa: E402


def _subset(src, dst, n):
    rows = [json.loads(line) for line in src.read_text().splitlines()[:n]]
    dst.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return dst


def test_vocab_maps_unknown_glosses_to_unk():
    vocab = build_vocab([["HEUTE", "REGEN"], ["REGEN", "WIND"]])
    ids, mask = gloss_batch([["HEUTE", "SCHNEE"], ["WIND"]], vocab)
    assert vocab == {"<pad>": 0, "<unk>": 1, "HEUTE": 2, "REGEN": 3, "WIND": 4}
    assert ids.tolist() == [[2, 1], [4, 0]]
    assert mask.tolist() == [[True, True], [True, False]]


def test_row_without_gloss_is_named(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps({"id": "a", "text": "hallo .", "gloss": "HALLO"}) + "\n"
                 + json.dumps({"id": "b", "text": "tschüss ."}) + "\n")
    with pytest.raises(InputError, match=r"m\.jsonl: clip 'b' has no gloss"):
        read_pairs(p)


def test_two_epochs_lower_the_loss_and_report_six_metrics(tiny_demo, tmp_path):
    workdir, _ = tiny_demo
    corpus = workdir / "corpus"
    train = _subset(corpus / "train.jsonl", tmp_path / "train.jsonl", 48)
    dev = _subset(corpus / "dev.jsonl", tmp_path / "dev.jsonl", 12)
    test = _subset(corpus / "test.jsonl", tmp_path / "test.jsonl", 12)
    cfg = Gloss2TextConfig(epochs=2, batch_size=8, lr=1e-3, warmup_epochs=0.5, beam=2, threads=1)
    result = train_gloss2text(workdir / "model", train, dev, test, cfg, log=lambda *_: None)

    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert set(result["test"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "chrF", "ROUGE-L"}
    assert all(0.0 <= v <= 100.0 for v in result["test"].values())
    assert result["n_test"] == 12 and result["best_epoch"] in (1, 2)
    assert len(result["examples"]) == 5 and all(isinstance(e["hyp"], str) for e in result["examples"])
