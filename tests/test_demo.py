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
    again = run_demo(workdir, recipe="train/tiny.toml", limit=LIMIT, progress=False)
    out = capsys.readouterr().out
    assert out.count(": reused") == 3  # corpus, model and index
    assert again["eval"] == first["eval"]
    assert json.dumps(again["queries"]) == json.dumps(first["queries"])
