"""Fault battery for input data (issue 21): special files, hostile folders, broken media, bad manifests,
insane poses and clip ids that meet after sanitising.

Every case ends in the project's own error (InputError / SlsearchError), or, in a batch command, in one
reported line while the good clips are done; through the CLI it is one line, no traceback, exit code 2
(bad input) or 0/1 (a batch that skipped some / that did nothing). Cases that could hang (FIFOs,
/dev/zero, symlink loops) run in a fresh Python with a timeout, so a regression fails instead of
hanging the suite (no pytest-timeout needed).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data import layout as L
from slsearch.data.extract_corpus import output_names
from slsearch.data.manifest import read_manifest
from slsearch.data.pose_files import MAX_FRAMES, save_pose_npz
from slsearch.data.poses import load_pose
from slsearch.errors import InputError, SlsearchError

runner = CliRunner()
HANG_TIMEOUT = 60  # seconds; each guarded case takes about one second
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(),
                                reason="needs os.mkfifo and /dev/zero (POSIX)")


def in_subprocess(code: str, timeout: float = HANG_TIMEOUT) -> dict:
    """Run `code` (it sets `result`, a JSON-able dict) in a fresh Python; a hang fails the test."""
    script = textwrap.dedent(code) + "\nimport json as _j\nprint('RESULT ' + _j.dumps(result))\n"
    try:
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hang: still running after {timeout} s")
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    assert p.returncode == 0 and lines, f"exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def cli_in_subprocess(args: list[str], timeout: float = HANG_TIMEOUT) -> dict:
    """`slsearch ARGS` through typer's CliRunner, in a fresh Python with a timeout."""
    return in_subprocess(f"""
        from typer.testing import CliRunner
        from slsearch.cli import app
        r = CliRunner().invoke(app, {args!r})
        result = {{"code": r.exit_code, "output": r.output, "stdout": r.stdout}}
    """, timeout)


def a_pose(frames: int = 12, seed: int = 0) -> np.ndarray:
    pose = np.random.default_rng(seed).random((frames, L.N_LANDMARKS, 3)).astype(np.float32)
    pose[:, L.LEFT_HAND] = np.nan  # a hand not seen: normal, must stay fine
    return pose


def one_line_error(r, *names: str) -> None:
    """A CLI failure as one line on the terminal: no traceback, the named files in it."""
    assert "Traceback" not in r.output, r.output
    text = r.output.strip()
    assert text and len(text.splitlines()) == 1, text
    for name in names:
        assert name in text, (name, text)


# --- special files: FIFOs, devices, symlink loops, links out of the folder -----------------------------

@pytest.fixture
def hostile(tmp_path) -> Path:
    """A folder a careful attacker would hand over: good poses among FIFOs, /dev/zero, loops and links out."""
    d = tmp_path / "hostile"
    d.mkdir()
    for i in range(3):
        save_pose_npz(d / f"good{i}.npz", a_pose(seed=i), fps=25)
    for name in ("fifo.mp4", "fifo.npz", "fifo.pose", "fifo.npy"):
        os.mkfifo(d / name)
    (d / "zero.mp4").symlink_to("/dev/zero")
    (d / "zero.npz").symlink_to("/dev/zero")
    (d / "a").symlink_to(".")
    (d / "b").symlink_to(".")
    (d / "sub").mkdir()
    (d / "sub" / "up").symlink_to("..")
    outside = tmp_path / "outside"
    outside.mkdir()
    save_pose_npz(outside / "secret.npz", a_pose(seed=9), fps=25)
    (d / "out").symlink_to(outside)
    (d / "secret.npz").symlink_to(outside / "secret.npz")
    return d


SPECIAL = ["fifo.mp4", "fifo.npz", "fifo.pose", "fifo.npy", "zero.mp4", "zero.npz", "/dev/zero"]
READERS = [("slsearch.data.poses", "load_pose"), ("slsearch.data.video", "content_hash"),
           ("slsearch.index.build", "source_hash")]


@needs_fifo
@pytest.mark.parametrize("reader", READERS, ids=lambda r: r[1])
@pytest.mark.parametrize("name", SPECIAL)
def test_special_files_are_refused_not_read(hostile, name, reader):
    path = name if name.startswith("/") else str(hostile / name)
    r = in_subprocess(f"""
        import importlib
        from slsearch.data.manifest import Clip
        from slsearch.errors import SlsearchError
        mod, fn = {reader!r}
        f = getattr(importlib.import_module(mod), fn)
        arg = Clip(id="x", path={path!r}) if fn == "source_hash" else {path!r}
        try:
            f(arg)
            result = {{"raised": None}}
        except SlsearchError as e:
            result = {{"raised": type(e).__name__, "message": str(e)}}
    """)
    assert r["raised"] == "InputError", r
    kind = "a FIFO" if "fifo" in name else "a character device"
    assert r["message"] == f"{path}: not a regular file ({kind})"


@needs_fifo
def test_folder_scan_ends_and_says_what_it_skipped(hostile):
    r = in_subprocess(f"""
        from slsearch.data.manifest import scan_folder
        skipped = []
        clips = scan_folder({str(hostile)!r}, skipped)
        result = {{"ids": sorted(c.id for c in clips), "skipped": sorted(str(e) for e in skipped)}}
    """)
    assert r["ids"] == ["good0", "good1", "good2"]
    lines = "\n".join(r["skipped"])
    for name in ("fifo.mp4", "fifo.npz", "fifo.pose", "fifo.npy"):
        assert f"{hostile / name}: not a regular file (a FIFO)" in lines
    for name in ("zero.mp4", "zero.npz", "out", "secret.npz"):
        assert f"{hostile / name}: symlink leads out of the scanned folder" in lines
    for name in ("a", "b", "sub/up"):
        assert f"{hostile / name}: symlink to a folder already scanned" in lines
    assert len(r["skipped"]) == 11


@needs_fifo
def test_symlinks_inside_the_folder_are_followed_once(tmp_path):
    d = tmp_path / "d"
    (d / "real").mkdir(parents=True)
    (d / ".hidden").mkdir()
    save_pose_npz(d / "real" / "x.npz", a_pose(), fps=25)
    save_pose_npz(d / ".hidden" / "y.npz", a_pose(), fps=25)
    (d / "alias").symlink_to("real")  # a second name for a scanned folder: skipped with a line
    (d / "x_again.npz").symlink_to("real/x.npz")  # a second name for a scanned file: the same
    (d / "y.npz").symlink_to(".hidden/y.npz")  # inside the folder, not reached otherwise: followed
    r = in_subprocess(f"""
        from slsearch.data.manifest import scan_folder
        skipped = []
        clips = scan_folder({str(d)!r}, skipped)
        result = {{"ids": sorted(c.id for c in clips), "skipped": sorted(e.reason for e in skipped)}}
    """)
    assert r["ids"] == ["real/x", "y"]
    assert len(r["skipped"]) == 2 and r["skipped"][0].startswith("symlink to a folder already scanned")
    assert r["skipped"][1].startswith("the same file as")


@needs_fifo
@pytest.mark.parametrize("bad", ["fifo", "link_out", "dev_zero"])
def test_frame_folder_members_must_be_regular_files_inside_it(tmp_path, bad):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0001.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "elsewhere.png").write_bytes(b"outside")
    member = frames / "0002.png"
    if bad == "fifo":
        os.mkfifo(member)
    else:
        member.symlink_to(tmp_path / "elsewhere.png" if bad == "link_out" else "/dev/zero")
    r = in_subprocess(f"""
        from slsearch.data.video import content_hash
        from slsearch.errors import InputError
        try:
            content_hash({str(frames)!r})
            result = {{"raised": None}}
        except InputError as e:
            result = {{"raised": str(e)}}
    """)
    expected = {"fifo": "not a regular file (a FIFO)", "link_out": "symlink leads out of the frame folder",
                "dev_zero": "not a regular file (a character device)"}[bad]
    assert r["raised"].startswith(f"{member}: {expected}")


@needs_fifo
def test_a_manifest_that_is_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "m.jsonl")
    r = cli_in_subprocess(["extract", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "o")])
    assert r["code"] == 2 and "Traceback" not in r["output"]
    assert f"{tmp_path / 'm.jsonl'}: not a regular file (a FIFO)" in r["output"]


@needs_fifo
def test_cli_extract_over_a_hostile_folder_and_manifest_does_the_good_clips(hostile, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [
        {"id": "m_good", "path": "hostile/good0.npz"}, {"id": "m_fifo", "path": "hostile/fifo.npz"},
        {"id": "m_zero", "path": "hostile/zero.npz"}, {"id": "m_dev", "path": "/dev/zero"}]) + "\n")
    out = tmp_path / "out"
    r = cli_in_subprocess(["extract", str(hostile), str(manifest), "--out", str(out), "--json"])
    assert r["code"] == 0 and "Traceback" not in r["output"], r["output"]
    s = json.loads(r["stdout"].strip().splitlines()[-1])
    assert s["ok"] == 4 and s["failed"] == 14 and s["total"] == 18, s
    failures = "\n".join(s["failures"])
    assert f"{hostile / 'fifo.npz'}: not a regular file (a FIFO)" in failures  # from the manifest row
    assert "/dev/zero: not a regular file (a character device)" in failures
    assert sorted(p.name for p in out.glob("*.npz")) == ["good0.npz", "good1.npz", "good2.npz", "m_good.npz"]


@needs_fifo
def test_cli_index_over_a_hostile_folder_indexes_the_good_clips(hostile, tiny_checkpoint, tmp_path):
    np.savez(hostile / "nobody.npz", pose=np.full((10, L.N_LANDMARKS, 3), np.nan, np.float32), fps=np.float32(25))
    np.savez(hostile / "fps0.npz", pose=a_pose(), fps=np.float32(0))
    (hostile / "garbage.npz").write_bytes(b"PK\x03\x04 not a zip at all")
    r = cli_in_subprocess(["index", str(hostile), "--model", str(tiny_checkpoint), "--out",
                           str(tmp_path / "idx"), "--json"], timeout=300)
    assert r["code"] == 0 and "Traceback" not in r["output"], r["output"]
    s = json.loads(r["stdout"].strip().splitlines()[-1])
    assert s["clips_added"] == 3 and s["clips_total"] == 3, s
    reasons = "\n".join(f["reason"] for f in s["failed"])
    assert s["failures"] == 14, reasons
    for expected in ("not a regular file (a FIFO)", "symlink leads out of the scanned folder",
                     "symlink to a folder already scanned", "no person detected", "frame rate 0 fps",
                     "not a readable .npz"):
        assert expected in reasons, expected


# --- garbage, truncated and empty media files ------------------------------------------------------------

def _pose_format_bytes(fps: float, frames: int = 10, data: np.ndarray | None = None) -> bytes:
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    points = list(L.POSE_NAMES)
    header = PoseHeader(0.1, PoseHeaderDimensions(640, 480, 1),
                        [PoseHeaderComponent("POSE_LANDMARKS", points, [], [], "XYZC")])
    if data is None:
        data = np.random.default_rng(0).random((frames, 1, len(points), 3)).astype(np.float32) * 400
    buf = io.BytesIO()
    Pose(header, NumPyPoseBody(fps, data, np.ones(data.shape[:3], np.float32))).write(buf)
    return buf.getvalue()


def _valid_bytes(ext: str, tmp_path: Path) -> bytes:
    if ext == ".npz":
        return save_pose_npz(tmp_path / "v.npz", a_pose(), 25).read_bytes()
    if ext == ".npy":
        np.save(tmp_path / "v.npy", a_pose())
        return (tmp_path / "v.npy").read_bytes()
    return _pose_format_bytes(25)


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "text"])
@pytest.mark.parametrize("ext", [".npz", ".npy", ".pose"])
def test_broken_pose_files_are_one_line_each(tmp_path, ext, damage):
    valid = _valid_bytes(ext, tmp_path)
    content = {"empty": b"", "garbage": bytes(range(256)) * 8, "truncated": valid[: len(valid) // 2],
               "text": b"hello, this is not a pose\n"}[damage]
    p = tmp_path / f"broken{ext}"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        load_pose(p)
    assert str(e.value).startswith(f"{p}: ")
    r = runner.invoke(app, ["extract", str(p), "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 1 and "Traceback" not in r.output  # a batch where nothing worked
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["failed"] == 1 and s["failures"][0].startswith(f"{p}: ")


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated"])
def test_broken_videos_are_refused_before_any_extraction(tmp_path, make_video, damage):
    from slsearch.data.video import iter_frames, probe

    valid = make_video("v.mp4", n_frames=10).read_bytes()
    p = tmp_path / "broken.mp4"
    p.write_bytes({"empty": b"", "garbage": bytes(range(256)) * 64, "truncated": valid[:600]}[damage])
    for read in (probe, lambda x: list(iter_frames(x))):
        with pytest.raises(InputError) as e:
            read(p)
        assert str(e.value).startswith(f"{p}: ")


# --- manifests ----------------------------------------------------------------------------------------------

BIG = 10_000_000  # a 10 MB field
MANIFESTS = {
    # name: (file name, content, what the message must say)
    "jsonl_not_utf8": ("m.jsonl", b'{"id": "a", "path": "a.npz"}\n{"id": "b", "text": "caf\xe9"}\n',
                       "line 2 is not UTF-8 text (byte 0xe9)"),
    "csv_not_utf8": ("m.csv", b"id,path,text\na,a.npz,ok\nb,b.npz,caf\xe9\n", "line 3 is not UTF-8 text"),
    "csv_huge_field": ("m.csv", b"id,path,text\na,a.npz," + b"x" * BIG + b"\n", "line 2: not readable as CSV"),
    "jsonl_huge_field": ("m.jsonl", json.dumps({"id": "a", "path": "a.npz", "text": "x" * BIG}).encode(),
                         f"line 1: text is {BIG} characters long"),
    "num_frames_abc": ("m.jsonl", b'{"id": "a", "path": "a.npz", "num_frames": "abc"}\n',
                       "line 1: num_frames is not a number: 'abc'"),
    "csv_num_frames_abc": ("m.csv", b"id,path,num_frames\na,a.npz,12\nb,b.npz,abc\n", "line 3: num_frames"),
    "num_frames_fraction": ("m.jsonl", b'{"id": "a", "path": "a.npz", "num_frames": 1.5}\n',
                            "line 1: num_frames is not a whole number"),
    "num_frames_list": ("m.jsonl", b'{"id": "a", "path": "a.npz", "num_frames": [1]}\n',
                        "line 1: num_frames is not a number"),
    "text_list": ("m.jsonl", b'{"id": "a", "path": "a.npz", "text": ["hello", "world"]}\n',
                  "line 1: text is a list, expected text"),
    "text_object": ("m.jsonl", b'{"id": "a", "path": "a.npz", "text": {"en": "hello"}}\n',
                    "line 1: text is an object, expected text"),
    "text_bool": ("m.jsonl", b'{"id": "a", "path": "a.npz", "text": true}\n', "line 1: text is a bool"),
    "translation_list": ("m.jsonl", b'{"id": "a", "path": "a.npz", "translation": [1]}\n',
                         "line 1: translation is a list"),
    "id_list": ("m.jsonl", b'{"id": ["a"], "path": "a.npz"}\n', "line 1: id is a list"),
    "path_object": ("m.jsonl", b'{"id": "a", "path": {"file": "a.npz"}}\n', "line 1: path is an object"),
    "path_nul": ("m.jsonl", b'{"id": "a", "path": "a\\u0000.npz"}\n', "line 1: path contains a NUL character"),
    "gloss_list": ("m.jsonl", b'{"id": "a", "path": "a.npz", "gloss": ["A"]}\n', "line 1: gloss is a list"),
    "start_nan": ("m.jsonl", b'{"id": "a", "path": "a.npz", "start": "nan"}\n', "line 1: start is not a finite"),
    "end_list": ("m.jsonl", b'{"id": "a", "path": "a.npz", "end": [2]}\n', "line 1: end is not a number"),
    "lone_surrogate": ("m.jsonl", b'{"id": "a", "path": "a.npz", "text": "x\\ud800"}\n',
                       "line 1: text is not valid Unicode"),
    "row_is_a_list": ("m.jsonl", b'{"id": "a", "path": "a.npz"}\n["b", "b.npz"]\n',
                      "line 2 is not a JSON object (it is a list)"),
    "row_is_a_number": ("m.jsonl", b"42\n", "line 1 is not a JSON object"),
    "not_json": ("m.jsonl", b'{"id": "a"\n', "line 1 is not valid JSON"),
    "nested_too_deep": ("m.jsonl", b"[" * 100_000 + b"\n", "line 1 is nested too deeply"),
    "binary_jsonl": ("m.jsonl", bytes(range(256)) * 4, "is not UTF-8 text"),
    "binary_csv": ("m.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe" * 50, "is not UTF-8 text"),
    "ascii_garbage_csv": ("m.csv", b"lorem ipsum\ndolor sit\n", "has none of the columns id, path, text"),
    "garbage_parquet": ("m.parquet", b"PAR1 this is not parquet PAR1", "not a readable Parquet file"),
    "empty": ("m.jsonl", b"", "manifest has no rows"),
    "csv_header_only": ("m.csv", b"id,path,text\n", "manifest has no rows"),
    "csv_too_many_fields": ("m.csv", b"id,path\na,a.npz\nb,b.npz,extra\n", "line 3 has more fields than the header"),
    "phoenix_no_name": ("PHOENIX-2014-T.dev.corpus.csv",
                        b"name|video|start|end|speaker|orth|translation\n|v|-1|-1|S|A B|a b\n",
                        "line 2: name is missing"),
    "how2sign_bad_time": ("how2sign.csv",
                          b"VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\t"
                          b"SENTENCE\nv\tvid\tx\ts1\tsoon\t2.0\tHello.\n", "line 2: START_REALIGNED is not a number"),
    "duplicate_ids": ("m.jsonl", b'{"id": "a", "path": "a.npz"}\n{"id": "a", "path": "b.npz"}\n',
                      "duplicate clip id 'a'"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_bad_manifests_name_the_file_the_row_and_the_reason(tmp_path, case):
    name, content, expected = MANIFESTS[case]
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_manifest(p)
    message = str(e.value)
    assert message.startswith(f"{p}: ") and expected in message, message
    assert len(message) < 400  # a 10 MB field is not echoed back
    r = runner.invoke(app, ["extract", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    one_line_error(r, name)


def test_a_manifest_that_is_a_folder(tmp_path):
    (tmp_path / "m.jsonl").mkdir()
    with pytest.raises(InputError, match="not a regular file \\(a folder\\)"):
        read_manifest(tmp_path / "m.jsonl")


def test_manifest_values_that_are_fine(tmp_path):
    """Numbers where text is expected are written as text; a byte-order mark is dropped; num_frames 12.0 is 12."""
    p = tmp_path / "m.csv"
    p.write_bytes(b"\xef\xbb\xbfid,path,text,num_frames\n7,a.npz,42,12.0\n")
    (c,) = read_manifest(p)
    assert (c.id, c.text, c.num_frames) == ("7", "42", 12)
    p = tmp_path / "m.jsonl"
    p.write_text('{"id": 0, "path": "a.npz", "text": 3.5, "extra": [1, 2]}\n')
    (c,) = read_manifest(p)
    assert (c.id, c.text, c.extra) == ("0", "3.5", {"extra": [1, 2]})


def test_a_row_without_a_path_is_reported_and_the_others_are_done(tmp_path):
    save_pose_npz(tmp_path / "a.npz", a_pose(), fps=25)
    p = tmp_path / "m.jsonl"
    p.write_text('{"id": "a", "path": "a.npz", "text": "hello"}\n{"id": "b", "text": "no file"}\n')
    r = runner.invoke(app, ["extract", str(p), "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0 and "Traceback" not in r.output
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert (s["ok"], s["failed"]) == (1, 1) and s["failures"] == ["b: manifest row has no file path"]


# --- pose sanity: frame rates, nobody there, too long -------------------------------------------------------

BAD_FPS = [0, -1, float("nan"), float("inf"), 1e9, 0.5]


@pytest.mark.parametrize("fps", BAD_FPS)
def test_npz_with_a_senseless_frame_rate(tmp_path, fps):
    p = tmp_path / "p.npz"
    np.savez(p, pose=a_pose(), fps=np.float32(fps))
    with pytest.raises(InputError, match="frame rate") as e:
        load_pose(p)
    assert str(e.value).startswith(f"{p}: frame rate")
    r = runner.invoke(app, ["extract", str(p), "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "frame rate" in json.loads(r.stdout.strip().splitlines()[-1])["failures"][0]


@pytest.mark.parametrize("fps", [0, -1, float("nan"), 1e9])
def test_pose_format_file_with_a_senseless_frame_rate(tmp_path, fps):
    p = tmp_path / "p.pose"
    p.write_bytes(_pose_format_bytes(fps))
    with pytest.raises(InputError, match="frame rate"):
        load_pose(p, fps=None)


def test_npz_fps_that_is_not_a_number(tmp_path):
    p = tmp_path / "p.npz"
    np.savez(p, pose=a_pose(), fps=np.array(["fast"]))
    with pytest.raises(InputError, match="frame rate 'fast' is not a number"):
        load_pose(p)


@pytest.mark.parametrize("fps", [0, -5, float("nan"), 1e6])
def test_requested_frame_rate_must_be_sensible(tmp_path, fps):
    p = save_pose_npz(tmp_path / "p.npz", a_pose(), fps=25)
    with pytest.raises(SlsearchError, match="frame rate"):
        load_pose(p, fps=fps)
    if fps != 0:  # --fps 0 means "keep the source rate"
        r = runner.invoke(app, ["extract", str(p), "--out", str(tmp_path / "o"), "--fps", str(fps)])
        assert r.exit_code == 2
        one_line_error(r, "frame rate")


def _nobody(kind: str) -> np.ndarray:
    pose = np.full((20, L.N_LANDMARKS, 3), np.nan, np.float32)
    if kind == "all_inf":
        pose[:] = np.inf
    elif kind == "nan_and_inf":
        pose[::2] = -np.inf
    elif kind == "only_z":
        pose[..., 2] = 0.5  # depth without a position is nobody
    return pose


@pytest.mark.parametrize("kind", ["all_nan", "all_inf", "nan_and_inf", "only_z"])
@pytest.mark.parametrize("ext", [".npz", ".npy", "array"])
def test_a_pose_with_nobody_in_it(tmp_path, kind, ext):
    pose = _nobody(kind)
    if ext == "array":
        with pytest.raises(InputError, match="no person detected"):
            load_pose(pose)
        return
    p = tmp_path / f"p{ext}"
    np.savez(p, pose=pose, fps=np.float32(25)) if ext == ".npz" else np.save(p, pose)
    with pytest.raises(InputError, match="no person detected"):
        load_pose(p)
    r = runner.invoke(app, ["extract", str(p), "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 1 and "no person detected" in r.stdout


def test_pose_format_file_with_nobody_in_it(tmp_path):
    p = tmp_path / "p.pose"
    p.write_bytes(_pose_format_bytes(25, data=np.full((5, 1, len(L.POSE_NAMES), 3), np.inf, np.float32)))
    with pytest.raises(InputError, match="no person detected"):
        load_pose(p)


def test_partly_missing_or_infinite_points_stay_fine_and_become_missing(tmp_path):
    from slsearch.data.features import pose_to_features

    pose = a_pose(20)  # the left hand is NaN throughout
    pose[5:10] = np.nan  # nobody in five frames
    pose[3, L.NOSE] = np.inf
    seq = load_pose(save_pose_npz(tmp_path / "p.npz", pose, fps=25))
    assert seq.frames == 20 and np.isnan(seq.data[3, L.NOSE]).all() and not np.isinf(seq.data).any()
    assert np.isfinite(pose_to_features(seq.data)).all()


def test_a_cut_that_selects_only_frames_without_anyone(tmp_path):
    from slsearch.data.manifest import Clip

    pose = a_pose(100)
    pose[50:] = np.nan
    p = save_pose_npz(tmp_path / "p.npz", pose, fps=25)
    assert load_pose(Clip(id="c", path=p, start=0.0, end=1.0)).frames == 25
    with pytest.raises(InputError, match="no person detected"):
        load_pose(Clip(id="c", path=p, start=2.5, end=3.5))


def test_a_40000_frame_clip_is_refused_as_too_long():
    pose = np.broadcast_to(a_pose(1), (40_000, L.N_LANDMARKS, 3))  # no 260 MB copy
    with pytest.raises(InputError, match="clip too long: 40000 frames") as e:
        load_pose(pose)
    assert f"the limit is {MAX_FRAMES} frames" in str(e.value) and "cuts long media into segments" in str(e.value)


@pytest.mark.parametrize("frames,fps", [(MAX_FRAMES + 1, 25), (500, 1)])
def test_too_long_pose_files_are_refused_before_resampling(tmp_path, frames, fps):
    p = tmp_path / "long.npz"  # float16 keeps the file small; 500 frames at 1 fps are 12,500 at 25
    np.savez(p, pose=np.broadcast_to(a_pose(1).astype(np.float16), (frames, L.N_LANDMARKS, 3)), fps=np.float32(fps))
    with pytest.raises(InputError, match="clip too long"):
        load_pose(p)
    r = runner.invoke(app, ["extract", str(p), "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 1 and "clip too long" in r.stdout


@pytest.mark.parametrize("declared", [True, False])
def test_video_extraction_stops_at_the_frame_cap(make_video, monkeypatch, declared):
    """MediaPipe is replaced by a stub that finds nobody. A video whose container declares its length is
    refused before the first frame; one that does not is stopped at the first frame past the cap."""
    from types import SimpleNamespace

    from slsearch.data import extract

    seen = []
    stub = SimpleNamespace(process=lambda frame: seen.append(1) or SimpleNamespace(
        pose_landmarks=None, face_landmarks=None, left_hand_landmarks=None, right_hand_landmarks=None))
    monkeypatch.setattr(extract, "_tracker", lambda: stub)
    monkeypatch.setattr(extract, "MAX_FRAMES", 5)
    if not declared:
        monkeypatch.setattr(extract, "probe", lambda p: SimpleNamespace(fps=25.0, duration=0.0))
    with pytest.raises(InputError, match="clip too long: 30 frames" if declared else "clip too long: more than 5"):
        extract.extract_pose(make_video("v.mp4", n_frames=30), fps=25)
    assert len(seen) == (0 if declared else 5)


# --- extract never writes two clips to one file -----------------------------------------------------------

def test_output_names_never_meet():
    ids = ["clip 1", "clip_1", "Clip_1", "a/../b", "/abs/x", "x" * 300, "ok", "é"]
    names, refused = output_names(ids)
    assert not refused
    assert len({n.casefold() for n in names.values()}) == len(ids)
    assert names["ok"] == "ok" and names["é"] == "é"  # unchanged ids keep their names
    assert names["clip 1"].startswith("clip_1-") and len(names["clip 1"]) == len("clip_1-") + 8
    assert not any(n.startswith("/") or ".." in Path(n).parts for n in names.values())
    assert all(len(part) <= 120 for n in names.values() for part in Path(n).parts)
    assert output_names(list(reversed(ids)))[0] == names  # the same name whatever the order


def test_extract_writes_colliding_ids_to_separate_files(tmp_path):
    for i in range(2):
        save_pose_npz(tmp_path / f"src{i}.npz", a_pose(10 + i, seed=i), fps=25)
    m = tmp_path / "m.jsonl"
    m.write_text('{"id": "clip 1", "path": "src0.npz"}\n{"id": "clip_1", "path": "src1.npz"}\n')
    out = tmp_path / "out"
    for _ in range(2):  # a second run writes the same files again
        r = runner.invoke(app, ["extract", str(m), "--out", str(out), "--json"])
        assert r.exit_code == 0, r.output
    rows = {x["id"]: x for x in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    assert rows["clip_1"]["path"] == "clip_1.npz" and rows["clip 1"]["path"].startswith("clip_1-")
    assert load_pose(out / rows["clip 1"]["path"], fps=None).frames == 10
    assert load_pose(out / rows["clip_1"]["path"], fps=None).frames == 11
    assert len(list(out.glob("*.npz"))) == 2


def test_an_id_whose_file_would_be_another_ids_folder_is_refused_with_a_line(tmp_path):
    for i in range(2):
        save_pose_npz(tmp_path / f"src{i}.npz", a_pose(seed=i), fps=25)
    m = tmp_path / "m.jsonl"
    m.write_text('{"id": "a", "path": "src0.npz"}\n{"id": "a.npz/b", "path": "src1.npz"}\n')
    r = runner.invoke(app, ["extract", str(m), "--out", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0 and "Traceback" not in r.output
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert (s["ok"], s["failed"]) == (1, 1) and "rename one of them" in s["failures"][0]
