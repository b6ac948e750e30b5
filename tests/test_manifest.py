"""Manifests in every supported format, the corpus-specific CSVs, folder scans, and bad rows."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slsearch.data.manifest import Clip, collect_clips, read_manifest, scan_folder, write_manifest
from slsearch.errors import InputError

ROWS = [
    {"id": "a", "path": "videos/a.mp4", "text": "wetter morgen", "gloss": "WETTER MORGEN", "split": "test",
     "signer": "S1", "start": 1.5, "end": 3.0},
    {"id": "b", "path": "poses/b.npz", "text": "regen im norden", "split": "train"},
]


def _check(clips, base):
    assert [c.id for c in clips] == ["a", "b"]
    a, b = clips
    assert a.path == base / "videos/a.mp4" and a.text == "wetter morgen" and a.gloss == "WETTER MORGEN"
    assert (a.start, a.end, a.split, a.signer) == (1.5, 3.0, "test", "S1")
    assert b.start is None and b.gloss is None and b.split == "train"


def test_jsonl(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    _check(read_manifest(p), tmp_path)


@pytest.mark.parametrize("ext,delim", [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv(tmp_path, ext, delim):
    cols = ["id", "path", "text", "gloss", "split", "signer", "start", "end"]
    lines = [delim.join(cols)] + [delim.join(str(r.get(c, "")) for c in cols) for r in ROWS]
    p = tmp_path / f"m{ext}"
    p.write_text("\n".join(lines) + "\n")
    _check(read_manifest(p), tmp_path)


def test_parquet(tmp_path):
    p = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "start": r.get("start"), "end": r.get("end"),
                                          "gloss": r.get("gloss"), "signer": r.get("signer")} for r in ROWS]), p)
    _check(read_manifest(p), tmp_path)


def test_phoenix_corpus_csv_finds_frame_folders(tmp_path):
    ann = tmp_path / "annotations/manual"
    ann.mkdir(parents=True)
    frames = tmp_path / "features/fullFrame-210x260px/dev/11August_2010_Wednesday_tagesschau-2"
    frames.mkdir(parents=True)
    (ann / "PHOENIX-2014-T.dev.corpus.csv").write_text(
        "name|video|start|end|speaker|orth|translation\n"
        "11August_2010_Wednesday_tagesschau-2|11August_2010_Wednesday_tagesschau-2/1/*.png|-1|-1|Signer08|"
        "DRUCK TIEF KOMMEN|tiefer luftdruck bewirkt ein schauerwetter\n")
    (c,) = read_manifest(ann / "PHOENIX-2014-T.dev.corpus.csv")
    assert c.path == frames and c.split == "dev" and c.signer == "Signer08"
    assert c.gloss == "DRUCK TIEF KOMMEN" and c.text.startswith("tiefer luftdruck")
    assert c.start is None and c.end is None


def test_how2sign_csv_uses_sentence_clips_or_raw_video_with_times(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips/s1.mp4").write_bytes(b"")
    p = tmp_path / "how2sign_realigned_val.csv"
    p.write_text("VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE\n"
                 "v\tvid-1\tx\ts1\t0.5\t2.0\tHello there.\n"
                 "v\tvid-1\ty\ts2\t2.5\t4.0\tGoodbye.\n")
    a, b = read_manifest(p)
    assert a.path == tmp_path / "clips/s1.mp4" and a.start is None and a.text == "Hello there."
    assert b.path == tmp_path / "vid-1.mp4" and (b.start, b.end) == (2.5, 4.0)


def test_shared_corpus_jsonl_picks_the_first_language_column(shared_data):
    ph = read_manifest(shared_data / "phoenix14t/test.jsonl")
    assert len(ph) == 642 and ph[0].text == "aber erfreuliche nachricht ." and ph[0].path is None
    csl = read_manifest(shared_data / "csl_daily/dev.jsonl")
    assert len(csl) == 1077 and csl[0].text and not csl[0].text.isascii()
    h2s = read_manifest(shared_data / "how2sign/clips/clips.jsonl")
    assert len(h2s) == 30 and all(c.path.exists() for c in h2s)
    assert sum(c.text is not None for c in h2s) == 18
    en = read_manifest(shared_data / "phoenix14t/test.jsonl", text_field="text_en")
    assert en[0].text == "But good news"


def test_bad_manifests(tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "none.jsonl")
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a", "path": "x.mp4"}\n{not json\n')
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        read_manifest(p)
    p.write_text('{"id": "a", "path": "x.mp4"}\n{"id": "a", "path": "y.mp4"}\n')
    with pytest.raises(InputError, match="duplicate clip id 'a'"):
        read_manifest(p)
    p.write_text('{"id": "a", "path": "x.mp4", "start": "soon"}\n')
    with pytest.raises(InputError, match="start is not a number"):
        read_manifest(p)
    (tmp_path / "m.xml").write_text("<x/>")
    with pytest.raises(InputError, match="unsupported manifest type"):
        read_manifest(tmp_path / "m.xml")


def test_write_then_read_round_trip(tmp_path):
    clips = [Clip(id="x/1", path=tmp_path / "out/x/1.npz", text="hallo", gloss="HALLO", split="dev",
                  num_frames=40, extra={"text_en": "hello"})]
    m = write_manifest(clips, tmp_path / "out/manifest.jsonl")
    assert json.loads(m.read_text())["path"] == "x/1.npz"
    (back,) = read_manifest(m)
    assert back.path == clips[0].path and back.num_frames == 40 and back.extra == {"text_en": "hello"}


def test_scan_folder_finds_videos_poses_and_frame_folders(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/b.pose").write_bytes(b"")
    (tmp_path / "sub/readme.txt").write_text("ignored")
    (tmp_path / "frames/c").mkdir(parents=True)
    (tmp_path / "frames/c/images0001.png").write_bytes(b"")
    ids = sorted(c.id for c in scan_folder(tmp_path))
    assert ids == ["a", "frames/c", "sub/b"]
    assert all(c.text is None for c in scan_folder(tmp_path))
    with pytest.raises(InputError, match="appears twice"):
        collect_clips([tmp_path, tmp_path / "a.mp4"])
