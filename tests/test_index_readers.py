"""Readers against a writer (issue 21): a version a reader opened may be pruned by later commits
(two versions are kept), and the reader must keep answering from it.

The writer is another process committing `build_index(..., add=True)` in a loop; the readers run
here: Searchers opened again and again (some slowed down until their version is gone, the case that
failed before: the token files were opened only after the model had loaded), older Searchers
queried again after their version was pruned, the evaluation path and the CLI.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.errors import SlsearchError
from slsearch.eval import retrieval
from slsearch.index import search as search_module
from slsearch.index import store
from slsearch.index.build import build_index
from slsearch.index.search import Searcher
from slsearch.index.store import load_index

COMMITS = 50
CLIPS_PER_COMMIT = 2
WAIT_FOR_PRUNE_S = 5.0  # a slowed reader waits at most this long for its version to be pruned


def _writer(checkpoint: str, out: str, work: str, commits: int) -> None:
    """Runs in a spawned process: COMMITS commits of a few new clips each."""
    from gloss_poses import make_corpus
    from slsearch.rank import load_retrieval_model

    model = load_retrieval_model(checkpoint)
    for i in range(commits):
        manifest = make_corpus(Path(work) / f"batch{i:03d}", CLIPS_PER_COMMIT, seed=1000 + i, name=f"w{i:03d}_")
        build_index([manifest], None, out, add=True, model=model, progress=False)


def _wait_until_pruned(version: Path, writer) -> bool:
    """Block until a writer's commits have deleted `version` (or the writer is done)."""
    deadline = time.monotonic() + WAIT_FOR_PRUNE_S
    while version.exists() and writer.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not version.exists()


def test_readers_never_fail_while_a_writer_commits(tiny_corpus, tiny_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "indexes" / "live"
    build_index([tiny_corpus[1]], tiny_checkpoint, out, progress=False)  # 10 clips with sentences
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_writer, args=(str(tiny_checkpoint), str(out), str(tmp_path / "work"), COMMITS))
    slow = {"on": False, "pruned": 0}

    # The window that failed: between pinning a version and reading its token files, a model loads.
    # A slowed reader loads its model only once the version it pinned has been pruned.
    real_model, real_pipeline = search_module.load_retrieval_model, retrieval._index_pipeline

    def slowed(real):
        def call(*args, **kwargs):
            if slow["on"]:
                pinned = out.resolve()  # the reader's version, or a newer one pruned only after it
                slow["pruned"] += _wait_until_pruned(pinned, writer)
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(search_module, "load_retrieval_model", slowed(real_model))
    monkeypatch.setattr(retrieval, "_index_pipeline", slowed(real_pipeline))

    runner = CliRunner()
    failures: list[str] = []
    held: list[Searcher] = []  # older searchers, asked again after their versions are gone
    queries = served_by_pruned = rounds = evals = 0
    t0 = time.perf_counter()
    writer.start()
    try:
        while writer.is_alive() or rounds == 0:
            slow["on"] = rounds % 2 == 0
            try:
                searcher = Searcher(out, model=tiny_checkpoint)
                held = (held + [searcher])[-4:]
                for s in held:
                    served_by_pruned += not s.shards[0][1].path.exists()
                    assert len(s.search_text("regen sonne", k=3)) == 3
                    queries += 1
                report = retrieval.evaluate_index(out, ks=(1, 5))
                assert report["count"] >= 10
                evals += 1
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                failures.append(f"{type(e).__name__}: {e}")
            slow["on"] = False
            r = runner.invoke(app, ["query", "regen sonne", "--index", str(out), "--model", str(tiny_checkpoint),
                                    "--json", "-k", "3"])
            queries += 1
            if r.exit_code != 0:
                failures.append(f"CLI exit {r.exit_code}: {r.output[-500:]}")
            rounds += 1
    finally:
        writer.join(timeout=120)
        if writer.is_alive():
            writer.kill()
    seconds = time.perf_counter() - t0
    history = json.loads((out / "index.json").read_text())["history"]
    print(f"{COMMITS} commits in {seconds:.1f} s; {rounds} reader rounds, {queries} queries, {evals} evaluations, "
          f"{served_by_pruned} answered from a pruned version, {slow['pruned']} slowed readers outlived theirs")
    assert writer.exitcode == 0 and len(history) == 1 + COMMITS  # the writer committed every time
    assert failures == []
    assert slow["pruned"] >= 1 and served_by_pruned >= 1  # the race was really run


def _two_versions(pristine: Path, parent: Path) -> Path:
    """An index link `parent/idx` onto `.idx.v1`, with a copy `.idx.v2` ready to swap in."""
    parent.mkdir()
    for v in (".idx.v1", ".idx.v2"):
        shutil.copytree(pristine, parent / v)
    (parent / "idx").symlink_to(".idx.v1")
    return parent / "idx"


@pytest.fixture(scope="module")
def pristine(tiny_corpus, tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("readers") / "idx"
    build_index([tiny_corpus[1]], tiny_checkpoint, out, progress=False)
    return out.resolve()


def test_a_version_pruned_while_it_is_opened_is_retried_on_the_new_one(pristine, tmp_path, monkeypatch):
    link = _two_versions(pristine, tmp_path / "swap")
    real, calls = store._load_version, []

    def commit_meanwhile(given, folder, mmap):
        calls.append(folder.name)
        if len(calls) == 1:  # two commits land between resolving the link and opening the files
            (tmp_path / "swap" / "new").symlink_to(".idx.v2")
            os.replace(tmp_path / "swap" / "new", link)
            shutil.rmtree(folder)
        return real(given, folder, mmap)

    monkeypatch.setattr(store, "_load_version", commit_meanwhile)
    idx = load_index(link)
    assert calls == [".idx.v1", ".idx.v2"] and idx.path.name == ".idx.v2" and len(idx.clips) == 10


def test_a_broken_version_that_stays_put_is_not_retried(pristine, tmp_path, monkeypatch):
    link = _two_versions(pristine, tmp_path / "broken")
    (link.resolve() / "meta.parquet").write_bytes(b"garbage")
    real, calls = store._load_version, []
    monkeypatch.setattr(store, "_load_version", lambda *a: calls.append(1) or real(*a))
    with pytest.raises(SlsearchError, match="meta.parquet is unreadable"):
        load_index(link)
    assert calls == [1]


def test_an_opened_index_needs_none_of_its_files(pristine, tmp_path):
    """What a reader pins: after load_index, the version folder can go entirely."""
    d = tmp_path / "gone"
    shutil.copytree(pristine, d)
    idx = load_index(d)
    shutil.rmtree(d)
    clips = idx.clips
    tokens = idx.token_store("clips").gather_flat(*(clips.column(c)[:3] for c in ("token_segment", "token_offset",
                                                                                  "token_count")))
    assert len(tokens) == clips.column("token_count")[:3].sum() and idx.size_bytes() > 0
