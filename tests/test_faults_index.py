"""Fault battery, index folders (issue 21): an index folder is untrusted input (people share them).

One small index is built once; every case copies it, damages it in one way and asks four readers:
`load_index`, `Searcher`, `slsearch query "x" --index DIR` and `slsearch eval --index DIR`. Each must
answer with a SlsearchError (the CLI: exit code 2 and one line naming the folder), never a traceback,
a hang, or a read of a file the folder does not hold.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.errors import SlsearchError
from slsearch.index.build import build_index
from slsearch.index.search import Searcher
from slsearch.index.store import load_index

runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(tiny_corpus, tiny_checkpoint, tmp_path_factory):
    """The resolved version folder of a 40-clip index (with sentences) that every case copies."""
    out = tmp_path_factory.mktemp("faults-index") / "idx"
    build_index([tiny_corpus[0]], tiny_checkpoint, out, progress=False)
    return out.resolve()


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A file outside every index folder, standing in for /etc/passwd (its content must never be read)."""
    secret = tmp_path_factory.mktemp("outside") / "secret.npy"
    np.save(secret, np.zeros((1000, 8), np.float16))  # even a valid-looking array is refused
    return secret


# --- the damage ------------------------------------------------------------------------------

def _info(d: Path) -> dict:
    return json.loads((d / "index.json").read_text())


def _set_info(d: Path, change) -> None:
    info = _info(d)
    change(info)
    (d / "index.json").write_text(json.dumps(info))


def _meta(d: Path, change, name: str = "meta.parquet") -> None:
    table = pq.read_table(d / name)
    pq.write_table(change(table), d / name)


def _column(table: pa.Table, name: str, values, type_=None) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, name, pa.array(values, type=type_ or table.schema.field(name).type))


def _edit_row(name: str, row: int, value):
    def change(t):
        values = t.column(name).to_pylist()
        values[row] = value(values[row], t) if callable(value) else value
        return _column(t, name, values)
    return change


def _rows(d: Path, file: str = "tokens.f16.npy") -> int:
    return len(np.load(d / file, mmap_mode="r"))


def _truncate(path: Path, keep) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep(len(data))])


def _replace(path: Path, make) -> None:
    path.unlink()
    make(path)


CASES = {
    # index.json of the wrong shape
    "info-empty": lambda d, o: (d / "index.json").write_text(""),
    "info-list": lambda d, o: (d / "index.json").write_text("[]"),
    "info-string": lambda d, o: (d / "index.json").write_text('"index"'),
    "info-garbage-bytes": lambda d, o: (d / "index.json").write_bytes(os.urandom(300)),
    "info-deeply-nested": lambda d, o: (d / "index.json").write_text("[" * 200_000),
    "info-truncated": lambda d, o: _truncate(d / "index.json", lambda n: n // 2),
    "info-format-version-string": lambda d, o: _set_info(d, lambda i: i.update(format_version="2")),
    "info-no-dims": lambda d, o: _set_info(d, lambda i: i.pop("dims")),
    "info-dims-list": lambda d, o: _set_info(d, lambda i: i.update(dims=[64, 64])),
    "info-dims-string": lambda d, o: _set_info(d, lambda i: i["dims"].update(token="64")),
    "info-dims-zero": lambda d, o: _set_info(d, lambda i: i["dims"].update(token=0)),
    "info-no-checkpoint": lambda d, o: _set_info(d, lambda i: i.pop("checkpoint")),
    "info-checkpoint-hash-number": lambda d, o: _set_info(d, lambda i: i["checkpoint"].update(hash=5)),
    "info-no-clips": lambda d, o: _set_info(d, lambda i: i.pop("clips")),
    "info-clips-string": lambda d, o: _set_info(d, lambda i: i.update(clips="clips")),
    "info-texts-number": lambda d, o: _set_info(d, lambda i: i.update(texts=5)),
    "info-no-token-files": lambda d, o: _set_info(d, lambda i: i["clips"].pop("token_files")),
    "info-token-files-string": lambda d, o: _set_info(d, lambda i: i["clips"].update(token_files="tokens.f16.npy")),
    "info-token-files-numbers": lambda d, o: _set_info(d, lambda i: i["clips"].update(token_files=[0])),
    "info-token-files-empty": lambda d, o: _set_info(d, lambda i: i["clips"].update(token_files=[])),
    "info-token-file-nul": lambda d, o: _set_info(d, lambda i: i["clips"].update(token_files=["tok\0ens"])),
    "info-next-id-string": lambda d, o: _set_info(d, lambda i: i["clips"].update(next_id="40")),
    "info-next-id-too-small": lambda d, o: _set_info(d, lambda i: i["clips"].update(next_id=3)),
    "info-history-dict": lambda d, o: _set_info(d, lambda i: i.update(history={})),
    "info-search-params-list": lambda d, o: _set_info(d, lambda i: i["clips"].update(search_params=[1])),
    "info-search-params-unknown": lambda d, o: _set_info(d, lambda i: i["clips"].update(search_params={"bogus": 3})),
    # files named that the folder does not hold
    "token-files-traversal": lambda d, o: _set_info(
        d, lambda i: i["clips"].update(token_files=["../../../../../../../../../etc/passwd"])),
    "token-files-absolute": lambda d, o: _set_info(d, lambda i: i["clips"].update(token_files=[str(o)])),
    "text-token-files-traversal": lambda d, o: _set_info(
        d, lambda i: i["texts"].update(token_files=[os.path.relpath(o, d)])),
    "token-files-the-folder": lambda d, o: _set_info(d, lambda i: i["clips"].update(token_files=["."])),
    "token-file-symlink-outside": lambda d, o: _replace(d / "tokens.f16.npy", lambda p: p.symlink_to(o)),
    "token-file-symlink-dev-zero": lambda d, o: _replace(d / "tokens.f16.npy", lambda p: p.symlink_to("/dev/zero")),
    "token-file-symlink-loop": lambda d, o: _replace(d / "tokens.f16.npy", lambda p: p.symlink_to(p.name)),
    "faiss-symlink-outside": lambda d, o: _replace(d / "vectors.faiss", lambda p: p.symlink_to("/etc/passwd")),
    "meta-symlink-outside": lambda d, o: _replace(d / "meta.parquet", lambda p: p.symlink_to(o)),
    "info-symlink-outside": lambda d, o: _replace(d / "index.json", lambda p: p.symlink_to("/etc/passwd")),
    # files of the wrong kind
    "token-file-directory": lambda d, o: _replace(d / "tokens.f16.npy", lambda p: p.mkdir()),
    "token-file-fifo": lambda d, o: _replace(d / "tokens.f16.npy", lambda p: os.mkfifo(p)),
    "faiss-fifo": lambda d, o: _replace(d / "vectors.faiss", lambda p: os.mkfifo(p)),
    "info-fifo": lambda d, o: _replace(d / "index.json", lambda p: os.mkfifo(p)),
    "meta-directory": lambda d, o: _replace(d / "meta.parquet", lambda p: p.mkdir()),
    "token-file-missing": lambda d, o: (d / "tokens.f16.npy").unlink(),
    "info-missing": lambda d, o: (d / "index.json").unlink(),
    # token files
    "token-file-empty": lambda d, o: (d / "tokens.f16.npy").write_bytes(b""),
    "token-file-header-only": lambda d, o: _truncate(d / "tokens.f16.npy", lambda n: 128),
    "token-file-truncated": lambda d, o: _truncate(d / "tokens.f16.npy", lambda n: n // 2),
    "token-file-garbage": lambda d, o: (d / "tokens.f16.npy").write_bytes(os.urandom(5000)),
    "token-file-bad-header": lambda d, o: (d / "tokens.f16.npy").write_bytes(
        b"\x93NUMPY\x01\x00\x76\x00" + b"{'descr': '<f2', 'shape': (__import__('os'),)}".ljust(117) + b"\n"),
    "token-file-float32": lambda d, o: np.save(d / "tokens.f16.npy", np.zeros((_rows(d), _info(d)["dims"]["token"]),
                                                                              np.float32)),
    "token-file-other-dim": lambda d, o: np.save(d / "tokens.f16.npy", np.zeros((_rows(d), 3), np.float16)),
    "token-file-1d": lambda d, o: np.save(d / "tokens.f16.npy", np.zeros(_rows(d), np.float16)),
    "token-file-fewer-rows": lambda d, o: np.save(d / "tokens.f16.npy",
                                                  np.zeros((5, _info(d)["dims"]["token"]), np.float16)),
    "text-token-file-truncated": lambda d, o: _truncate(d / "text_tokens.f16.npy", lambda n: n - 10),
    "dims-token-other": lambda d, o: _set_info(d, lambda i: i["dims"].update(token=i["dims"]["token"] + 1)),
    # token ranges in the metadata
    "offset-past-the-end": lambda d, o: _meta(d, _edit_row("token_offset", 3, lambda v, t: _rows(d))),
    "offset-huge": lambda d, o: _meta(d, _edit_row("token_offset", 3, 2**62)),
    "offset-negative": lambda d, o: _meta(d, _edit_row("token_offset", 0, -5)),
    "count-negative": lambda d, o: _meta(d, _edit_row("token_count", 7, -3)),
    "count-zero": lambda d, o: _meta(d, _edit_row("token_count", 7, 0)),
    "count-huge": lambda d, o: _meta(d, _edit_row("token_count", 39, 2**31 - 1)),
    "segment-out-of-range": lambda d, o: _meta(d, _edit_row("token_segment", 2, 1)),
    "segment-negative": lambda d, o: _meta(d, _edit_row("token_segment", 2, -1)),
    "text-offset-past-the-end": lambda d, o: _meta(
        d, _edit_row("token_offset", 0, lambda v, t: _rows(d, "text_tokens.f16.npy") - 1), "texts.parquet"),
    # FAISS
    "faiss-empty": lambda d, o: (d / "vectors.faiss").write_bytes(b""),
    "faiss-truncated": lambda d, o: _truncate(d / "vectors.faiss", lambda n: n // 2),
    "faiss-garbage": lambda d, o: (d / "vectors.faiss").write_bytes(os.urandom(4096)),
    "faiss-other-dim": lambda d, o: faiss.write_index(_flat(_info(d)["dims"]["global"] + 3, 40), str(d / "vectors.faiss")),
    "faiss-fewer-vectors": lambda d, o: faiss.write_index(_flat(_info(d)["dims"]["global"], 39), str(d / "vectors.faiss")),
    "faiss-other-ids": lambda d, o: faiss.write_index(_flat(_info(d)["dims"]["global"], 40, first=1000),
                                                      str(d / "vectors.faiss")),
    "dims-global-other": lambda d, o: _set_info(d, lambda i: i["dims"].update({"global": i["dims"]["global"] * 2})),
    "texts-faiss-garbage": lambda d, o: (d / "texts.faiss").write_bytes(b"IxM2" + os.urandom(100)),
    # metadata
    "meta-empty": lambda d, o: (d / "meta.parquet").write_bytes(b""),
    "meta-garbage": lambda d, o: (d / "meta.parquet").write_bytes(os.urandom(3000)),
    "meta-truncated": lambda d, o: _truncate(d / "meta.parquet", lambda n: n - 100),
    "meta-csv": lambda d, o: (d / "meta.parquet").write_text("id,path\na,b\n"),
    "meta-row-dropped": lambda d, o: _meta(d, lambda t: t.slice(0, 39)),
    "meta-column-dropped": lambda d, o: _meta(d, lambda t: t.drop(["token_offset"])),
    "meta-id-column-dropped": lambda d, o: _meta(d, lambda t: t.drop(["id"])),
    "meta-faiss-id-strings": lambda d, o: _meta(d, lambda t: _column(t, "faiss_id", [f"x{i}" for i in range(40)],
                                                                     pa.string())),
    "meta-offset-floats": lambda d, o: _meta(d, lambda t: _column(t, "token_offset", [0.5] * 40, pa.float64())),
    "meta-faiss-id-negative": lambda d, o: _meta(d, _edit_row("faiss_id", 0, -1)),
    "meta-faiss-id-repeated": lambda d, o: _meta(d, _edit_row("faiss_id", 0, 1)),
    "meta-faiss-id-huge": lambda d, o: _meta(d, _edit_row("faiss_id", 0, 2**50)),
    "meta-faiss-id-null": lambda d, o: _meta(d, _edit_row("faiss_id", 0, None)),
    "meta-count-null": lambda d, o: _meta(d, _edit_row("token_count", 4, None)),
    "meta-text-id-dangling": lambda d, o: _meta(d, _edit_row("text_id", 0, 99_999)),
    "meta-text-id-below-minus-one": lambda d, o: _meta(d, _edit_row("text_id", 0, -7)),
    "texts-meta-garbage": lambda d, o: (d / "texts.parquet").write_bytes(os.urandom(500)),
    "texts-meta-text-null": lambda d, o: _meta(d, _edit_row("text", 0, None), "texts.parquet"),
    "texts-removed-from-info": lambda d, o: _set_info(d, lambda i: i.update(texts=None)),
}


def _flat(dim: int, n: int, first: int = 0) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    index.add_with_ids(np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32),
                       np.arange(first, first + n, dtype=np.int64))
    return index


@pytest.fixture
def damaged(request, pristine, outside, tmp_path) -> Path:
    d = tmp_path / "shared-index"
    shutil.copytree(pristine, d)
    CASES[request.param](d, outside)
    return d


def _one_line_naming(result, folder: Path) -> str:
    assert "Traceback" not in result.output, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(folder) in lines[0], result.stderr
    return lines[0]


@pytest.fixture(autouse=True)
def _no_hang():
    """A case that would block (a FIFO read, a device) fails after 60 s instead of hanging the suite."""
    def hang(*_):
        raise TimeoutError("hung reading a damaged index")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("damaged", sorted(CASES), indirect=True)
def test_damaged_index_is_one_clear_error(damaged):
    with pytest.raises(SlsearchError) as e:
        load_index(damaged)
    assert str(damaged) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SlsearchError):
        Searcher(damaged)
    for command in (["query", "wetter", "--index", str(damaged)], ["eval", "--index", str(damaged)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        _one_line_naming(result, damaged)


def test_dims_that_do_not_match_the_model(pristine, tmp_path):
    """index.json and the token files agree with each other, not with the checkpoint: refused by the
    readers that load the model (load_index cannot know)."""
    d = tmp_path / "other-dims"
    shutil.copytree(pristine, d)
    _set_info(d, lambda i: i["dims"].update(token=i["dims"]["token"] + 2))
    dim = _info(d)["dims"]["token"]
    for name in ("tokens.f16.npy", "text_tokens.f16.npy"):
        np.save(d / name, np.zeros((_rows(d, name), dim), np.float16))
    assert load_index(d).info["dims"]["token"] == dim
    with pytest.raises(SlsearchError, match="the model makes"):
        Searcher(d)
    for command in (["query", "wetter", "--index", str(d)], ["eval", "--index", str(d)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert "token states of" in _one_line_naming(result, d)


def test_the_pristine_copy_loads_and_answers(pristine, tmp_path):
    """The battery's baseline: an undamaged copy (a plain folder, no link) passes every check."""
    d = tmp_path / "copy"
    shutil.copytree(pristine, d)
    idx = load_index(d)
    assert len(idx.clips) == 40 and idx.size_bytes() > 0
    assert len(Searcher(d).search_text("regen sonne", k=3)) == 3
    assert runner.invoke(app, ["query", "regen sonne", "--index", str(d)]).exit_code == 0
    assert runner.invoke(app, ["eval", "--index", str(d), "--json"]).exit_code == 0


def test_a_token_file_linked_inside_the_folder_is_fine(pristine, tmp_path):
    """Symlinks are refused only when they lead out of the version folder."""
    d = tmp_path / "linked"
    shutil.copytree(pristine, d)
    (d / "tokens.f16.npy").rename(d / "real-tokens.npy")
    (d / "tokens.f16.npy").symlink_to("real-tokens.npy")
    assert len(load_index(d).clips) == 40


def test_a_damaged_index_blocks_add_and_remove_but_not_a_rebuild(pristine, tiny_corpus, tiny_checkpoint, tmp_path):
    d = tmp_path / "damaged"
    shutil.copytree(pristine, d)
    CASES["token-files-traversal"](d, None)
    with pytest.raises(SlsearchError, match="leads outside the index folder"):
        build_index([tiny_corpus[1]], tiny_checkpoint, d, add=True, progress=False)
    result = runner.invoke(app, ["remove", "train000", "--index", str(d)])
    assert result.exit_code == 2 and "leads outside" in _one_line_naming(result, d)
    s = build_index([tiny_corpus[1]], tiny_checkpoint, d, progress=False)  # what the message says to do
    assert s["clips_total"] == 10 and len(load_index(d).clips) == 10


def test_row_of_id_never_answers_with_another_row():
    """faiss id -> meta row, dense or (ids far apart) by binary search: -1 for any id it lacks."""
    from slsearch.index.store import RowOfId

    for ids in (np.array([4, 0, 2]), np.array([4, 0, 2 ** 40])):
        table = RowOfId(ids)
        assert table[np.array([0, 4, ids[2], 1, -1, 2 ** 41])].tolist() == [1, 0, 2, -1, -1, -1]
        assert table[ids[2]] == 2 and len(table) == int(ids.max()) + 1
    assert RowOfId(np.array([], np.int64))[np.array([0, 3])].tolist() == [-1, -1]
