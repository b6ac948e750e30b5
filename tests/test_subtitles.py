"""Subtitles as data (issue 20): .srt/.vtt/.ass -> cues, and `slsearch manifest --subtitles`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data.manifest import read_manifest
from slsearch.data.subtitles import Cue, find_subtitles, read_subtitles, subtitle_manifest
from slsearch.errors import InputError

SRT = """1
00:00:00,500 --> 00:00:01,500
<i>Guten</i> <b>Abend</b>

2
00:00:01,200 --> 00:00:02,800
morgen regnet es
im Norden

3
00:00:03,000 --> 00:00:03,500


4
00:00:03,100 --> 00:00:03,900
<font color="red">Wind</font> aus Westen
"""

VTT = """WEBVTT

NOTE a comment

00:00.500 --> 00:01.500 align:start
<v Anna>Hallo <c.yellow>da</c>

intro
00:01.000 --> 00:02.000
zweite Zeile
"""

ASS = """[Script Info]
ScriptType: v4.00+

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,{\\i1}Hallo{\\i0} Welt
Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,not shown
"""


def _write(path: Path, text: str, bom: bool = False, crlf: bool = False) -> Path:
    data = text.replace("\n", "\r\n") if crlf else text
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    return path


def test_srt_tags_multiline_overlap_empty(tmp_path):
    cues = read_subtitles(_write(tmp_path / "a.srt", SRT))
    assert cues == [Cue(0.5, 1.5, "Guten Abend"), Cue(1.2, 2.8, "morgen regnet es im Norden"),
                    Cue(3.1, 3.9, "Wind aus Westen")]


def test_bom_and_crlf_read_the_same(tmp_path):
    plain = read_subtitles(_write(tmp_path / "a.srt", SRT))
    assert read_subtitles(_write(tmp_path / "b.srt", SRT, bom=True, crlf=True)) == plain
    assert read_subtitles(_write(tmp_path / "c.vtt", VTT, bom=True, crlf=True)) == read_subtitles(
        _write(tmp_path / "d.vtt", VTT))


def test_vtt_and_ass(tmp_path):
    assert read_subtitles(_write(tmp_path / "a.vtt", VTT)) == [Cue(0.5, 1.5, "Hallo da"),
                                                               Cue(1.0, 2.0, "zweite Zeile")]
    assert read_subtitles(_write(tmp_path / "a.ass", ASS)) == [Cue(1.0, 2.0, "Hallo Welt")]


def test_shift_and_min_duration(tmp_path):
    path = _write(tmp_path / "a.srt", SRT)
    assert [c.start for c in read_subtitles(path, shift=1.0)] == [1.5, 2.2, 4.1]
    assert read_subtitles(path, shift=-1.0)[0] == Cue(0.0, 0.5, "Guten Abend")  # clipped at 0
    assert [c.text for c in read_subtitles(path, shift=-1.6)][0] == "morgen regnet es im Norden"  # ended before 0
    assert [c.end - c.start for c in read_subtitles(path, min_duration=1.0)] == pytest.approx([1.0, 1.6])


@pytest.mark.parametrize("name,text,reason", [
    ("bad.srt", SRT.replace("00:00:01,200 -->", "00:0x:01,200 -->"), "line 6 is not a valid timing line"),
    ("bad.vtt", VTT.replace("00:01.000 -->", "00:01.000 ->> "), "line 9 is not a valid timing line"),
    ("junk.srt", "just some words\nand more\n", "no subtitle cues found"),
    ("latin1.srt", None, "line 3 is not UTF-8"),
    ("a.txt", "x", "unsupported subtitle type"),
])
def test_bad_files_are_one_line_input_errors(tmp_path, name, text, reason):
    path = tmp_path / name
    if text is None:
        path.write_bytes(SRT.replace("Guten", "Gr\xfc\xdf").encode("latin-1"))
    else:
        _write(path, text)
    with pytest.raises(InputError) as e:
        read_subtitles(path)
    assert str(path) in str(e.value) and reason in str(e.value) and "\n" not in str(e.value)


def test_naming_rule(tmp_path):
    video = tmp_path / "talk.mp4"
    video.write_bytes(b"")
    for n in ("talk.de.vtt", "talk.srt", "talk.vtt", "talk.en.srt", "talks.srt", "other.srt", "talk.de.x.srt"):
        (tmp_path / n).write_text("")
    assert [p.name for p in find_subtitles(video)] == ["talk.srt", "talk.vtt", "talk.en.srt", "talk.de.vtt"]


# --- the manifest command --------------------------------------------------------------------------

@pytest.fixture
def programmes(tmp_path, make_video):
    """A folder with a 4 s video + its .srt, and a video without subtitles."""
    folder = tmp_path / "programmes"
    folder.mkdir()
    make_video("programmes/news.mp4", n_frames=100)
    make_video("programmes/silent.mp4", n_frames=25)
    _write(folder / "news.srt", "1\n00:00:00,200 --> 00:00:01,800\nmorgen <i>regnet</i> es\n\n"
                                "2\n00:00:02,000 --> 00:00:03,600\nim Norden Wind\n", crlf=True)
    return folder


def test_manifest_command_json_and_round_trip(programmes, tmp_path):
    out = tmp_path / "m" / "manifest.jsonl"
    r = CliRunner().invoke(app, ["manifest", str(programmes), "--subtitles", "--shift", "0.5", "--out", str(out),
                                 "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["segments"] == 2 and s["media"] == 2 and s["with_subtitles"] == 1 and s["shift"] == 0.5
    assert s["without_subtitles"] == [str(programmes / "silent.mp4")]
    clips = read_manifest(out)
    assert [(c.id, c.path.resolve(), c.start, c.end, c.text) for c in clips] == [
        ("news#1", (programmes / "news.mp4").resolve(), 0.7, 2.3, "morgen regnet es"),
        ("news#2", (programmes / "news.mp4").resolve(), 2.5, 4.1, "im Norden Wind")]


def test_manifest_command_text_output_and_errors(programmes, tmp_path):
    out = tmp_path / "manifest.jsonl"
    r = CliRunner().invoke(app, ["manifest", str(programmes), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "2 segments from 1 of 2 videos" in r.stdout and "silent.mp4" in r.stderr
    # a broken subtitle file is reported, the others go on; none readable at all -> exit 2, one line
    _write(programmes / "silent.srt", "1\n00:00:0x,000 --> 00:00:01,000\nkaputt\n")
    s = subtitle_manifest([programmes], out=out)
    assert s["segments"] == 2 and "silent.srt" in s["failed"][0]["reason"]
    (programmes / "news.srt").unlink()
    r = CliRunner().invoke(app, ["manifest", str(programmes), "--out", str(out)])
    assert r.exit_code == 2 and "no subtitle cues found" in r.stderr and "Traceback" not in r.output


def test_index_over_a_subtitle_manifest(programmes, tmp_path, tiny_checkpoint):
    """Each cue is a clip of the index, cut from the one video; its pose is put into the pose cache
    under the key the indexer looks up (the generated video has no signer for MediaPipe)."""
    import numpy as np

    from gloss_poses import make_clip
    from slsearch.data.extract import cache_key, cache_path
    from slsearch.data.pose_files import save_pose_npz
    from slsearch.data.poses import DEFAULT_FPS

    out = tmp_path / "manifest.jsonl"
    subtitle_manifest([programmes], out=out)
    rng = np.random.default_rng(3)
    for clip, glosses in zip(read_manifest(out), ([1, 2, 3], [4, 5])):
        save_pose_npz(cache_path(cache_key(clip.path, DEFAULT_FPS, clip.start, clip.end)),
                      make_clip(glosses, rng), 25.0)
    r = CliRunner().invoke(app, ["index", str(out), "--model", str(tiny_checkpoint), "--out",
                                 str(tmp_path / "idx"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["clips_added"] == 2 and s["failures"] == 0 and s["texts_total"] == 2
