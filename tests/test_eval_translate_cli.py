"""`slsearch eval` (index and checkpoint + manifest, both protocols, --bleu) and `slsearch translate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.eval.retrieval import evaluate_index, evaluate_model

runner = CliRunner()


@pytest.fixture
def paths(tiny_demo):
    workdir, summary = tiny_demo
    return {"index": workdir / "index", "model": workdir / "model", "test": workdir / "corpus" / "test.jsonl",
            "clip": next((workdir / "corpus" / "poses" / "test").glob("*.npz")), "summary": summary}


def test_index_and_checkpoint_evaluations_agree(paths):
    a = evaluate_index(paths["index"], (1, 5, 10), split="test", progress=False)
    b = evaluate_model(paths["model"], paths["test"], (1, 5, 10), progress=False)
    assert a["count"] == b["count"] == 100
    for key in ("paper/t2v_R@1", "paper/v2t_R@5", "dedup/t2v_R@10", "paper/v2t_MedR"):
        # stored float16 token states vs fresh float32 ones: the same up to a rare swapped tie
        assert abs(a["metrics"][key] - b["metrics"][key]) <= 3, key
    assert a["metrics"] == paths["summary"]["eval"]


def test_global_score_is_worse_or_equal_to_cico_at_r10(paths):
    g = evaluate_index(paths["index"], (10,), split="test", score="global", progress=False)["metrics"]
    assert 10 < g["paper/t2v_R@10"] <= 100  # above chance (10 %) too


def test_eval_cli_json_and_table(paths, tmp_path):
    r = runner.invoke(app, ["eval", "--recall", "1,5,10", "--index", str(paths["index"]), "--split", "test",
                            "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["split"] == "test" and report["ks"] == [1, 5, 10] and report["count"] == 100
    assert {"paper/t2v_R@1", "dedup/v2t_MeanR", "distinct_texts"} <= set(report["metrics"])
    out = tmp_path / "eval.json"
    r = runner.invoke(app, ["eval", "--recall", "1,3", "--model", str(paths["model"]), "--manifest",
                            str(paths["test"]), "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    assert "text→video" in r.stdout and "dedup" in r.stdout  # the table, and the file besides
    assert json.loads(out.read_text())["ks"] == [1, 3]
    r = runner.invoke(app, ["eval", "--recall", "1", "--index", str(paths["index"]), "--json", "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == json.loads(out.read_text())  # stdout holds the JSON alone


def test_eval_bad_input(paths, tmp_path, monkeypatch):
    r = runner.invoke(app, ["eval", "--index", str(paths["index"]), "--split", "nope"])
    assert r.exit_code == 2 and "no clips with text in split 'nope'" in r.output
    r = runner.invoke(app, ["eval", "--index", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "missing" in r.output
    r = runner.invoke(app, ["eval", "--recall", "0,5", "--index", str(paths["index"])])
    assert r.exit_code == 2 and "positive" in r.output
    monkeypatch.setenv("SLSEARCH_WORKSPACE", str(tmp_path / "empty.toml"))  # no default index
    r = runner.invoke(app, ["eval"])
    assert r.exit_code == 2 and "--index" in r.output and "slsearch demo" in r.output


def test_eval_bleu_reports_all_metrics(paths):
    r = runner.invoke(app, ["eval", "--bleu", "--model", str(paths["model"]), "--manifest", str(paths["test"]),
                            "--limit", "8", "--beam", "2", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert set(report["metrics"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "chrF", "ROUGE-L"}
    assert report["count"] == 8 and len(report["examples"]) == 5
    assert all(0 <= v <= 100 for v in report["metrics"].values())


def test_translate_pose_file_json_and_attention(paths, tmp_path):
    png = tmp_path / "att.png"
    r = runner.invoke(app, ["translate", str(paths["clip"]), "--model", str(paths["model"]), "--json",
                            "--attention", str(png)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    (t,) = out["translations"]
    assert isinstance(t["translation"], str) and t["id"] == paths["clip"].stem
    if t["translation"]:
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_translate_a_real_video_and_skip_a_bad_file(paths, tmp_path, shared_data):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"nope")
    video = shared_data / "video" / "signer_58frames.mp4"
    r = runner.invoke(app, ["translate", str(video), str(bad), "--model", str(paths["model"]), "--beam", "1",
                            "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert [t["id"] for t in out["translations"]] == ["signer_58frames"]  # MediaPipe, then the decoder
    assert len(out["failures"]) == 1 and "broken.npz" in out["failures"][0]  # reported and skipped


def test_greedy_and_beam_translations_are_deterministic(paths):
    from slsearch.models.checkpoint import load_model
    from slsearch.models.translator import DecodeConfig, translate

    model = load_model(paths["model"])
    pose = np.load(paths["clip"])["pose"]
    a = translate(model, [pose], DecodeConfig(beam=4))[0]
    b = translate(model, [pose], DecodeConfig(beam=4))[0]
    g = translate(model, [pose], DecodeConfig(beam=1))[0]
    assert a.text == b.text and a.score == b.score
    assert a.score >= g.score - 1e-6  # beam search finds at least the greedy hypothesis' normalised score


class _LoopingDecoder(torch.nn.Module):
    """A stand-in decoder that always prefers token 5, then 6, then eos: left alone it loops on 5 6 5 6."""

    def forward(self, memory, memory_mask, seqs, seq_mask):
        logits = torch.full((seqs.shape[0], seqs.shape[1], 10), -10.0)
        logits[..., 5], logits[..., 6], logits[..., 2] = 3.0, 2.0, 0.0
        return logits


def test_no_repeat_ngram_blocks_repeated_ngrams():
    from slsearch.models.translator import beam_search

    memory, mask = torch.zeros(1, 3, 4), torch.ones(1, 3, dtype=torch.bool)
    (free, _), = beam_search(_LoopingDecoder(), memory, mask, bos_id=0, eos_id=2, beam=2, max_len=6)
    assert free == [5, 5, 5, 5, 5, 5]
    (blocked, _), = beam_search(_LoopingDecoder(), memory, mask, bos_id=0, eos_id=2, beam=2, max_len=6,
                                no_repeat_ngram=2)
    bigrams = list(zip(blocked, blocked[1:]))
    assert len(bigrams) == len(set(bigrams)) and len(blocked) == 4  # e.g. 5 5 6 5, then only eos is left
    (unigram, _), = beam_search(_LoopingDecoder(), memory, mask, bos_id=0, eos_id=2, beam=2, max_len=6,
                                no_repeat_ngram=1)
    assert sorted(unigram) == [5, 6]  # every other token is worse than eos once 5 and 6 are used


def test_decoding_settings_come_from_the_checkpoint_and_the_command_line(paths, tmp_path):
    import shutil

    from slsearch.rank import load_retrieval_model
    from slsearch.translation import decode_settings

    model_dir = tmp_path / "model"
    shutil.copytree(paths["model"], model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["recipe"]["decode"] = {"beam": 3, "length_penalty": 1.5, "no_repeat_ngram": 3}
    (model_dir / "config.json").write_text(json.dumps(cfg))
    settings = load_retrieval_model(model_dir).decode
    assert (settings.beam, settings.length_penalty, settings.no_repeat_ngram) == (3, 1.5, 3)
    # options given override the checkpoint's, the others keep its values
    mixed = decode_settings(settings, beam=None, length_penalty=None, no_repeat_ngram=0)
    assert (mixed.beam, mixed.length_penalty, mixed.no_repeat_ngram) == (3, 1.5, 0)
    r = runner.invoke(app, ["translate", str(paths["clip"]), "--model", str(model_dir), "--json",
                            "--no-repeat-ngram", "0"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert (out["beam"], out["length_penalty"], out["no_repeat_ngram"]) == (3, 1.5, 0)
    r = runner.invoke(app, ["eval", "--bleu", "--model", str(model_dir), "--manifest", str(paths["test"]),
                            "--limit", "4", "--json"])
    report = json.loads(r.output)
    assert (report["beam"], report["length_penalty"], report["no_repeat_ngram"]) == (3, 1.5, 3)
    r = runner.invoke(app, ["translate", str(paths["clip"]), "--model", str(model_dir), "--length-penalty", "-1"])
    assert r.exit_code == 2 and "--length-penalty" in r.output
