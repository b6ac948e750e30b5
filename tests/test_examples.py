"""examples/: the walk-through runs end to end with a tiny setting; the example manifest parses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from slsearch.data.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]


def test_example_manifest_parses():
    clips = read_manifest(ROOT / "examples" / "manifest.jsonl")
    assert [c.split for c in clips] == ["train", "test", "dev", "test"]
    assert clips[0].start == 12.4 and clips[0].end == 17.9
    assert clips[2].path == ROOT / "examples" / "frames" / "01April_2010_Thursday_heute-6697"


def test_walkthrough_runs(tmp_path):
    slsearch = Path(sys.executable).with_name("slsearch")
    env = {**os.environ, "WORK": str(tmp_path / "w"), "LIMIT": "40", "RECIPE": "tiny",
           "EPOCHS": "3", "SLSEARCH": str(slsearch), "COLUMNS": "120"}
    r = subprocess.run(["bash", str(ROOT / "examples" / "walkthrough.sh")], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "walkthrough done" in r.stdout
    answers = json.loads((tmp_path / "w" / "queries.json").read_text())
    assert [a["query"] for a in answers] == ["wetter morgen", "am wochenende regnet es im norden", "sonne im süden",
                                              "in der nacht frost"]
    assert all(len(a["results"]) == 3 for a in answers)
    report = json.loads((tmp_path / "w" / "eval.json").read_text())
    assert report["count"] == 40 and "paper/t2v_R@1" in report["metrics"]
    assert "removed 1 clip" in r.stdout
