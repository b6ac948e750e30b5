"""Shard sets (issue 19): indexes built apart, searched as one with a correct global top-k; adding a shard
touches no other; a shard of another model is refused with the reason."""

import json
import os
import shutil
import threading
from unittest import mock

import pytest
import torch
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data.manifest import read_manifest
from slsearch.errors import SlsearchError
from slsearch.index.build import build_index
from slsearch.index.search import Searcher
from slsearch.index.shards import SHARDS_FILE, read_shard_set
from slsearch.models.checkpoint import load_model, save_model
from slsearch.rank import RetrievalModel, load_retrieval_model

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_retrieval_model(tiny_checkpoint)


@pytest.fixture(scope="module")
def one_and_set(tiny_corpus, tiny_checkpoint, model, tmp_path_factory):
    """One index over train + dev, and a set of two shards (train, dev) built by the CLI."""
    d = tmp_path_factory.mktemp("shards")
    train, dev = tiny_corpus
    build_index([train, dev], tiny_checkpoint, d / "one", progress=False, model=model)
    for name, manifest in (("train", train), ("dev", dev)):
        r = runner.invoke(app, ["index", str(manifest), "--model", str(tiny_checkpoint), "--out", str(d / "set"),
                                "--shard", name, "--json"])
        assert r.exit_code == 0, r.output
        s = json.loads(r.stdout)
        assert s["shard"] == name and s["set"] == str(d / "set")
    assert s["shards"] == 2 and s["set_clips"] == 50
    return d / "one", d / "set"


def _ranked(hits):
    return [(h.id, h.text, round(h.score, 4)) for h in hits]


def test_a_set_ranks_exactly_as_one_index_over_its_clips(one_and_set, tiny_corpus, model):
    one, shard_set = (Searcher(p, model=model) for p in one_and_set)
    assert shard_set.is_set and len(shard_set.shards) == 2 and len(shard_set) == len(one) == 50
    clips = read_manifest(tiny_corpus[0]) + read_manifest(tiny_corpus[1])
    # one sentence is in both manifests, hence in both shards: one sentence all the same
    assert shard_set.sentence_count() == one.sentence_count() == len({c.text for c in clips}) == 49
    texts = [c.text for c in clips]
    # the two shards' candidates merged into one global top-N and ranked once: the same hits and scores
    for k in (1, 5, 20):
        assert [_ranked(h) for h in shard_set.search_text(texts, k=k, n_candidates=8)] == \
               [_ranked(h) for h in one.search_text(texts, k=k, n_candidates=8)]
    for c in clips[::7]:
        assert _ranked(shard_set.search_video(c.path, k=6)) == _ranked(one.search_video(c.path, k=6))
        assert _ranked(shard_set.search_video(c.path, k=6, target="clips")) == \
               _ranked(one.search_video(c.path, k=6, target="clips"))
    if one.readings is not None:  # BM25 over every shard's readings at once: the same scores
        for c in clips[::9]:
            assert [round(h.score, 4) for h in shard_set.search_glosses(c.gloss, k=5)] == \
                   [round(h.score, 4) for h in one.search_glosses(c.gloss, k=5)]
    # with two threads the shards are searched at once (FAISS releases the GIL): the same hits, from two threads
    parallel = Searcher(one_and_set[1], model=model, threads=2)
    seen = set()
    search = type(parallel.clips.parts[0]).search

    def spy(part, *a, **kw):
        seen.add(threading.current_thread().name)
        return search(part, *a, **kw)

    expected = [_ranked(h) for h in one.search_text(texts, k=5, n_candidates=8)], \
        _ranked(one.search_video(clips[3].path, k=6))
    with mock.patch.object(type(parallel.clips.parts[0]), "search", spy):
        got = [_ranked(h) for h in parallel.search_text(texts, k=5, n_candidates=8)], \
            _ranked(parallel.search_video(clips[3].path, k=6))
    assert got == expected
    assert seen and all(n.startswith("slsearch-shard") for n in seen)  # never on the query's own thread
    # hits from both shards come back (the dev clips live in the second shard only)
    assert {h.id for h in shard_set.search_text(clips[45].text, k=3)} & {c.id for c in clips[40:]}
    # evaluated as one index too
    from slsearch.eval.retrieval import evaluate_index

    whole, sharded = (evaluate_index(p, ks=(1, 5)) for p in one_and_set)
    assert sharded["metrics"] == whole["metrics"] and sharded["count"] == 50
    assert shard_set.version == "train@v1 dev@v1"
    assert shard_set.info["shards"][1] == {"name": "dev", "version": "v1", "clips": 10, "texts": 10}


def test_a_sentence_two_shards_hold_is_one_result(one_and_set, tiny_corpus, tiny_checkpoint, model, tmp_path):
    shard_set = tmp_path / "set"
    for name in ("a", "b"):  # the same clips twice: every sentence in both shards
        build_index([tiny_corpus[1]], tiny_checkpoint, shard_set / name, progress=False, model=model)
        r = runner.invoke(app, ["shards", str(shard_set), "--add", str(shard_set / name)])
        assert r.exit_code == 0, r.output
    s = Searcher(shard_set, model=model)
    assert len(s) == 20 and s.sentence_count() == 10
    clip = read_manifest(tiny_corpus[1])[3]
    texts = [h.text for h in s.search_video(clip.path, k=10)]
    assert len(texts) == len(set(texts)) == 10


def test_adding_a_shard_touches_no_other(one_and_set, tiny_corpus, tiny_checkpoint, tmp_path):
    shard_set = tmp_path / "set"
    r = runner.invoke(app, ["index", str(tiny_corpus[0]), "--model", str(tiny_checkpoint), "--out", str(shard_set),
                            "--shard", "2026-11"])
    assert r.exit_code == 0, r.output
    first = shard_set / "2026-11"
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in first.resolve().iterdir()}
    link = os.path.realpath(first)
    r = runner.invoke(app, ["index", str(tiny_corpus[1]), "--model", str(tiny_checkpoint), "--out", str(shard_set),
                            "--shard", "2026-12"])
    assert r.exit_code == 0, r.output
    assert os.path.realpath(first) == link
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in first.resolve().iterdir()} == before
    assert read_shard_set(shard_set).names() == ["2026-11", "2026-12"]
    # --add grows one shard only; the set sees it
    clips = read_manifest(tiny_corpus[1])
    r = runner.invoke(app, ["index", str(tiny_corpus[1]), "--out", str(shard_set), "--shard", "2026-11", "--add",
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["clips_added"] == 10 and json.loads(r.stdout)["set_clips"] == 60
    assert os.path.realpath(shard_set / "2026-12") != os.path.realpath(first)
    r = runner.invoke(app, ["shards", str(shard_set), "--json"])
    listed = json.loads(r.stdout)
    assert [(x["name"], x["clips"], x["version"]) for x in listed["shards"]] == [("2026-11", 50, "v2"),
                                                                                 ("2026-12", 10, "v1")]
    assert listed["clips"] == 60
    # a query over the set; --drop takes a shard out and leaves its folder
    r = runner.invoke(app, ["query", clips[0].text, "--index", str(shard_set), "-k", "2", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["results"][0]["id"] == clips[0].id
    # remove: from every shard that holds the clip, and only those; an unknown id removes nothing
    r = runner.invoke(app, ["remove", clips[1].id, "nobody", "--index", str(shard_set)])
    assert r.exit_code == 2 and "no clip with id nobody in any shard" in r.stderr
    r = runner.invoke(app, ["remove", clips[1].id, "--index", str(shard_set), "--json"])
    assert r.exit_code == 0, r.output
    removed = json.loads(r.stdout)
    assert removed["shards"] == {"2026-11": 1, "2026-12": 1} and removed["clips_total"] == 58
    r = runner.invoke(app, ["remove", "train000", "--index", str(shard_set), "--json"])
    assert json.loads(r.stdout)["shards"] == {"2026-11": 1} and os.path.realpath(shard_set / "2026-12").endswith("v2")
    r = runner.invoke(app, ["shards", str(shard_set), "--drop", "2026-12", "--json"])
    assert r.exit_code == 0 and [x["name"] for x in json.loads(r.stdout)["shards"]] == ["2026-11"]
    assert (shard_set / "2026-12" / "index.json").exists()


@pytest.fixture(scope="module")
def other_checkpoint(tiny_checkpoint, tmp_path_factory):
    other = load_model(tiny_checkpoint)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    out = tmp_path_factory.mktemp("other") / "other"
    save_model(other, out)
    return out


def test_a_shard_of_another_model_is_refused(one_and_set, tiny_corpus, other_checkpoint, model, tmp_path):
    shard_set = tmp_path / "set"
    shutil.copytree(one_and_set[1], shard_set, symlinks=True)
    listed = (shard_set / SHARDS_FILE).read_text()
    # built here: refused before anything is embedded, nothing written
    r = runner.invoke(app, ["index", str(tiny_corpus[1]), "--model", str(other_checkpoint), "--out", str(shard_set),
                            "--shard", "other"])
    assert r.exit_code == 2 and "vectors of two models are not comparable" in r.stderr
    assert not (shard_set / "other").exists() and (shard_set / SHARDS_FILE).read_text() == listed
    # built elsewhere and registered: refused too
    build_index([tiny_corpus[1]], other_checkpoint, tmp_path / "elsewhere", progress=False)
    r = runner.invoke(app, ["shards", str(shard_set), "--add", str(tmp_path / "elsewhere")])
    assert r.exit_code == 2 and "not comparable" in r.stderr
    assert (shard_set / SHARDS_FILE).read_text() == listed
    # a shard whose index changed model behind the set's back: the set refuses to search, naming it
    dev = (shard_set / "dev").resolve()
    info = json.loads((dev / "index.json").read_text())
    info["checkpoint"]["hash"] = "0123456789abcdef"
    (dev / "index.json").write_text(json.dumps(info))
    with pytest.raises(SlsearchError, match="shard dev .* was built with checkpoint 0123456789abcdef"):
        Searcher(shard_set, model=model)
    with pytest.raises(SlsearchError, match="the model given is"):
        Searcher(one_and_set[1], model=RetrievalModel(load_model(other_checkpoint)))


def test_sets_and_indexes_are_not_mixed_up(one_and_set, tiny_corpus, tiny_checkpoint, tmp_path):
    one, shard_set = one_and_set
    r = runner.invoke(app, ["index", str(tiny_corpus[1]), "--model", str(tiny_checkpoint), "--out", str(shard_set)])
    assert r.exit_code == 2 and "a shard set; build or grow one of its shards with --shard" in r.stderr
    r = runner.invoke(app, ["index", str(tiny_corpus[1]), "--model", str(tiny_checkpoint), "--out", str(one),
                            "--shard", "x"])
    assert r.exit_code == 2 and "an index, not a shard set" in r.stderr
    r = runner.invoke(app, ["index", str(tiny_corpus[1]), "--model", str(tiny_checkpoint), "--out",
                            str(tmp_path / "s"), "--shard", "../escape"])
    assert r.exit_code == 2 and "a shard name is letters, digits" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / SHARDS_FILE).write_text(json.dumps({"format": 1, "checkpoint": {"hash": "x"}, "shards": []}))
    r = runner.invoke(app, ["query", "regen", "--index", str(empty)])
    assert r.exit_code == 2 and "has no shards yet" in r.stderr
    (empty / SHARDS_FILE).write_text("{not json")
    r = runner.invoke(app, ["query", "regen", "--index", str(empty)])
    assert r.exit_code == 2 and SHARDS_FILE in r.stderr and "unreadable" in r.stderr


def test_the_server_answers_from_a_set_and_follows_a_new_shard(one_and_set, tiny_corpus, tiny_checkpoint, model,
                                                               tmp_path):
    from fastapi.testclient import TestClient

    from slsearch.index.shards import register_shard
    from slsearch.serve.app import create_app

    shard_set = tmp_path / "set"
    build_index([tiny_corpus[0]], tiny_checkpoint, shard_set / "a", progress=False, model=model)
    register_shard(shard_set, "a", shard_set / "a")
    application = create_app(shard_set, model=model)
    live = application.state.live
    with TestClient(application) as client:
        stats = client.get("/api/stats").json()
        assert stats["clips"] == 40 and stats["version"] == "a@v1" and stats["index_type"] == "flat"
        dev = read_manifest(tiny_corpus[1])
        build_index([tiny_corpus[1]], tiny_checkpoint, shard_set / "b", progress=False, model=model)
        register_shard(shard_set, "b", shard_set / "b")
        live.check(wait=True)
        assert client.get("/api/stats").json()["clips"] == 50
        hit = client.get("/api/search", params={"q": dev[2].text, "k": 1}).json()["results"][0]
        assert hit["id"] == dev[2].id
        assert client.get(f"/api/clips/{dev[2].id}").json()["text"] == dev[2].text
        assert live.current().searcher.model is model  # same checkpoint: the model is reused


def _serve(app, tls: tuple[str, str] | None = None):
    """A uvicorn server for `app` on a free local port, in a thread: (base URL, stop). `tls`: (certificate,
    key) PEM files, served as `serve --tls-cert --tls-key` does."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ssl = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **ssl))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the shard server did not start"
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(timeout=10)

    return f"{'https' if tls else 'http'}://127.0.0.1:{port}", stop


def test_shards_served_by_other_processes_rank_as_one_index(one_and_set, tiny_corpus, model, tmp_path):
    """One `serve --shard-api` per shard, a set naming them by URL: the same hits as one index."""
    from slsearch.serve.app import create_app

    one = Searcher(one_and_set[0], model=model)
    servers = [_serve(create_app(one_and_set[1] / name, model=model, shard_api=True)) for name in ("train", "dev")]
    try:
        remote_set = tmp_path / "remote"
        for (url, _), name in zip(servers, ("train", "dev")):
            r = runner.invoke(app, ["shards", str(remote_set), "--add", url, "--name", name, "--json"])
            assert r.exit_code == 0, r.output
        listed = json.loads(r.stdout)
        assert [(x["name"], x["clips"], x["version"]) for x in listed["shards"]] == [("train", 40, "v1"),
                                                                                     ("dev", 10, "v1")]
        remote = Searcher(remote_set, model=model)
        assert len(remote) == 50 and remote.version == "train@v1 dev@v1"
        clips = read_manifest(tiny_corpus[0]) + read_manifest(tiny_corpus[1])
        assert [_ranked(h) for h in remote.search_text([c.text for c in clips], k=5, n_candidates=8)] == \
               [_ranked(h) for h in one.search_text([c.text for c in clips], k=5, n_candidates=8)]
        for c in clips[::11]:
            assert _ranked(remote.search_video(c.path, k=5)) == _ranked(one.search_video(c.path, k=5))
            assert _ranked(remote.search_video(c.path, k=5, target="clips")) == \
                   _ranked(one.search_video(c.path, k=5, target="clips"))
        # the CLI over the remote set; what needs the shards' folders says so
        r = runner.invoke(app, ["query", clips[3].text, "--index", str(remote_set), "-k", "1", "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["results"][0]["id"] == clips[3].id
        r = runner.invoke(app, ["remove", clips[3].id, "--index", str(remote_set)])
        assert r.exit_code == 2 and "served by http://127.0.0.1" in r.stderr
        # a shard server that does not answer is named
        r = runner.invoke(app, ["shards", str(remote_set), "--add", "http://127.0.0.1:9", "--name", "gone"])
        assert r.exit_code == 2 and "does not answer" in r.stderr
    finally:
        for _, stop in servers:
            stop()
    with pytest.raises(SlsearchError, match="does not answer"):
        Searcher(remote_set, model=model)


def test_a_front_follows_a_served_shard_that_grows(tiny_corpus, tiny_checkpoint, model, tmp_path):
    import time

    from fastapi.testclient import TestClient

    from slsearch.index.shards import register_shard
    from slsearch.serve.app import create_app

    build_index([tiny_corpus[1]], tiny_checkpoint, tmp_path / "served", progress=False, model=model)
    url, stop = _serve(create_app(tmp_path / "served", model=model, shard_api=True))
    try:
        build_index([tiny_corpus[0]], tiny_checkpoint, tmp_path / "set" / "local", progress=False, model=model)
        register_shard(tmp_path / "set", "local", tmp_path / "set" / "local")  # a set may mix both kinds
        register_shard(tmp_path / "set", "served", url)
        front = create_app(tmp_path / "set", model=model)
        with TestClient(front) as client:
            assert client.get("/api/stats").json()["clips"] == 50
            extra = read_manifest(tiny_corpus[0])[:5]
            manifest = tmp_path / "extra.jsonl"
            manifest.write_text("".join(json.dumps({"id": f"x{c.id}", "path": str(c.path), "text": c.text}) + "\n"
                                        for c in extra))
            build_index([manifest], tiny_checkpoint, tmp_path / "served", add=True, progress=False, model=model)
            deadline = time.monotonic() + 30
            while client.get("/api/stats").json()["clips"] != 55:  # the shard's server, then the front, follow
                assert time.monotonic() < deadline, "the front did not follow the served shard's new version"
                front.state.live.check(wait=True)
                time.sleep(0.2)
            assert front.state.live.current().name == "local@v1 served@v2"
            hits = client.get("/api/search", params={"q": extra[0].text, "k": 10}).json()["results"]
            score = {h["id"]: h["score"] for h in hits}
            assert score[f"x{extra[0].id}"] == score[extra[0].id]  # the served copy scores as its local twin
    finally:
        stop()


def test_a_shard_served_with_a_key_answers_only_a_front_that_has_it(tiny_corpus, tiny_checkpoint, model, tmp_path,
                                                                     monkeypatch):
    from slsearch.index.remote import SHARD_KEY_ENV
    from slsearch.serve.app import create_app

    build_index([tiny_corpus[1]], tiny_checkpoint, tmp_path / "served", progress=False, model=model)
    url, stop = _serve(create_app(tmp_path / "served", model=model, shard_api=True, shard_key="s3cret"))
    try:
        monkeypatch.delenv(SHARD_KEY_ENV, raising=False)
        r = runner.invoke(app, ["shards", str(tmp_path / "set"), "--add", url, "--name", "dev"])
        assert r.exit_code == 2 and "answered 401" in r.stderr and SHARD_KEY_ENV in r.stderr
        monkeypatch.setenv(SHARD_KEY_ENV, "wrong")
        r = runner.invoke(app, ["shards", str(tmp_path / "set"), "--add", url, "--name", "dev"])
        assert r.exit_code == 2 and "answered 401" in r.stderr
        monkeypatch.setenv(SHARD_KEY_ENV, "s3cret")
        r = runner.invoke(app, ["shards", str(tmp_path / "set"), "--add", url, "--name", "dev", "--json"])
        assert r.exit_code == 0, r.output
        text = read_manifest(tiny_corpus[1])[2].text
        r = runner.invoke(app, ["query", text, "--index", str(tmp_path / "set"), "-k", "1", "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["results"][0]["text"] == text
    finally:
        stop()
    # beyond this machine, a shard API without a key is refused before anything loads
    monkeypatch.delenv(SHARD_KEY_ENV, raising=False)
    r = runner.invoke(app, ["serve", "--index", str(tmp_path / "served"), "--host", "0.0.0.0", "--shard-api"])
    assert r.exit_code == 2 and SHARD_KEY_ENV in r.stderr and "127.0.0.1" in r.stderr


def test_a_shard_served_over_tls_answers_a_front_that_trusts_its_authority(tiny_corpus, tiny_checkpoint, model,
                                                                           tmp_path, monkeypatch):
    """`serve --tls-cert --tls-key`: the front checks the shard's certificate against SLSEARCH_SHARD_CA (a private
    authority) and says so in one line when it cannot; with the authority, the shard searches as a local one."""
    import trustme

    from slsearch.index.remote import SHARD_CA_ENV, SHARD_KEY_ENV
    from slsearch.serve.app import create_app

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "shard.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "shard.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    build_index([tiny_corpus[1]], tiny_checkpoint, tmp_path / "served", progress=False, model=model)
    one = Searcher(tmp_path / "served", model=model)
    url, stop = _serve(create_app(tmp_path / "served", model=model, shard_api=True, shard_key="k"),
                       tls=(str(tmp_path / "shard.pem"), str(tmp_path / "shard.key")))
    try:
        assert url.startswith("https://")
        monkeypatch.setenv(SHARD_KEY_ENV, "k")
        monkeypatch.delenv(SHARD_CA_ENV, raising=False)
        r = runner.invoke(app, ["shards", str(tmp_path / "set"), "--add", url, "--name", "dev"])
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
        assert "not trusted" in r.stderr and SHARD_CA_ENV in r.stderr
        monkeypatch.setenv(SHARD_CA_ENV, str(tmp_path / "nowhere.pem"))
        r = runner.invoke(app, ["shards", str(tmp_path / "set"), "--add", url, "--name", "dev"])
        assert r.exit_code == 2 and "nowhere.pem" in r.stderr and "names no file" in r.stderr
        monkeypatch.setenv(SHARD_CA_ENV, str(tmp_path / "ca.pem"))
        r = runner.invoke(app, ["shards", str(tmp_path / "set"), "--add", url, "--name", "dev", "--json"])
        assert r.exit_code == 0, r.output
        remote = Searcher(tmp_path / "set", model=model)
        texts = [c.text for c in read_manifest(tiny_corpus[1])]
        assert [_ranked(h) for h in remote.search_text(texts, k=5)] == [_ranked(h) for h in one.search_text(texts, k=5)]
    finally:
        stop()
    # the CLI's own checks, before anything loads
    r = runner.invoke(app, ["serve", "--index", str(tmp_path / "served"), "--tls-cert", str(tmp_path / "shard.pem")])
    assert r.exit_code == 2 and "--tls-key" in r.stderr
    r = runner.invoke(app, ["serve", "--index", str(tmp_path / "served"), "--tls-cert", str(tmp_path / "no.pem"),
                            "--tls-key", str(tmp_path / "shard.key")])
    assert r.exit_code == 2 and "no.pem" in r.stderr and "no such file" in r.stderr
