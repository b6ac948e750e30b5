"""Long videos (issue 20): segmentation by activity, subtitles and windows; indexing a programme as segments;
hits that say when, merged across overlapping windows; the real path through a video of How2Sign clips."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data.long_media import SegmentOptions
from slsearch.data.manifest import read_manifest
from slsearch.data.pose_files import PoseSequence, read_npz, save_pose_npz
from slsearch.data.segments import (Segment, SegmentParams, estimate_shift, plan_segments, segment_by_windows,
                                    segments_from_cues)
from slsearch.data.subtitles import Cue
from slsearch.data.synth.programme import join_clips, write_srt
from slsearch.errors import SlsearchError

runner = CliRunner()
P = SegmentParams()


def boundary_recall(pred: list[Segment], truth: list[Segment], tol: float = 0.5) -> tuple[float, float]:
    """(precision, recall) of segment boundaries (starts and ends) matched one-to-one within `tol` s."""
    pb = sorted([s.start for s in pred] + [s.end for s in pred])
    tb = sorted([s.start for s in truth] + [s.end for s in truth])
    used, hits = set(), 0
    for b in pb:
        near = [j for j in range(len(tb)) if j not in used and abs(tb[j] - b) <= tol]
        if near:
            used.add(min(near, key=lambda j: abs(tb[j] - b)))
            hits += 1
    return hits / max(len(pb), 1), hits / len(tb)


@pytest.fixture(scope="module")
def programme(tiny_demo, tmp_path_factory):
    """12 test sentences of one synthetic signer joined with rest pauses: (folder, pose, truth)."""
    workdir, _ = tiny_demo
    clips = read_manifest(workdir / "corpus" / "test.jsonl")
    signer = max({c.signer for c in clips}, key=lambda s: sum(c.signer == s for c in clips))
    mine = [c for c in clips if c.signer == signer][:12]
    seq, truth = join_clips([(read_npz(Path(c.path)), c.text) for c in mine], np.random.default_rng(0))
    folder = tmp_path_factory.mktemp("programme")
    save_pose_npz(folder / "news.npz", seq.data, seq.fps)
    return folder, seq, truth, workdir / "model"


# --- segmentation -----------------------------------------------------------------------------------------

def test_activity_finds_the_sentences_of_a_programme_within_half_a_second(programme):
    _, seq, truth, _ = programme
    plan = plan_segments(seq, None, P)
    assert plan.method == "activity"
    precision, recall = boundary_recall(plan.segments, truth)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall, len(plan.segments))
    assert all(0 <= s.start < s.end <= seq.duration for s in plan.segments)


def test_subtitles_give_segments_with_their_text_and_the_lag_is_estimated(programme):
    _, seq, truth, _ = programme
    early = [Cue(s.start - 1.5, s.end - 1.5, s.text) for s in truth]  # subtitles ahead of a lagging interpreter
    assert estimate_shift(early, seq, P) == pytest.approx(1.5, abs=0.3)
    plan = plan_segments(seq, early, P, shift="auto")
    assert plan.method == "subtitles" and plan.shift == pytest.approx(1.5, abs=0.3)
    assert [s.text for s in plan.segments] == [s.text for s in truth]
    assert boundary_recall(plan.segments, truth) == (1.0, 1.0)
    unshifted = plan_segments(seq, early, P)  # the lag left in: boundaries 1.5 s off
    assert boundary_recall(unshifted.segments, truth)[1] < 0.5


def test_cues_past_the_end_or_overlapping_are_repaired_with_notes():
    cues = [Cue(0.0, 3.0, "a"), Cue(2.0, 5.0, "b"), Cue(8.0, 12.0, "c"), Cue(20.0, 21.0, "d")]
    plan = segments_from_cues(cues, duration=10.0)
    assert [(s.start, s.end, s.text) for s in plan.segments] == [(0.0, 2.0, "a"), (2.0, 5.0, "b"), (8.0, 10.0, "c")]
    notes = " ".join(plan.notes)
    assert "1 subtitle cue(s) start after the end" in notes and "overlap the next" in notes and "clipped" in notes


def test_windows_overlap_and_end_at_the_end():
    plan = segment_by_windows(21.0, SegmentParams(window=8, stride=4))
    assert [(s.start, s.end) for s in plan.segments] == [(0, 8), (4, 12), (8, 16), (12, 20), (13, 21)]
    assert [(s.start, s.end) for s in segment_by_windows(5.0, P).segments] == [(0, 5.0)]


def test_a_programme_without_signing_gives_no_segments_and_says_so(programme):
    _, seq, _, _ = programme
    rest = PoseSequence(np.repeat(seq.data[:1], 500, axis=0), seq.fps)  # the first frame: hands down
    plan = plan_segments(rest, None, P)
    assert plan.segments == [] and "no signing detected" in plan.notes[0]


def test_a_pose_without_shoulders_falls_back_to_windows():
    seq = PoseSequence(np.full((400, 543, 3), np.nan, np.float32), 25.0)
    seq.data[:, 100:, :2] = 0.5  # a face, no body
    plan = plan_segments(seq, None, P)
    assert plan.method == "windows" and "overlapping windows" in plan.notes[0]


def test_a_phrase_longer_than_max_segment_is_cut():
    seq = PoseSequence(np.full((25 * 40, 543, 3), np.nan, np.float32), 25.0)
    seq.data[:, 11, :2], seq.data[:, 12, :2] = (0.4, 0.3), (0.6, 0.3)  # shoulders
    seq.data[:, 23, :2], seq.data[:, 24, :2] = (0.45, 0.8), (0.55, 0.8)  # hips
    t = np.arange(len(seq.data)) / 25.0
    seq.data[:, 16, 0] = 0.5 + 0.1 * np.sin(2 * np.pi * t)  # 40 s of raised, moving hand
    seq.data[:, 16, 1] = 0.4
    seq.data[500:510, 16, 0] = seq.data[499, 16, 0]  # a 0.4 s stillness at 20 s, hand still raised
    plan = plan_segments(seq, None, SegmentParams(max_segment=25))
    assert len(plan.segments) == 2 and abs(plan.segments[0].end - 20.2) < 0.6
    no_pause = PoseSequence(seq.data.copy(), 25.0)
    no_pause.data[:, 16, 0] = 0.5 + 0.1 * np.sin(2 * np.pi * t)
    windows = plan_segments(no_pause, None, SegmentParams(max_segment=25, window=10, stride=5))
    assert len(windows.segments) >= 7 and all(s.end - s.start <= 10.5 for s in windows.segments)


def test_a_manifest_row_with_a_sentence_is_one_clip_however_long(programme):
    from slsearch.data.long_media import find_long_media
    from slsearch.data.manifest import Clip

    folder, seq, truth, _ = programme
    whole, long = find_long_media([Clip(id="news", path=folder / "news.npz", text="the whole news"),
                                   Clip(id="raw", path=folder / "news.npz")],
                                  SegmentOptions(params=SegmentParams(longer_than=10)), [], [])
    assert [c.id for c in whole] == ["news"] and [m.clip.id for m in long] == ["raw"]


def test_bad_segment_options_are_one_line_errors():
    with pytest.raises(SlsearchError, match="segmenting must be one of"):
        SegmentOptions(method="scenes")
    with pytest.raises(SlsearchError, match="shift must be seconds or 'auto'"):
        SegmentOptions(shift="late")
    with pytest.raises(SlsearchError, match="window and stride must be positive"):
        SegmentParams(stride=0)


# --- indexing and search ----------------------------------------------------------------------------------

def _index(paths, model, out, *extra):
    r = runner.invoke(app, ["index", *map(str, paths), "--model", str(model), "--out", str(out), "--json", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_a_subtitled_programme_is_indexed_as_segments_and_hits_say_when(programme, tmp_path):
    folder, seq, truth, model = programme
    write_srt(truth, folder / "news.srt", shift=-1.5)
    try:
        s = _index([folder], model, tmp_path / "idx", "--subtitle-shift", "auto")
    finally:
        (folder / "news.srt").unlink()
    assert s["clips_added"] == len(truth) and s["failures"] == 0
    [note] = s["notes"]
    shift = re.search(r"cut into 12 segments by subtitles, shift ([+-][0-9.]+) s \(estimated\) \(news.srt\)", note)
    assert shift and abs(float(shift.group(1)) - 1.5) <= 0.3, note
    r = runner.invoke(app, ["query", truth[3].text, "--index", str(tmp_path / "idx"), "-k", "12", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["results"]
    ids = [h["id"] for h in hits]
    assert len(ids) == len(set(ids)) == 12 and all(i.startswith("news#") for i in ids)
    for h in hits:  # the span lies inside the hit's segment, in the programme's seconds
        n = int(h["id"].split("#")[1]) - 1
        assert truth[n].start - 0.4 <= h["span"][0] < h["span"][1] <= truth[n].end + 0.4, (h, truth[n])
        assert h["text"] == truth[n].text
    top5 = [int(h["id"].split("#")[1]) - 1 for h in hits[:5]]
    assert 3 in top5 or truth[3].text in {truth[i].text for i in top5}


def test_add_keeps_unchanged_segments_and_recut_replaces_them(programme, tmp_path):
    folder, seq, truth, model = programme
    out = tmp_path / "idx"
    first = _index([folder], model, out, "--segment-over", "10")
    n = first["clips_added"]
    assert n >= 10 and first["clips_total"] == n
    again = _index([folder], model, out, "--add", "--segment-over", "10")
    assert again["clips_added"] == 0 and again["clips_unchanged"] == n
    recut = _index([folder], model, out, "--add", "--segment", "windows", "--window", "10", "--stride", "5")
    windows = int(np.ceil((seq.duration - 10) / 5)) + 1
    assert recut["clips_added"] == windows and recut["clips_total"] == windows  # the activity cut is gone
    whole = _index([folder], model, tmp_path / "whole", "--segment", "off")
    assert whole["clips_added"] == 1


def test_overlapping_windows_of_one_file_are_one_hit(programme, tmp_path):
    folder, seq, truth, model = programme
    _index([folder], model, tmp_path / "idx", "--segment", "windows", "--window", "8", "--stride", "2")
    from slsearch.index.search import Searcher

    searcher = Searcher(tmp_path / "idx")
    for sentence in truth[:6]:
        hits = searcher.search_text(sentence.text, k=5)
        spans = [h.span for h in hits]
        for i, a in enumerate(spans):  # no two hits share signing
            for b in spans[i + 1:]:
                assert a[1] <= b[0] or b[1] <= a[0], spans


def test_a_malformed_subtitle_file_is_reported_with_its_line_and_activity_cuts_instead(programme, tmp_path):
    folder, seq, truth, model = programme
    (folder / "news.srt").write_text("1\n00:00:01,000 --> 00:00:0x,500\nhallo\n", encoding="utf-8")
    try:
        s = _index([folder], model, tmp_path / "idx", "--segment-over", "10")
    finally:
        (folder / "news.srt").unlink()
    assert any("news.srt: line 2 is not a valid timing line" in n and "signing activity instead" in n
               for n in s["notes"]), s["notes"]
    assert any("by activity" in n for n in s["notes"]) and s["clips_added"] >= 10


def test_a_programme_with_no_signing_yields_no_segments_and_says_so(programme, tmp_path):
    folder, seq, truth, model = programme
    still = tmp_path / "media"
    still.mkdir()
    save_pose_npz(still / "empty.npz", np.repeat(seq.data[:1], 2000, axis=0), seq.fps)
    r = runner.invoke(app, ["index", str(still), "--model", str(model), "--out", str(tmp_path / "idx")])
    assert r.exit_code == 2
    assert "no signing detected" in r.output and "Traceback" not in r.output


# --- decoding: chunks of a long video are the frames of the whole --------------------------------------

def test_a_cut_late_in_a_video_seeks_and_gives_the_same_frames(video_writer, tmp_path):
    from slsearch.data.video import iter_frames

    frames = np.zeros((300, 64, 96, 3), np.uint8)
    for i in range(300):
        frames[i, :, : 1 + (7 * i) % 96] = 255  # each frame its own width of white
    path = video_writer(tmp_path / "long.mp4", frames)
    whole = list(iter_frames(path, fps=25))
    for start, end in ((4.0, 6.0), (8.6, None)):  # past SEEK_AFTER: these seek
        part = list(iter_frames(path, fps=25, start=start, end=end))
        a, b = int(round(start * 25)), len(whole) if end is None else int(round(end * 25))
        assert len(part) == b - a
        assert np.abs(np.stack(part).astype(int) - np.stack(whole[a:b]).astype(int)).mean() < 2


def test_a_long_video_is_extracted_in_chunks_that_join_into_the_whole(video_writer, tmp_path, monkeypatch):
    """Chunks of CHUNK_SECONDS through the pose cache join into exactly the frames of one extraction."""
    from slsearch.data import long_media
    from slsearch.data.manifest import Clip

    rng = np.random.default_rng(0)
    frames = (rng.random((130, 48, 64, 3)) * 255).astype(np.uint8)  # 5.2 s; nobody in it
    path = video_writer(tmp_path / "v.mp4", frames)
    monkeypatch.setattr(long_media, "CHUNK_SECONDS", 2.0)
    failures, notes = [], []
    _, [media] = long_media.find_long_media([Clip(id="v", path=path)], SegmentOptions(
        params=SegmentParams(longer_than=1.0)), failures, notes)
    assert [(c.start, c.end) for c in media.chunks] == [(0.0, 2.0), (2.0, 4.0), (4.0, None)]
    from slsearch.data.extract import cache_key, cache_path

    for c in media.chunks:  # what extraction would cache, with each frame's timestamp for a landmark
        pose = _frames_as_pose(path, 25.0, c.start, c.end)
        save_pose_npz(cache_path(cache_key(path, 25.0, c.start, c.end)), pose.data, pose.fps)
    seq = long_media.load_long_pose(media)
    assert seq.frames == 130 and seq.fps == 25.0
    np.testing.assert_allclose(seq.data[:, 0, 0], np.arange(130) / 25.0, atol=1e-4)


def _frames_as_pose(path, fps, start, end):
    """A stand-in for MediaPipe (which finds nobody in noise): frame i's timestamp as landmark 0's x."""
    from slsearch.data.video import iter_frames

    n = sum(1 for _ in iter_frames(path, fps=fps, start=start, end=end))
    data = np.zeros((n, 543, 3), np.float32)
    data[:, 0, 0] = (start or 0.0) + np.arange(n) / fps
    return PoseSequence(data, float(fps))


# --- the real path: five How2Sign sentence clips joined into one video with an .srt -------------------------

H2S_CLIPS = 5


@pytest.fixture(scope="module")
def how2sign_programme(shared_data, video_writer, tmp_path_factory):
    """The five shortest How2Sign clips with a sentence, joined into one 640x360 mp4 (PyAV), and an .srt of
    their sentences: (folder, video, [(start, end, text)])."""
    import av

    rows = [json.loads(line) for line in (shared_data / "how2sign/clips/clips.jsonl").read_text().splitlines()]
    lengths = []
    for r in rows:
        if r.get("text_en"):
            with av.open(str(shared_data / "how2sign/clips" / r["file"])) as c:
                lengths.append((c.streams.video[0].frames, r))
    chosen = [r for _, r in sorted(lengths, key=lambda x: x[0])[:H2S_CLIPS]]
    frames, cues, t = [], [], 0
    for r in chosen:
        with av.open(str(shared_data / "how2sign/clips" / r["file"])) as c:
            clip = [f.reformat(width=640, height=360).to_ndarray(format="rgb24") for f in c.decode(video=0)]
        frames += clip
        cues.append((t / 24, (t + len(clip)) / 24, r["text_en"]))
        t += len(clip)
    folder = tmp_path_factory.mktemp("how2sign-programme")
    video = video_writer(folder / "talk.mp4", np.stack(frames), fps=24)
    write_srt([Segment(a, b, text) for a, b, text in cues], folder / "talk.srt")
    return folder, video, cues


def test_a_real_video_with_subtitles_is_indexed_as_its_sentences(how2sign_programme, tiny_checkpoint, tmp_path):
    import os

    folder, video, cues = how2sign_programme
    cache = Path(os.environ["SLSEARCH_CACHE"]) / "poses"
    before = set(cache.rglob("*.npz")) if cache.exists() else set()
    s = _index([folder], tiny_checkpoint, tmp_path / "idx")
    assert s["failures"] == 0 and s["clips_added"] == H2S_CLIPS, s
    assert len(set(cache.rglob("*.npz")) - before) == 1  # the video extracted once, not once per segment
    from slsearch.index.store import load_index

    rows = sorted(load_index(tmp_path / "idx").clips.meta.to_pylist(), key=lambda r: r["start"])
    assert [r["id"] for r in rows] == [f"talk#{i}" for i in range(1, H2S_CLIPS + 1)]
    assert [r["text"] for r in rows] == [text for _, _, text in cues]
    for r, (a, b, _) in zip(rows, cues):
        assert r["start"] == pytest.approx(a, abs=0.01) and r["end"] == pytest.approx(b, abs=0.01)
        assert r["duration"] == pytest.approx(b - a, abs=0.1) and r["path"].endswith("talk.mp4")
    r = runner.invoke(app, ["query", cues[2][2], "--index", str(tmp_path / "idx"), "-k", "5", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["results"]
    for h in hits:  # spans in the video's seconds, inside the hit's sentence
        a, b, _ = cues[int(h["id"].split("#")[1]) - 1]
        assert a - 0.2 <= h["span"][0] < h["span"][1] <= b + 0.2


def test_gloss_hits_from_overlapping_windows_are_one_hit():
    """G2V ranks every clip by its reading; of windows sharing more than a quarter of their extent in one
    file only the better is listed (the ranking of whole clips is untouched)."""
    from types import SimpleNamespace

    from slsearch.index.search import Searcher

    columns = {"path": np.array(["a.mp4"] * 4 + ["b.mp4", "c.npz"], dtype=object),
               "start": np.array([0.0, 4.0, 8.0, 12.0, 4.0, None], dtype=object),
               "end": np.array([8.0, 12.0, 16.0, 20.0, 12.0, None], dtype=object),
               "duration": np.array([8.0, 8.0, 8.0, 8.0, 8.0, 3.0])}
    fake = SimpleNamespace(clips=SimpleNamespace(column=columns.__getitem__))
    order = np.array([1, 0, 2, 4, 5, 3])  # window 1 best; 0 and 2 overlap it by half; 3 does not
    assert Searcher._distinct_segments(fake, order, 10).tolist() == [1, 4, 5, 3]
    assert Searcher._distinct_segments(fake, order, 2).tolist() == [1, 4]


def test_segments_of_a_real_video_get_their_own_crops_for_an_rgb_stream(how2sign_programme, tiny_corpus, tmp_path,
                                                                        monkeypatch):
    """A model with the RGB stream indexes a long video's segments with crops cut for each segment's frames
    (not masked, and not the whole programme's at once)."""
    from slsearch.data import crops as crops_module
    from slsearch.models.checkpoint import save_model
    from slsearch.training.loop import build_for_recipe
    from slsearch.training.recipe import load_recipe

    recipe = load_recipe("tiny", ['model.streams=["pose", "rgb_crops"]'])
    texts = [json.loads(line)["text"] for line in tiny_corpus[0].read_text().splitlines()]
    model_dir = tmp_path / "rgb-model"
    save_model(build_for_recipe(recipe, texts), model_dir, recipe=recipe.to_dict())
    cut = []
    real = crops_module.cached_crops

    def spy(path, pose, fps, start, end, cache_dir=None):
        crops = real(path, pose, fps, start, end, cache_dir)
        cut.append((start, end, len(pose), bool(crops.present.any())))
        return crops

    monkeypatch.setattr(crops_module, "cached_crops", spy)
    folder, video, cues = how2sign_programme
    s = _index([folder], model_dir, tmp_path / "idx")
    assert s["failures"] == 0 and s["clips_added"] == H2S_CLIPS, s
    assert len(cut) == H2S_CLIPS
    for (start, end, frames, seen), (a, b, _) in zip(sorted(cut), cues):
        assert start == pytest.approx(a, abs=0.05) and end == pytest.approx(b, abs=0.05)
        assert frames == pytest.approx((b - a) * 25, abs=2) and seen
