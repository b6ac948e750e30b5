"""The commands as people type them (issue 16, part 1): `slsearch.toml` holds the last trained model and the
last built index; `index`, `query`, `eval` and `translate` need no other argument once there is a model."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slsearch import workspace
from slsearch.cli import app

runner = CliRunner()


def run(*args: str, code: int = 0):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == code, r.output
    return r


def one_line(r) -> str:
    """The error of a failed command: exactly one line."""
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1, r.output
    return lines[0]


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A fresh working folder of the user's own: no workspace variables, no slsearch.toml anywhere above."""
    for name in ("SLSEARCH_WORKSPACE", "SLSEARCH_MODEL", "SLSEARCH_INDEX"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert workspace.find_file() == folder / "slsearch.toml"
    return folder


def read_toml(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def test_train_then_the_four_commands_as_typed(here, tiny_corpus):
    train, dev = tiny_corpus
    run("train", "--recipe", "tiny", "--manifest", train, "--dev", dev, "--out", "runs/t",
        "--set", "train.epochs=2", "--set", "loss.lm_weight=0")
    assert read_toml(here / "slsearch.toml") == {"model": "runs/t"}  # relative to the file's folder

    r = run("index", dev, "--json")  # a manifest: indexes/<its stem>
    s = json.loads(r.stdout)
    assert Path(s["out"]) == here / "indexes" / "dev" and s["clips_total"] == 10
    assert read_toml(here / "slsearch.toml") == {"model": "runs/t", "index": "indexes/dev"}

    r = run("query", "wetter morgen", "--json")
    assert len(json.loads(r.stdout)["results"]) == 10

    r = run("eval", "--recall", "1,5,10", "--json")
    report = json.loads(r.stdout)
    assert report["count"] == 10 and report["split"] is None and Path(report["source"]) == here / "indexes" / "dev"
    assert "no test split" in report["split_note"]  # said in the report
    r = run("eval", "--recall", "1,5,10")
    assert "every clip with a sentence" in r.stdout

    clip = next(dev.parent.glob("*.npz"))
    r = run("translate", clip, "--json")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert [t["id"] for t in out["translations"]] == [clip.stem]

    # --add without --out adds to the workspace's index
    run("index", train)
    assert read_toml(here / "slsearch.toml")["index"] == "indexes/train"
    s = json.loads(run("index", dev, "--add", "--json").stdout)
    assert Path(s["out"]) == here / "indexes" / "train" and s["clips_total"] == 50
    # --add takes the model the index was built with, not a later one (two models cannot share an index)
    other = here / "runs" / "later"
    other.mkdir()
    workspace.record(model=other)
    assert workspace.index_model(None, here / "indexes" / "train", add=True) == here / "runs" / "t"
    assert workspace.index_model(None, here / "indexes" / "train", add=False) == other


def test_after_the_demo_the_commands_need_no_flags_and_flags_override(here, tiny_demo):
    from conftest import DEMO_LIMIT

    demo_dir, _ = tiny_demo
    r = run("demo", "--workdir", demo_dir, "--recipe", "tiny", "--limit", DEMO_LIMIT)  # reuses every step
    ws = read_toml(here / "slsearch.toml")
    assert Path(ws["model"]) == demo_dir / "model" and Path(ws["index"]) == demo_dir / "index"  # outside: absolute
    assert 'slsearch query "wetter morgen" -k 10' in r.stdout and "slsearch eval --recall 1,5,10\n" in r.stdout
    assert "--index" not in r.stdout.split("go on with the ordinary commands")[1]

    assert len(json.loads(run("query", "wetter morgen", "--json", "-k", "3").stdout)["results"]) == 3
    report = json.loads(run("eval", "--recall", "1,5,10", "--json").stdout)
    assert report["split"] == "test" and report["count"] == DEMO_LIMIT and "test split" in report["split_note"]
    clip = next((demo_dir / "corpus" / "poses" / "test").glob("*.npz"))
    out = json.loads(run("translate", clip, "--json").stdout.strip().splitlines()[-1])
    status = json.loads(run("status", "--json").stdout)
    assert out["model"] == status["model"]["hash"] == status["index"]["checkpoint_hash"]
    assert status["index"]["matches_model"] is True
    assert status["index"]["splits"] == {"dev": DEMO_LIMIT, "test": DEMO_LIMIT, "train": DEMO_LIMIT}
    assert status["index"]["clips"] == 3 * DEMO_LIMIT and status["index"]["sentences"] > 0
    assert status["workspace"] == {"file": str(here / "slsearch.toml"), "exists": True}
    text = run("status").stdout
    for part in ("slsearch.toml", status["model"]["hash"], "test 100", "the model above"):
        assert part in text, text

    # every flag still overrides
    report = json.loads(run("eval", "--index", demo_dir / "index", "--split", "all", "--json").stdout)
    assert report["count"] == 3 * DEMO_LIMIT and report["split"] is None and "split_note" not in report
    report = json.loads(run("eval", "--manifest", demo_dir / "corpus" / "test.jsonl", "--recall", "1",
                            "--json").stdout)  # the workspace's model on a manifest
    assert report["count"] == DEMO_LIMIT and report["checkpoint"] == status["model"]["hash"]
    r = run("query", "wetter morgen", "--index", here / "nope", code=2)
    assert "nope" in one_line(r)
    r = run("translate", clip, "--model", here / "nope", code=2)
    assert "nope" in one_line(r)
    r = run("index", demo_dir / "corpus" / "dev.jsonl", "--model", here / "nope", "--out", "x", code=2)
    assert "nope" in one_line(r)


def test_with_nothing_to_default_to_the_error_names_the_command(here):
    for args, fix in ((["query", "wetter morgen"], "slsearch demo"), (["eval", "--recall", "1,5,10"], "slsearch demo"),
                      (["translate", "clip.mp4"], "slsearch train"), (["index", "videos/"], "slsearch train")):
        line = one_line(run(*args, code=2))
        assert line.startswith("error: no ") and fix in line, line
        assert "slsearch demo" in line
    assert not (here / "slsearch.toml").exists()
    text = run("status").stdout
    assert "not written yet" in text and "slsearch demo" in text
    assert json.loads(run("status", "--json").stdout)["model"]["path"] is None


def test_a_deleted_model_or_index_is_one_clear_line(here):
    (here / "slsearch.toml").write_text('model = "runs/gone"\nindex = "indexes/gone"\n')
    for args, what in ((["translate", "clip.mp4"], "model"), (["index", "videos/"], "model"),
                       (["query", "wetter"], "index"), (["eval"], "index")):
        line = one_line(run(*args, code=2))
        assert f"slsearch.toml names the {what} " in line and "gone" in line and "not there any more" in line, line
        assert ("slsearch train" if what == "model" else "slsearch index") in line and "slsearch demo" in line
    status = json.loads(run("status", "--json").stdout)
    assert status["model"]["exists"] is False and status["model"]["path"] == str(here / "runs" / "gone")
    assert "NOT THERE" in run("status").stdout


def test_environment_variables(here, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("SLSEARCH_WORKSPACE", str(elsewhere))  # a folder: its slsearch.toml
    (elsewhere / "runs" / "m").mkdir(parents=True)
    file = workspace.record(model=elsewhere / "runs" / "m")
    assert file == elsewhere / "slsearch.toml" and not (here / "slsearch.toml").exists()
    assert read_toml(file) == {"model": "runs/m"}
    assert workspace.resolve("model") == elsewhere / "runs" / "m"
    s = json.loads(run("status", "--json").stdout)
    assert s["workspace"]["file"] == str(file) and s["model"]["source"] == str(file)
    assert s["env"]["SLSEARCH_WORKSPACE"] == str(elsewhere)
    # $SLSEARCH_INDEX / $SLSEARCH_MODEL come before the file, the flag before both
    monkeypatch.setenv("SLSEARCH_INDEX", "indexes/missing")
    line = one_line(run("query", "wetter", code=2))
    assert "$SLSEARCH_INDEX names the index indexes/missing" in line
    monkeypatch.setenv("SLSEARCH_MODEL", str(here))
    assert workspace.resolve("model") == here and workspace.resolve("model", "flag") == Path("flag")
    assert workspace.lookup("model").source == "$SLSEARCH_MODEL"


def test_the_file_is_found_in_parent_folders_and_rewritten_in_place(here, monkeypatch):
    (here / "runs" / "a").mkdir(parents=True)
    (here / "slsearch.toml").write_text('# my notes\nmodel = "runs/old"  # old\nmine = 3\n\n[extra]\nkey = "v"\n')
    deeper = here / "sub" / "deeper"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    assert workspace.find_file() == here / "slsearch.toml"
    workspace.record(model="../../runs/a", index=here / "indexes" / 'odd "name"')
    text = (here / "slsearch.toml").read_text()
    assert text.startswith("# my notes\n") and "mine = 3" in text and "[extra]" in text
    assert read_toml(here / "slsearch.toml") == {"model": "runs/a", "index": 'indexes/odd "name"', "mine": 3,
                                                  "extra": {"key": "v"}}
    assert workspace.resolve("model") == here / "runs" / "a"
    assert workspace.index_out(["videos"], None, add=False) == here / "indexes" / "videos"  # beside the file
    assert workspace.index_out([f"{deeper}/", "b.jsonl"], None, add=False) == here / "indexes" / "deeper"
    assert workspace.index_out([".", "b.jsonl"], None, add=False) == here / "indexes" / "deeper"
    assert workspace.index_out(["news.csv"], "mine", add=True) == Path("mine")
    assert not list(here.glob(".slsearch.toml.tmp-*"))


def test_a_broken_workspace_file_is_named(here):
    (here / "slsearch.toml").write_text("model = [1, 2\n")
    line = one_line(run("query", "wetter", code=2))
    assert "slsearch.toml: not valid TOML" in line and "fix it or delete it" in line
    assert workspace.try_record(model="x")[0] is None  # never overwritten
    (here / "slsearch.toml").write_text("index = 3\n")
    assert "index should be a path in quotes" in one_line(run("query", "wetter", code=2))
