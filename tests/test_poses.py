"""Pose files: real .pose files in both layouts, .npz/.npy round trips, resampling, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from slsearch.data import layout as L
from slsearch.data.features import FEATURE_LANDMARKS
from slsearch.data.manifest import Clip
from slsearch.data.pose_files import PoseSequence, cut, resample, save_pose_npz
from slsearch.data.poses import load_pose
from slsearch.errors import InputError


def test_every_real_pose_file_loads_into_the_543_layout(shared_data):
    files = sorted((shared_data / "pose").rglob("*.pose"))
    assert len(files) == 15  # 11 in pose/ and 4 in sgsl_lexicon/
    for f in files:
        seq = load_pose(f, fps=None)
        assert seq.data.shape[1:] == (L.N_LANDMARKS, 3), f
        assert seq.data.dtype == np.float32
        # the upper body is seen in every file, and the hands in at least some frames
        assert np.isfinite(seq.data[:, L.LEFT_SHOULDER, :2]).all(), f
        hands = np.isfinite(seq.data[:, L.LEFT_HAND, 0]).any(1) | np.isfinite(seq.data[:, L.RIGHT_HAND, 0]).any(1)
        assert hands.mean() > 0.15, f  # isolated signs: hands rest out of view before and after
        if "openpose" not in f.name:  # MediaPipe layouts: image-normalised (legs may lie below the frame)
            upper = seq.data[:, FEATURE_LANDMARKS, :2]
            xy = upper[np.isfinite(upper)]
            assert -1 < xy.min() and xy.max() < 2, f  # pixels would be in the hundreds


def test_full_mediapipe_pose_maps_points_by_name(shared_data):
    seq = load_pose(shared_data / "pose/asl_colin-SAD.pose", fps=None)
    assert seq.fps == pytest.approx(30.05, abs=0.01) and seq.frames == 76
    d = seq.data
    # the subject's left shoulder appears on the image's right: larger x than the right shoulder
    assert np.nanmedian(d[:, L.LEFT_SHOULDER, 0]) > np.nanmedian(d[:, L.RIGHT_SHOULDER, 0])
    # the nose sits above the shoulders (smaller y)
    assert np.nanmedian(d[:, L.NOSE, 1]) < np.nanmedian(d[:, L.LEFT_SHOULDER, 1])
    assert np.isfinite(d[:, L.FACE, 0]).all()  # 468 face points, the irises of 478-point meshes dropped


def test_reduced_holistic_layout_leaves_unknown_points_missing(shared_data):
    seq = load_pose(shared_data / "pose/mediapipe.pose", fps=None)  # 8 pose + 128 face points only
    d = seq.data
    assert np.isfinite(d[:, L.RIGHT_SHOULDER, 0]).all()
    assert np.isnan(d[:, L.NOSE, 0]).all()  # not among its 8 pose points
    face_seen = np.isfinite(d[0, L.FACE, 0]).sum()
    assert 100 <= face_seen <= 128


def test_npz_round_trip_and_npy(tmp_path):
    data = np.random.default_rng(0).random((12, 543, 3)).astype(np.float32)
    data[3, 501:522] = np.nan
    p = save_pose_npz(tmp_path / "a.npz", data, fps=30)
    seq = load_pose(p, fps=None)
    assert seq.fps == 30 and np.array_equal(seq.data, data, equal_nan=True)
    np.save(tmp_path / "b.npy", data)
    assert load_pose(tmp_path / "b.npy", fps=None).frames == 12


@pytest.mark.parametrize("shape", [(10, 500, 3), (10, 543), (0, 543, 3)])
def test_wrong_shapes_are_refused_with_the_file_named(tmp_path, shape):
    p = tmp_path / "bad.npy"
    np.save(p, np.zeros(shape, np.float32))
    with pytest.raises(InputError) as e:
        load_pose(p)
    assert str(p) in str(e.value)


def test_npz_without_pose_key_and_garbage_files(tmp_path):
    np.savez(tmp_path / "x.npz", keypoints=np.zeros((3, 543, 3)))
    with pytest.raises(InputError, match="no 'pose' array"):
        load_pose(tmp_path / "x.npz")
    (tmp_path / "y.pose").write_bytes(b"not a pose file")
    with pytest.raises(InputError, match="not a readable .pose"):
        load_pose(tmp_path / "y.pose")
    (tmp_path / "z.txt").write_text("hi")
    with pytest.raises(InputError, match="unsupported file type"):
        load_pose(tmp_path / "z.txt")


def test_resample_and_cut():
    data = np.arange(50, dtype=np.float32)[:, None, None] * np.ones((1, 543, 3), np.float32)
    seq = PoseSequence(data, 50.0)
    half = resample(seq, 25.0)
    assert half.frames == 25 and half.data[1, 0, 0] == 2  # every second frame
    assert cut(seq, 0.2, 0.4, "x").frames == 10
    with pytest.raises(InputError, match="select no frames"):
        cut(seq, 2.0, 3.0, "x")


def test_clip_start_end_select_part_of_a_pose_file(tmp_path):
    data = np.zeros((100, 543, 3), np.float32)
    p = save_pose_npz(tmp_path / "long.npz", data, fps=25)
    seq = load_pose(Clip(id="c", path=p, start=1.0, end=2.0))
    assert seq.frames == 25


def test_load_pose_from_array_resamples_to_default_rate():
    seq = load_pose(np.zeros((10, 543, 3), np.float32))
    assert seq.fps == 25 and seq.frames == 10
