"""The command-line shell: help, version, info, and `extract` on good and bad inputs."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from slsearch import __version__
from slsearch.cli import app
from slsearch.data.pose_files import save_pose_npz
from slsearch.data.poses import load_pose

runner = CliRunner()


def test_help_lists_every_command_with_a_description():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("info", "extract"):
        assert cmd in r.output
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_info_json_reports_versions_and_accelerators():
    r = runner.invoke(app, ["info", "--json"])
    assert r.exit_code == 0
    info = json.loads(r.output)
    assert info["torch"].startswith("2.13.0")
    assert info["mediapipe"] == "0.10.21"
    assert info["gpu_faiss"] in (True, False) and info["torch_threads"] >= 1


def test_extract_pose_files_batch_goes_on_past_bad_files(tmp_path):
    src = tmp_path / "src"
    good = np.random.default_rng(0).random((30, 543, 3)).astype(np.float32)
    save_pose_npz(src / "good.npz", good, fps=50)
    np.save(src / "wrong_shape.npy", np.zeros((5, 10, 3), np.float32))
    out = tmp_path / "out"
    r = runner.invoke(app, ["extract", str(src), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert (summary["total"], summary["ok"], summary["failed"]) == (2, 1, 1)
    assert "wrong_shape.npy" in summary["failures"][0] and "shape" in summary["failures"][0]
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert rows == [{"id": "good", "path": "good.npz", "num_frames": 15}]  # 50 fps resampled to 25
    assert load_pose(out / "good.npz", fps=None).frames == 15
    # --strict turns any failure into a non-zero exit
    r = runner.invoke(app, ["extract", str(src), "--out", str(out), "--strict"])
    assert r.exit_code == 1 and "wrong_shape.npy" in r.output


def test_extract_exit_code_when_nothing_succeeds_and_for_missing_inputs(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    r = runner.invoke(app, ["extract", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "bad.npz" in r.output
    r = runner.invoke(app, ["extract", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "nowhere: not found" in r.output
    assert "Traceback" not in r.output
