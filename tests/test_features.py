"""Model input features: invariance to where the signer stands, masking, velocities."""

from __future__ import annotations

import numpy as np

from slsearch.data import layout as L
from slsearch.data.features import FEATURE_DIM, FEATURE_LANDMARKS, N_POINTS, pose_to_features


def _pose(T=8, seed=0):
    rng = np.random.default_rng(seed)
    pose = rng.normal(0.5, 0.1, (T, L.N_LANDMARKS, 3)).astype(np.float32)
    pose[:, L.LEFT_SHOULDER, :2] = [0.6, 0.5]
    pose[:, L.RIGHT_SHOULDER, :2] = [0.4, 0.5]
    return pose


def test_shape_and_subset():
    f = pose_to_features(_pose())
    assert f.shape == (8, FEATURE_DIM) and f.dtype == np.float32
    assert N_POINTS == len(set(FEATURE_LANDMARKS)) == 99


def test_invariant_to_position_and_scale_of_the_signer():
    pose = _pose()
    moved = pose.copy()
    moved[..., :2] = (pose[..., :2] - 0.5) * 0.5 + [0.3, 0.7]  # smaller, elsewhere in the frame
    np.testing.assert_allclose(pose_to_features(pose), pose_to_features(moved), atol=1e-4)


def test_shoulder_centre_maps_to_origin_and_width_to_one():
    f = pose_to_features(_pose())
    i = FEATURE_LANDMARKS.index(L.LEFT_SHOULDER)
    np.testing.assert_allclose(f[:, 2 * i: 2 * i + 2], [[1 / 2 * 1.0, 0.0]] * 8, atol=1e-5)  # (0.6-0.5)/0.2


def test_missing_points_zeroed_and_flagged():
    pose = _pose()
    pose[2, L.LEFT_HAND] = np.nan
    f = pose_to_features(pose)
    assert np.isfinite(f).all()
    i = FEATURE_LANDMARKS.index(L.LEFT_HAND.start)
    mask = f[:, 2 * N_POINTS: 3 * N_POINTS]
    assert mask[2, i] == 0 and mask[1, i] == 1
    assert (f[2, 2 * i: 2 * i + 2] == 0).all()
    vel = f[:, 3 * N_POINTS: 5 * N_POINTS]
    assert (vel[2, 2 * i: 2 * i + 2] == 0).all() and (vel[3, 2 * i: 2 * i + 2] == 0).all()


def test_velocity_is_the_frame_difference():
    pose = _pose()
    pose[:, L.NOSE, 0] = 0.5 + 0.02 * np.arange(8)
    f = pose_to_features(pose)
    vel_x = f[:, 3 * N_POINTS + 2 * FEATURE_LANDMARKS.index(L.NOSE)]
    np.testing.assert_allclose(vel_x[1:], 0.1, atol=1e-5)  # 0.02 / shoulder width 0.2
    assert vel_x[0] == 0


def test_no_shoulders_anywhere_still_gives_features():
    pose = _pose()
    pose[:, L.POSE] = np.nan
    assert np.isfinite(pose_to_features(pose)).all()
