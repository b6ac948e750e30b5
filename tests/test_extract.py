"""MediaPipe Holistic extraction on real signing videos, the cache, and a batch with broken files."""

from __future__ import annotations

import numpy as np
import pytest

from slsearch.data import layout as L
from slsearch.data.extract import extract_many
from slsearch.data.pose_files import read_npz
from slsearch.data.manifest import Clip
from slsearch.data.poses import load_pose

H2S = ["_0fO5ETSwyg_0-5-rgb_front", "_15CDIexNDM_2-5-rgb_front", "_0-JkwZ9o4Q_9-5-rgb_front"]


@pytest.fixture(scope="module")
def batch(shared_data, tmp_path_factory, video_writer):
    """One parallel batch: real clips, a corrupt file, a missing one, and a video with nobody in it."""
    tmp = tmp_path_factory.mktemp("extract")
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(b"\x00" * 4096)
    blank = video_writer(tmp / "blank.mp4", np.full((10, 120, 160, 3), 90, np.uint8))
    clips = [Clip(id="signer", path=shared_data / "video/signer_58frames.mp4")]
    clips += [Clip(id=n, path=shared_data / f"how2sign/clips/{n}.mp4") for n in H2S]
    clips += [Clip(id="corrupt", path=corrupt), Clip(id="missing", path=tmp / "missing.mp4"),
              Clip(id="blank", path=blank)]
    cache = tmp / "cache"
    first = extract_many(clips, workers=2, fps=None, cache_dir=cache)
    second = extract_many(clips, workers=2, fps=None, cache_dir=cache)
    return {r.clip.id: r for r in first}, {r.clip.id: r for r in second}


def test_person_in_every_frame_of_the_real_signer_and_hands_in_about_a_third(batch):
    r = batch[0]["signer"]
    assert r.error is None and r.frames == 58
    pose = read_npz(r.cache_file).data
    assert pose.shape == (58, L.N_LANDMARKS, 3)
    assert np.isfinite(pose[:, L.POSE, :2]).all()  # the person is found in every frame
    hands = np.isfinite(pose[:, L.LEFT_HAND, 0]).all(1) | np.isfinite(pose[:, L.RIGHT_HAND, 0]).all(1)
    assert 0.15 <= hands.mean() <= 0.6  # hands are visible in only about a third of its frames
    shoulders = pose[:, [L.LEFT_SHOULDER, L.RIGHT_SHOULDER], :2]  # image-normalised, inside the frame
    assert (shoulders > 0).all() and (shoulders < 1).all()


def test_at_least_one_hand_in_most_frames_of_how2sign_clips(batch):
    for name in H2S:
        r = batch[0][name]
        assert r.error is None, r.error
        pose = read_npz(r.cache_file).data
        hands = np.isfinite(pose[:, L.LEFT_HAND, 0]).all(1) | np.isfinite(pose[:, L.RIGHT_HAND, 0]).all(1)
        assert hands.mean() > 0.5, (name, hands.mean())
        assert np.isfinite(pose[:, L.FACE, 0]).all(1).mean() > 0.9


def test_bad_files_are_reported_one_line_each_and_the_batch_goes_on(batch):
    first = batch[0]
    assert "not a readable video" in first["corrupt"].error and "corrupt.mp4" in first["corrupt"].error
    assert first["missing"].error.endswith("missing.mp4: file not found")
    assert "no person detected" in first["blank"].error and "blank.mp4" in first["blank"].error
    assert all("\n" not in r.error for r in first.values() if r.error)
    assert sum(r.error is None for r in first.values()) == 4


def test_second_run_comes_from_the_cache_unchanged(batch):
    first, second = batch
    for name in ["signer", *H2S]:
        assert not first[name].cached and second[name].cached
        a, b = read_npz(first[name].cache_file).data, read_npz(second[name].cache_file).data
        assert np.array_equal(a, b, equal_nan=True)


def test_load_pose_of_a_video_resamples_to_25_fps(shared_data, tmp_path):
    seq = load_pose(shared_data / "video/signer_58frames.mp4", cache_dir=tmp_path)  # 58 frames at 29.9 fps = 1.94 s
    assert seq.fps == 25 and seq.frames == 49


def _own_cores(_):
    import os

    return sorted(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getaffinity"), reason="core affinity is Linux only")
def test_extraction_workers_take_a_core_each(monkeypatch):
    """The pool pins each of its workers to its own core when there are enough (and not when told not to)."""
    import os
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from slsearch.data.extract import start_worker, worker_cores

    cores = sorted(os.sched_getaffinity(0))
    assert worker_cores(1) is None and worker_cores(len(cores) + 1) is None
    if len(cores) < 2:
        pytest.skip("one core: nothing to pin")
    assert worker_cores(2) == cores[:2]
    monkeypatch.setenv("SLSEARCH_PIN_WORKERS", "0")
    assert worker_cores(2) is None
    context = get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context, initializer=start_worker,
                             initargs=(context.Value("i", 0), cores[:2])) as pool:
        # slow enough tasks that both workers start and take some
        seen = {tuple(c) for c in pool.map(_own_cores, range(8))}
    assert seen <= {(cores[0],), (cores[1],)} and len(seen) >= 1
