"""The index folder: format, atomic replacement (crash, Ctrl-C), the writers' lock, checked loading,
adding and removing clips without a rebuild, bad clips skipped and reported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gloss_poses import make_corpus
from slsearch import encode_videos
from slsearch.data.manifest import read_manifest
from slsearch.errors import SlsearchError
from slsearch.index import store
from slsearch.index.build import build_index
from slsearch.index.remove import remove_clips
from slsearch.index.search import Searcher
from slsearch.index.store import IndexWriter, load_index
from slsearch.rank import load_retrieval_model


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_retrieval_model(tiny_checkpoint)


@pytest.fixture
def built(tiny_corpus, tiny_checkpoint, model, tmp_path):
    out = tmp_path / "indexes" / "news"
    summary = build_index([tiny_corpus[0]], tiny_checkpoint, out, progress=False, model=model)
    return out, summary


def _snapshot(path: Path) -> dict:
    idx = load_index(path)
    return {"info": idx.info, "ids": idx.clips.column("id").tolist(), "ntotal": idx.clips.index.ntotal,
            "version": idx.path.name}


def test_folder_format_and_summary(built, tiny_corpus, tiny_checkpoint, model):
    out, summary = built
    clips = read_manifest(tiny_corpus[0])
    assert out.is_symlink()  # a link swapped atomically onto version folders
    names = {p.name for p in out.iterdir()}
    assert {"index.json", "vectors.faiss", "texts.faiss", "meta.parquet", "texts.parquet", "tokens.f16.npy",
            "text_tokens.f16.npy"} <= names
    info = json.loads((out / "index.json").read_text())
    assert info["format_version"] == store.FORMAT_VERSION
    assert info["checkpoint"] == {"path": str(Path(tiny_checkpoint).resolve()), "hash": model.hash}
    assert model.hash == model.net.checkpoint_hash
    assert info["dims"] == {"global": model.net.embed_dim, "token": model.net.token_dim}
    assert info["clips"]["index_type"] == "flat" and info["clips"]["count"] == len(clips) == 40
    assert info["texts"]["count"] == 40 and info["created"]
    assert summary["clips_added"] == 40 and summary["failures"] == 0 and summary["factory"] == "Flat"
    assert summary["size_bytes"] > 0 and summary["recall_at_10"] == 1.0

    meta = pq.read_table(out / "meta.parquet").to_pylist()
    assert [m["id"] for m in meta] == [c.id for c in clips]
    assert [m["faiss_id"] for m in meta] == list(range(40))  # ids = row numbers
    assert all(len(m["source_hash"]) == 64 and m["frames"] > 0 and m["duration"] > 0 for m in meta)
    # the stored token states are the encoder's, in float16, at the recorded offsets
    enc = encode_videos(model.net, clips[:3])
    tokens = np.load(out / "tokens.f16.npy", mmap_mode="r")
    assert tokens.dtype == np.float16 and tokens.shape[1] == model.net.token_dim
    for m, t in zip(meta[:3], enc.tokens):
        assert m["token_count"] == len(t)
        assert np.allclose(tokens[m["token_offset"]:m["token_offset"] + m["token_count"]], t, atol=2e-3)
    # FAISS holds the same global vectors
    idx = load_index(out)
    assert np.allclose(idx.clips.index.reconstruct(1), enc.vectors[1], atol=1e-5)


def test_add_embeds_only_new_content_without_rebuild(built, tiny_checkpoint, model, tmp_path):
    out, _ = built
    before = load_index(out)
    extra = make_corpus(tmp_path / "extra", 5, seed=7, name="extra")
    s = build_index([before.clips.column("path")[0], extra], tiny_checkpoint, out, add=True, progress=False,
                    model=model)
    assert (s["clips_added"], s["clips_unchanged"], s["clips_total"]) == (5, 1, 45)
    after = load_index(out)
    assert after.path != before.path
    # old token segment carried over by hard link, the new clips in a new segment
    assert os.stat(after.path / "tokens.f16.npy").st_ino == os.stat(before.path / "tokens.f16.npy").st_ino
    assert after.clips.token_files == ["tokens.f16.npy", "tokens.1.f16.npy"]
    assert after.clips.column("faiss_id").tolist() == list(range(45))
    assert [h["action"] for h in after.info["history"]] == ["build", "add"]
    hit = Searcher(out, model=model).search_video(read_manifest(extra)[2].path, k=1, target="clips")[0]
    assert hit.id == "extra002"
    # adding the same files again embeds nothing and leaves the version alone
    again = build_index([extra], tiny_checkpoint, out, add=True, progress=False, model=model)
    assert again["clips_added"] == 0 and again["clips_unchanged"] == 5
    assert load_index(out).path == after.path


def test_add_replaces_a_clip_whose_content_changed(built, tiny_checkpoint, model, tiny_corpus, tmp_path):
    out, _ = built
    clip = read_manifest(tiny_corpus[0])[3]
    changed = tmp_path / "changed" / f"{clip.id}.npz"  # same id, other signing
    changed.parent.mkdir()
    other = np.load(read_manifest(tiny_corpus[0])[4].path)["pose"][::-1]  # content no clip has
    np.savez(changed, pose=other, fps=np.float32(25))
    s = build_index([changed], tiny_checkpoint, out, add=True, progress=False, model=model)
    assert (s["clips_added"], s["clips_replaced"], s["clips_total"]) == (1, 1, 40)
    meta = load_index(out).clips.meta.to_pylist()
    row = next(m for m in meta if m["id"] == clip.id)
    assert row["path"] == str(changed) and row["faiss_id"] == 40


def test_remove_without_rebuild(built, model):
    out, _ = built
    before = load_index(out)
    s = remove_clips(out, ["train000", "train005"])
    after = load_index(out)
    assert (s["removed"], s["clips_total"]) == (2, 38)
    assert after.clips.index.ntotal == len(after.clips) == 38
    assert "train000" not in after.clips.column("id").tolist()
    # sentences only those clips carried are gone from the text index too; others keep their ids
    gone = {m["text"] for m in before.clips.meta.to_pylist() if m["id"] in ("train000", "train005")}
    assert not gone & set(after.texts.column("text").tolist()) and len(after.texts) == 38
    assert os.stat(after.path / "tokens.f16.npy").st_ino == os.stat(before.path / "tokens.f16.npy").st_ino
    hits = Searcher(out, model=model).search_text(before.clips.column("text")[0], k=38)
    assert "train000" not in {h.id for h in hits} and len(hits) == 38
    with pytest.raises(SlsearchError, match="no clip with id nope"):
        remove_clips(out, ["nope", "train001"])
    assert len(load_index(out).clips) == 38


def test_interrupted_write_leaves_previous_index(built, model, monkeypatch):
    out, _ = built
    before = _snapshot(out)
    calls = []

    def interrupted(*args, **kwargs):  # Ctrl-C in the middle of writing the new version
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(store.pq, "write_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        remove_clips(out, ["train001"])
    monkeypatch.undo()
    assert calls and _snapshot(out) == before
    assert not list(out.parent.glob(".news.tmp-*"))  # half-built version cleaned up
    remove_clips(out, ["train001"])  # and the lock was released
    assert len(load_index(out).clips) == 39


CRASH_SCRIPT = """
import os, sys
from slsearch.index import faiss_index
from slsearch.index.remove import remove_clips
real = faiss_index.write
def crash(index, path):
    real(index, path)
    os._exit(3)  # killed half-way: no cleanup, no finally blocks
faiss_index.write = crash
remove_clips(sys.argv[1], ["train002"])
"""


def test_hard_crash_leaves_previous_index_and_next_writer_recovers(built):
    out, _ = built
    before = _snapshot(out)
    r = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert list(out.parent.glob(".news.tmp-*")), "the crashed writer's temporary folder should be left behind"
    assert _snapshot(out) == before
    remove_clips(out, ["train002"])  # the lock died with the process; the stale folder is swept
    assert not list(out.parent.glob(".news.tmp-*"))
    assert len(load_index(out).clips) == 39


def test_lock_keeps_two_writers_apart_and_readers_keep_reading(built, model):
    out, _ = built
    searcher = Searcher(out, model=model)
    query = searcher.clips.column("text")[0]
    expected = [h.id for h in searcher.search_text(query, k=5)]
    with IndexWriter(out) as first:
        assert first.previous is not None
        with pytest.raises(SlsearchError, match="another writer holds the lock"):
            remove_clips(out, ["train003"])
        assert _snapshot(out)["ntotal"] == 40  # readable while a writer works
    remove_clips(out, ["train003", "train004"])
    # a searcher opened on the old version keeps answering from it
    assert [h.id for h in searcher.search_text(query, k=5)] == expected


def test_loading_refuses_inconsistent_or_incomplete_folders(built, tmp_path):
    out, _ = built
    version = load_index(out).path
    meta = pq.read_table(version / "meta.parquet")
    pq.write_table(meta.slice(0, 39), version / "meta.parquet")
    with pytest.raises(SlsearchError, match="vectors.faiss holds 40 vectors but meta.parquet has 39 rows"):
        load_index(out)
    pq.write_table(meta, version / "meta.parquet")
    # an index of an older format is refused with the command that rebuilds it
    info_text = (version / "index.json").read_text()
    (version / "index.json").write_text(json.dumps({**json.loads(info_text), "format_version": 1}))
    with pytest.raises(SlsearchError, match=r"index format 1, this slsearch reads format 2; rebuild it with "
                                            r"`slsearch index PATH\.\.\. --model CHECKPOINT"):
        load_index(out)
    (version / "index.json").write_text(info_text)
    (version / "tokens.f16.npy").unlink()
    with pytest.raises(SlsearchError, match="incomplete index, missing tokens.f16.npy"):
        load_index(out)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "vectors.faiss").write_bytes(b"")
    with pytest.raises(SlsearchError, match="not an slsearch index"):
        load_index(tmp_path / "half")
    with pytest.raises(SlsearchError, match="no index here"):
        load_index(tmp_path / "missing")


def test_bad_clips_are_reported_and_skipped(tiny_corpus, tiny_checkpoint, model, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for c in read_manifest(tiny_corpus[0])[:4]:
        (folder / Path(c.path).name).write_bytes(Path(c.path).read_bytes())
    (folder / "broken.npz").write_bytes(b"not a zip file")
    np.savez(folder / "short.npz", pose=np.load(folder / "train000.npz")["pose"][:2], fps=np.float32(25))
    s = build_index([folder], tiny_checkpoint, tmp_path / "idx", progress=False, model=model)
    assert (s["clips_added"], s["failures"], s["texts_total"]) == (4, 2, 0)
    reasons = {Path(f["path"]).name: f["reason"] for f in s["failed"]}
    assert "not a readable .npz" in reasons["broken.npz"]
    assert "fewer than the temporal stride" in reasons["short.npz"]
    assert "broken.npz" not in capsys.readouterr().err  # the library reports in its summary; the CLI prints
    from typer.testing import CliRunner

    from slsearch.cli import app

    r = CliRunner().invoke(app, ["index", str(folder), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "i3")])
    assert r.exit_code == 0 and "broken.npz" in r.stderr and "short.npz" in r.stderr, r.output
    assert load_index(tmp_path / "idx").texts is None  # a folder of files carries no sentences
    with pytest.raises(SlsearchError, match="none of the 1 clips could be indexed"):
        build_index([folder / "broken.npz"], tiny_checkpoint, tmp_path / "idx2", progress=False, model=model)
    assert not (tmp_path / "idx2").exists()


def test_rebuild_replaces_the_index_with_fresh_files(built, tiny_corpus, tiny_checkpoint, model):
    out, _ = built
    first = load_index(out)
    s = build_index([tiny_corpus[1]], tiny_checkpoint, out, progress=False, model=model)  # no --add
    second = load_index(out)
    assert s["action"] == "build" and s["clips_total"] == 10 and second.path != first.path
    assert second.clips.token_files == ["tokens.f16.npy"]
    assert second.clips.column("id").tolist() == [f"dev{i:03d}" for i in range(10)]
    assert first.path.exists()  # the previous version stays for readers still on it (KEEP_VERSIONS)


def test_remove_compacts_tokens_once_most_are_unreferenced(built, model):
    out, _ = built
    before = load_index(out)
    keep_id = "train039"
    row = before.clips.meta.to_pylist()[39]
    store = before.token_store("clips")
    tokens_before = store.gather_flat(*(np.array([row[c]]) for c in ("token_segment", "token_offset", "token_count")))
    inode = os.stat(before.path / "tokens.f16.npy").st_ino  # the version folder itself is pruned later
    remove_clips(out, [f"train{i:03d}" for i in range(15)])  # 15 of 40: links kept
    assert os.stat(load_index(out).path / "tokens.f16.npy").st_ino == inode
    remove_clips(out, [f"train{i:03d}" for i in range(15, 30)])  # 30 of 40 gone: rewritten
    after = load_index(out)
    stored = np.load(after.path / "tokens.f16.npy", mmap_mode="r")
    assert len(stored) == sum(after.clips.column("token_count"))
    assert os.stat(after.path / "tokens.f16.npy").st_ino != inode
    row = next(r for r in after.clips.meta.to_pylist() if r["id"] == keep_id)
    tokens_after = after.token_store("clips").gather_flat(
        *(np.array([row[c]]) for c in ("token_segment", "token_offset", "token_count")))
    assert np.array_equal(tokens_before, tokens_after)
    texts = after.texts.meta.to_pylist()
    assert len(np.load(after.path / "text_tokens.f16.npy", mmap_mode="r")) == sum(r["token_count"] for r in texts)
    hits = Searcher(out, model=model).search_text(row["text"], k=10)
    assert len(hits) == 10 and keep_id in {h.id for h in hits}


@pytest.mark.parametrize("index_type, factory", [("hnsw", "HNSW32"), ("IDMap2,Flat", "IDMap2,Flat")])
def test_index_type_override_survives_add_and_remove(index_type, factory, tiny_corpus, tiny_checkpoint, model,
                                                     tmp_path):
    out = tmp_path / "idx"
    s = build_index([tiny_corpus[0]], tiny_checkpoint, out, index_type=index_type, progress=False, model=model)
    assert s["factory"] == factory and s["recall_at_10"] >= 0.95
    build_index([tiny_corpus[1]], tiny_checkpoint, out, add=True, progress=False, model=model)
    remove_clips(out, ["train010", "dev003"])  # an HNSW graph is rebuilt from its stored vectors
    idx = load_index(out)
    assert idx.clips.index.ntotal == len(idx.clips) == 48 and idx.info["clips"]["factory"] == factory
    searcher = Searcher(out, model=model)
    dev = read_manifest(tiny_corpus[1])
    assert searcher.search_video(dev[5].path, k=1, target="clips")[0].id == "dev005"
    assert "train010" not in {h.id for h in searcher.search_text(dev[0].text, k=48)}
