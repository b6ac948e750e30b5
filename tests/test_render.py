"""Skeleton previews: any pose file becomes a video with one frame per pose frame."""

from __future__ import annotations

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data import layout as L
from slsearch.data.pose_files import save_pose_npz
from slsearch.data.synth import SynthSigner
from slsearch.errors import SlsearchError
from slsearch.render import DEFAULT_SIZE, draw_frame, render_file, render_pose


def decoded_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def pose() -> np.ndarray:
    return SynthSigner().sign("MORGEN REGEN", "synth01", "render-test", num_frames=17)


def test_rendered_preview_has_every_frame(tmp_path, pose):
    out = render_pose(pose, tmp_path / "p.mp4", fps=25, size=(200, 240))
    frames = decoded_frames(out)
    assert len(frames) == 17
    assert frames[0].shape == (240, 200, 3)


def test_drawing_shows_the_skeleton_and_skips_missing_points(pose):
    visible = draw_frame(pose[8])
    background = draw_frame(np.full((L.N_LANDMARKS, 3), np.nan, np.float32))
    assert visible.shape == (DEFAULT_SIZE[1], DEFAULT_SIZE[0], 3)
    assert (np.abs(visible.astype(int) - background.astype(int)).sum(-1) > 30).mean() > 0.01
    assert len(np.unique(background.reshape(-1, 3), axis=0)) == 1  # nothing drawn for NaN


def test_render_file_reads_npz_and_the_cli_wraps_it(tmp_path, pose):
    src = save_pose_npz(tmp_path / "clip.npz", pose, 25.0)
    assert len(decoded_frames(render_file(src, tmp_path / "a.mp4"))) == 17
    result = CliRunner().invoke(app, ["render", str(src), str(tmp_path / "b.mp4"), "--size", "160x200"])
    assert result.exit_code == 0, result.output
    frames = decoded_frames(tmp_path / "b.mp4")
    assert len(frames) == 17 and frames[0].shape == (200, 160, 3)


def test_real_pose_file_renders(tmp_path, shared_data):
    out = render_file(shared_data / "pose" / "asl_colin-SAD.pose", tmp_path / "real.mp4")
    frames = decoded_frames(out)
    assert len(frames) == 76 and frames[0].shape[0] == DEFAULT_SIZE[1]
    assert frames[0].shape[1] > frames[0].shape[0]  # a 16:9 source keeps its aspect


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(SlsearchError, match="shape"):
        render_pose(np.zeros((3, 10, 3)), tmp_path / "x.mp4")
    with pytest.raises(SlsearchError, match="not found"):
        render_file(tmp_path / "missing.npz", tmp_path / "x.mp4")
