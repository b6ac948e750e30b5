"""Decoding: generated videos, real How2Sign clips, PHOENIX frame folders, and broken files."""

from __future__ import annotations

import pytest

from slsearch.data.video import content_hash, iter_frames, probe
from slsearch.errors import InputError


def test_generated_video_frame_count_and_size(make_video):
    path = make_video(n_frames=30, fps=25, size=(64, 96))
    info = probe(path)
    assert info.fps == pytest.approx(25)
    assert (info.width, info.height) == (96, 64)
    frames = list(iter_frames(path))
    assert len(frames) == 30
    assert frames[0].shape == (64, 96, 3) and frames[0].dtype.name == "uint8"


def test_resampling_and_cutting(make_video):
    path = make_video(n_frames=50, fps=25)  # 2 seconds
    assert len(list(iter_frames(path, fps=12.5))) == 25
    assert len(list(iter_frames(path, fps=50))) == 100  # upsampling repeats frames
    assert len(list(iter_frames(path, start=0.4, end=1.2))) == 20
    with pytest.raises(InputError, match="not after start"):
        list(iter_frames(path, start=1.0, end=0.5))


def test_real_how2sign_clip_decodes_with_its_frame_count(shared_data):
    clip = shared_data / "how2sign/clips/_0fO5ETSwyg_0-5-rgb_front.mp4"
    info = probe(clip)
    assert (info.width, info.height, info.fps) == (1280, 720, 24)
    frames = sum(1 for _ in iter_frames(clip))
    assert frames == info.frames == 102


def test_phoenix_frame_folder(shared_data):
    folder = next((shared_data / "phoenix_frames").iterdir())
    frames = list(iter_frames(folder))
    assert len(frames) == 2
    assert frames[0].shape == (260, 210, 3)
    assert probe(folder).fps == 25


def test_corrupt_video_names_file_and_reason(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(InputError) as e:
        list(iter_frames(bad))
    assert str(bad) in str(e.value) and "not a readable video" in str(e.value)


def test_truncated_video_keeps_what_decodes(tmp_path, make_video):
    path = make_video(n_frames=60)
    data = path.read_bytes()
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(data[: len(data) // 2])
    try:
        n = sum(1 for _ in iter_frames(cut))
    except InputError as e:  # mp4 index at the end may be lost: then it is unreadable, said clearly
        assert str(cut) in str(e)
    else:
        assert 0 < n <= 60


def test_unsupported_extension_and_missing_file(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(InputError, match="unsupported video type"):
        probe(txt)
    with pytest.raises(InputError, match="file not found"):
        list(iter_frames(tmp_path / "missing.mp4"))


def test_empty_frame_folder(tmp_path):
    (tmp_path / "frames").mkdir()
    with pytest.raises(InputError, match="no PNG/JPG"):
        list(iter_frames(tmp_path / "frames"))


def test_content_hash_follows_content_not_name(tmp_path, make_video):
    a = make_video("a.mp4", n_frames=10)
    b = tmp_path / "renamed.mp4"
    b.write_bytes(a.read_bytes())
    c = make_video("c.mp4", n_frames=11)
    assert content_hash(a) == content_hash(b) != content_hash(c)
