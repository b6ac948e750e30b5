"""`slsearch demo` end to end with a tiny setting: far above chance, queries answer, second run reuses."""

from __future__ import annotations

import json

import pytest
from conftest import DEMO_LIMIT as LIMIT

from slsearch.demo import run_demo


@pytest.fixture
def demo(tiny_demo):
    return tiny_demo


def test_demo_retrieval_is_far_above_chance(demo):
    _, s = demo
    m = s["eval"]
    assert m["count"] == LIMIT
    for d in ("t2v", "v2t"):
        assert m[f"paper/{d}_R@1"] >= 4, m  # >= 4x chance
        assert m[f"paper/{d}_R@10"] >= 30, m  # >= 3x chance
        assert m[f"dedup/{d}_R@10"] >= m[f"paper/{d}_R@10"]


def test_demo_queries_return_results_and_translations(demo, capsys):
    workdir, s = demo
    assert set(s["queries"]) >= {"wetter morgen"}
    for hits in s["queries"].values():
        assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
        assert all(h["text"] for h in hits)
        assert hits[0]["score"] >= hits[-1]["score"]
    assert len(s["video_query"]["results"]) == 5
    assert len(s["translations"]) == 5
    for name in ("corpus/manifest.jsonl", "model/config.json", "index/index.json"):
        assert (workdir / name).exists(), name


def test_second_run_reuses_every_artefact(demo, capsys):
    workdir, first = demo
    capsys.readouterr()
    again = run_demo(workdir, recipe="tiny", limit=LIMIT, progress=False)
    out = capsys.readouterr().out
    assert out.count(": reused") == 3  # corpus, model and index
    assert again["eval"] == first["eval"]
    assert json.dumps(again["queries"]) == json.dumps(first["queries"])


def test_demo_json_is_alone_on_stdout(demo, tmp_path):
    from typer.testing import CliRunner

    from slsearch.cli import app

    workdir, first = demo
    out = tmp_path / "demo.json"
    r = CliRunner().invoke(app, ["demo", "--workdir", str(workdir), "--recipe", "tiny", "--limit", str(LIMIT),
                                 "--json", "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)  # the tables went to stderr
    assert summary["eval"] == first["eval"] and json.loads(out.read_text())["eval"] == first["eval"]
    assert ": reused" in r.stderr


def test_demo_unknown_recipe_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from slsearch.cli import app

    r = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path / "d"), "--recipe", "nope"])
    assert r.exit_code == 2 and "unknown recipe 'nope'" in r.output and "demo" in r.output
    assert not (tmp_path / "d").exists()  # checked before anything is made
