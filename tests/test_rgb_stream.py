"""The RGB stream (issue 18 c): hand and face crops cut around the landmarks, cached beside the pose, a CNN front
end that masks what was not seen, the recipe's refusal of pose-only data, and real How2Sign clips end to end."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data import layout as L
from slsearch.data.crops import CROP_SIZE, FLOOR, MARGIN, crop_boxes, crops_path, cut_crops
from slsearch.data.features import FEATURE_DIM
from slsearch.data.pose_files import Crops, PoseSequence, resample
from slsearch.errors import SlsearchError
from slsearch.models.video_tower import PoseFrontEnd, RgbCropFrontEnd, VideoTower

runner = CliRunner()
W, H = 200, 100  # a synthetic frame
D = 16


def _pose(left_hand=(0.2, 0.3), face=(0.5, 0.25), spread=0.01) -> np.ndarray:
    """One frame's pose: shoulders 80 px apart, a left hand and a face as small point clouds, no right hand."""
    pose = np.full((L.N_LANDMARKS, 3), np.nan, np.float32)
    pose[L.LEFT_SHOULDER] = (0.7, 0.6, 0)
    pose[L.RIGHT_SHOULDER] = (0.3, 0.6, 0)
    rng = np.random.default_rng(0)
    for part, (x, y) in ((L.LEFT_HAND, left_hand), (L.FACE, face)):
        n = part.stop - part.start
        pose[part, 0] = x + rng.uniform(-spread, spread, n)
        pose[part, 1] = y + rng.uniform(-spread, spread, n)
        pose[part, 2] = 0
    return pose


def test_a_crop_lands_where_the_landmarks_are_and_a_missing_hand_is_flagged():
    pose = _pose()
    frame = np.zeros((H, W, 3), np.uint8)
    frame[25:35, 35:45] = (255, 0, 0)  # red around the left hand (40, 30) px
    frame[20:30, 95:105] = (0, 255, 0)  # green around the face (100, 25) px
    images, present = cut_crops(frame, pose)
    assert images.shape == (3, CROP_SIZE, CROP_SIZE, 3) and present.tolist() == [True, False, True]
    assert not images[1].any()  # the right hand was not seen: zeros
    c = CROP_SIZE // 2
    assert tuple(images[0, c, c]) == (255, 0, 0) and tuple(images[2, c, c]) == (0, 255, 0)
    assert images[0, ..., 1].max() == 0  # no green face in the hand's crop: it is cut around the hand only
    boxes = crop_boxes(pose, W, H)
    shoulder = 80.0
    assert boxes[0, 2] == pytest.approx(FLOOR * shoulder)  # a hand a few pixels wide gets the floor size
    assert boxes[0, 0] + boxes[0, 2] / 2 == pytest.approx(40, abs=2)
    wide = _pose(left_hand=(0.5, 0.5), spread=0.2)  # 80 x 40 px of landmarks: the margin, not the floor
    extent = np.ptp(wide[L.LEFT_HAND, :2] * (W, H), axis=0).max()
    assert crop_boxes(wide, W, H)[0, 2] == pytest.approx(extent * MARGIN)


def test_a_box_off_the_frame_is_black_there_and_crops_follow_resampling():
    frame = np.full((H, W, 3), 200, np.uint8)
    images, present = cut_crops(frame, _pose(left_hand=(0.0, 0.5)))  # half of the box lies left of the frame
    assert present[0] and not images[0, :, :CROP_SIZE // 2 - 2].any() and images[0, :, CROP_SIZE // 2 + 2:].all()
    crops = Crops(np.arange(10, dtype=np.uint8)[:, None, None, None, None] * np.ones((1, 3, 2, 2, 3), np.uint8),
                  np.ones((10, 3), bool))
    seq = resample(PoseSequence(np.zeros((10, L.N_LANDMARKS, 3), np.float32), 50.0, crops), 25.0)
    assert seq.crops.images[:, 0, 0, 0, 0].tolist() == [0, 2, 4, 6, 8]  # on the pose's frame clock


def _tower() -> VideoTower:
    torch.manual_seed(0)
    return VideoTower(PoseFrontEnd(D, FEATURE_DIM, 0.0), D, 3, 1, 2, 32, 0.0, D, D,
                      more_streams=[RgbCropFrontEnd(D, 0.0)]).eval()


def test_the_rgb_stream_masks_clips_without_crops_and_never_looks_at_unseen_pixels():
    tower = _tower()
    fe = tower.front_end
    assert fe.needs_crops and list(fe.inputs()) == ["pose", "rgb_crops"]
    T = 12
    pose = np.repeat(_pose()[None], T, 0)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (T, 3, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    present = np.ones((T, 3), bool)
    present[:, 1] = False
    with_crops = fe.prepare(PoseSequence(pose, 25.0, Crops(images, present)))
    without = fe.prepare(pose)  # a pose file: no video, every crop masked
    assert with_crops.shape == without.shape == (T, FEATURE_DIM + 3 * CROP_SIZE ** 2 * 3 + 3)
    assert not without[:, FEATURE_DIM:].any()
    other = images.copy()
    other[:, 1] = rng.integers(0, 256, other[:, 1].shape)  # other pixels, only in the crop flagged unseen
    garbage = fe.prepare(PoseSequence(pose, 25.0, Crops(other, present)))
    with torch.no_grad():
        a = tower(torch.tensor(with_crops)[None], torch.tensor([T]))
        b = tower(torch.tensor(garbage)[None], torch.tensor([T]))
        batch = torch.zeros(2, T + 9, with_crops.shape[1])
        batch[0, :T], batch[1, :T] = torch.tensor(without), torch.tensor(with_crops)
        both = tower(batch, torch.tensor([T, T]))
        masked = tower(torch.tensor(without)[None], torch.tensor([T]))
    assert torch.equal(a["global"], b["global"])
    assert torch.isfinite(masked["global"]).all() and a["tokens"].shape[1] == masked["tokens"].shape[1] == T // 4
    torch.testing.assert_close(both["global"][0], masked["global"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both["global"][1], a["global"][0], atol=1e-5, rtol=1e-5)


def test_a_pose_only_tower_prepares_and_names_its_weights_as_before():
    torch.manual_seed(0)
    tower = VideoTower(PoseFrontEnd(D, FEATURE_DIM, 0.0), D, 3, 1, 2, 32, 0.0, D, D,
                       more_streams=[PoseFrontEnd(D, FEATURE_DIM, 0.0)])
    pose = np.repeat(_pose()[None], 8, 0)
    assert tower.columns is None and not tower.front_end.needs_crops
    assert np.array_equal(tower.front_end.prepare(pose), PoseFrontEnd(D).prepare_own(pose))
    assert not any("feeds" in n for n in tower.state_dict())


def test_a_recipe_with_the_rgb_stream_is_refused_on_pose_files_before_training(tiny_corpus, tmp_path):
    from slsearch.training.loop import train
    from slsearch.training.recipe import load_recipe

    assert load_recipe("tiny", ['model.streams=["pose", "rgb_crops"]']).model.streams == ["pose", "rgb_crops"]
    with pytest.raises(SlsearchError, match=r"train\.jsonl: model.streams has rgb_crops, which needs videos, but none "
                                            r"of its 40 clips is a video"):
        train("tiny", *tiny_corpus, tmp_path / "run", overrides=['model.streams=["pose", "rgb_crops"]'],
              progress=False)
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


# --- real How2Sign clips: extracted, cropped, cached, trained, indexed, searched -------------------------

SHORTEST = ["_15CDIexNDM_0-5-rgb_front", "_0fO5ETSwyg_1-5-rgb_front", "_0fO5ETSwyg_2-5-rgb_front",
            "_15CDIexNDM_5-5-rgb_front"]  # 0.6 to 1.3 s each
TEXTS = ["you have used waterproof mascara", "now how do you remove it", "a great treat for kids",
         "everybody likes chocolate", "painting the wall"]


def test_real_how2sign_clips_feed_the_rgb_stream_end_to_end(shared_data, tmp_path, monkeypatch):
    from slsearch.data import crops as crops_module, extract
    from slsearch.data.extract import cache_key
    from slsearch.data.manifest import Clip, write_manifest
    from slsearch.data.pose_files import save_pose_npz
    from slsearch.data.poses import load_pose
    from slsearch.training.loop import train

    clips = [Clip(id=n, path=shared_data / f"how2sign/clips/{n}.mp4", text=t) for n, t in zip(SHORTEST, TEXTS)]
    first = [load_pose(c, crops=True) for c in clips]
    for c, seq in zip(clips, first):
        assert seq.crops is not None and len(seq.crops.images) == seq.frames
        assert seq.crops.present[:, 2].mean() > 0.9, c.id  # the face is seen in (nearly) every frame
        assert seq.crops.present[:, :2].any(), c.id  # and a hand somewhere
        assert crops_path(cache_key(c.path, 25.0, None, None)).exists()
    with monkeypatch.context() as m:  # a second load reads both caches: neither MediaPipe nor the decoder runs
        m.setattr(extract, "extract_many", lambda *a, **k: pytest.fail("MediaPipe ran again"))
        m.setattr(crops_module, "video_crops", lambda *a, **k: pytest.fail("crops were cut again"))
        again = load_pose(clips[0], crops=True)
    assert np.array_equal(again.crops.images, first[0].crops.images)

    # a pose file among the videos: it trains with its RGB stream masked, and the count is told
    pose_file = save_pose_npz(tmp_path / "pose_only.npz", first[1].data, first[1].fps)
    clips.append(Clip(id="pose_only", path=pose_file, text=TEXTS[4]))
    manifest = write_manifest(clips, tmp_path / "clips.jsonl")
    heard = []
    run = tmp_path / "run"
    train("tiny", manifest, manifest, run, overrides=['model.streams=["pose", "rgb_crops"]', "train.epochs=2",
                                                      "loss.lm_weight=0"],
          progress=False, notify=lambda kind, message: heard.append(message))
    assert any("1 of 5 training clips" in m and "RGB stream" in m for m in heard), heard

    r = runner.invoke(app, ["index", str(manifest), "--model", str(run), "--out", str(tmp_path / "idx"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["clips_added"] == 5
    r = runner.invoke(app, ["query", TEXTS[0], "--index", str(tmp_path / "idx"), "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["results"]) == 3

    # a video query reads its crops, from the library and through the server's upload alike
    from fastapi.testclient import TestClient

    from slsearch.index.search import Searcher
    from slsearch.serve.app import create_app

    s = Searcher(tmp_path / "idx")
    with_crops = s.search_video(clips[0].path, k=3, target="clips")
    masked = s.search_video(load_pose(clips[0]), k=3, target="clips")  # the same pose without its crops
    assert [h.score for h in with_crops] != pytest.approx([h.score for h in masked], abs=1e-4)
    with TestClient(create_app(tmp_path / "idx")) as client, open(clips[0].path, "rb") as f:
        r = client.post("/api/search/clip", params={"target": "clips", "k": 3}, files={"file": ("c.mp4", f, "video/mp4")})
    assert r.status_code == 200, r.text
    assert [h["score"] for h in r.json()["results"]] == pytest.approx([h.score for h in with_crops], abs=1e-4)


def test_extraction_workers_cut_the_crops_so_loading_only_reads_them(shared_data, tmp_path, monkeypatch):
    """extract_many(crops=True), as `index` and `train` call it for a model with an RGB stream, caches the
    crops in the worker processes; loading then cuts none in the main process."""
    from slsearch.data import crops as crops_module
    from slsearch.data.extract import cache_key, extract_many
    from slsearch.data.manifest import Clip
    from slsearch.data.poses import load_pose

    video = shared_data / "video/signer_58frames.mp4"
    clip = Clip(id="signer", path=video, text="x")
    [result] = extract_many([clip], workers=1, cache_dir=tmp_path, crops=True)
    assert result.error is None and result.frames > 0
    assert crops_path(cache_key(video, 25.0, None, None), tmp_path).exists()
    monkeypatch.setattr(crops_module, "video_crops", lambda *a, **k: pytest.fail("crops cut in the main process"))
    seq = load_pose(clip, cache_dir=tmp_path, crops=True)
    assert seq.crops is not None and len(seq.crops.images) == seq.frames == result.frames
    assert seq.crops.present[:, 2].any()  # the face
    # cut from the frames MediaPipe saw (one decoding), they equal those cut later from the cached pose
    [again] = extract_many([clip], workers=1, cache_dir=tmp_path / "pose-only")
    monkeypatch.undo()
    later = load_pose(clip, cache_dir=tmp_path / "pose-only", crops=True)
    assert np.array_equal(later.data, seq.data, equal_nan=True)
    assert np.array_equal(later.crops.images, seq.crops.images)
    assert np.array_equal(later.crops.present, seq.crops.present)
