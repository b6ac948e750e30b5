"""`slsearch serve`'s JSON API through FastAPI's TestClient (issue 16): every endpoint, HTTP range
requests on a real video, skeleton previews of pose clips, every bad input (one sentence, never a 500),
time limits, search beside a slow upload, a new index version picked up while serving, /metrics, the
offline /docs, and the `serve` command's arguments.

The index holds the tiny corpus's 40 training clips (pose files) and two clips of one real H.264
video: a segment (1 s to 3 s) and the whole file. Their pose is put into the pose cache first, as
MediaPipe would find no signer in a generated picture (as in test_serve_browser.py).
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gloss_poses import WORDS, make_clip, make_corpus

CUT_ID, WHOLE_ID = "news_cut", "news_whole"
VIDEO_GLOSSES = [6, 0, 8]  # morgen regen nord
CUT = (1.0, 3.0)


def _video_clips(folder: Path, video_writer) -> tuple[Path, Path, str]:
    """A 4 s H.264 video and a manifest with two clips of it (1-3 s, and the whole file), poses cached."""
    from slsearch.data.extract import cache_key, cache_path
    from slsearch.data.manifest import Clip, write_manifest
    from slsearch.data.pose_files import DEFAULT_FPS, save_pose_npz

    h, w, n = 96, 128, 100
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    frames = np.stack([np.broadcast_to((ramp + 6 * t) % 256, (h, w, 3)) for t in range(n)]).astype(np.uint8)
    video = video_writer(folder / "news.mp4", frames, fps=25, codec="libx264")
    pose = make_clip(VIDEO_GLOSSES, np.random.default_rng(7))
    for start, end in (CUT, (None, None)):
        save_pose_npz(cache_path(cache_key(video, DEFAULT_FPS, start, end)), pose, 25.0)
    sentence = " ".join(WORDS[g] for g in VIDEO_GLOSSES)
    manifest = write_manifest([Clip(id=CUT_ID, path=video, text=sentence, split="test", start=CUT[0], end=CUT[1]),
                               Clip(id=WHOLE_ID, path=video, text=sentence, split="test")], folder / "video.jsonl")
    return manifest, video, sentence


@pytest.fixture(scope="module")
def corpus(tiny_corpus, tmp_path_factory, video_writer):
    from slsearch.data.manifest import read_manifest

    work = tmp_path_factory.mktemp("serve-api")
    manifest, video, sentence = _video_clips(work / "media", video_writer)
    train = read_manifest(tiny_corpus[0])
    assert sentence not in {c.text for c in train}
    return {"work": work, "manifest": manifest, "video": video, "sentence": sentence, "train": train}


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    from slsearch.rank import load_retrieval_model

    return load_retrieval_model(tiny_checkpoint)


@pytest.fixture(scope="module")
def index_dir(corpus, tiny_corpus, tiny_checkpoint, model):
    from slsearch.index.build import build_index

    out = corpus["work"] / "indexes" / "news"
    s = build_index([tiny_corpus[0], corpus["manifest"]], tiny_checkpoint, out, progress=False, model=model)
    assert s["clips_added"] == 42 and s["failures"] == 0, s
    return out


@pytest.fixture(scope="module")
def app(index_dir, model, corpus):
    from slsearch.serve.app import create_app
    from slsearch.serve.limits import ServeSettings

    return create_app(index_dir, model=model, settings=ServeSettings(preview_dir=corpus["work"] / "previews"))


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


def _pose_file(corpus) -> tuple[Path, bytes]:
    clip = corpus["train"][7]
    return clip.path, Path(clip.path).read_bytes()


def assert_one_sentence(r, status: int | tuple[int, ...]) -> str:
    assert r.status_code in (status if isinstance(status, tuple) else (status,)), (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    detail = body["detail"]
    assert detail and "\n" not in detail and "Traceback" not in detail and len(detail) < 600, detail
    assert "slsearch-upload-" not in detail and "/tmp" not in detail, detail  # no server paths
    return detail


# --- the endpoints ---------------------------------------------------------------------------------

def test_healthz_and_stats(client, model):
    h = client.get("/healthz").json()
    assert h == {"status": "ok", "index": "news", "version": "v1", "clips": 42}
    s = client.get("/api/stats").json()
    assert s["clips"] == 42 and s["sentences"] == 41  # the two video clips share their sentence
    assert s["splits"] == {"test": 2, "train": 40} and s["media"] == {"video": 2, "skeleton": 40, "none": 0}
    assert s["checkpoint"] == model.hash and s["version"] == "v1" and s["index_type"] == "flat"
    assert s["created"] and s["updated"] and s["reloads"] == 0


def test_text_search_returns_ranked_playable_clips(client, corpus):
    target = corpus["train"][3]
    r = client.get("/api/search", params={"q": "  " + target.text.upper() + "\u200b ", "k": 5})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["mode"] == "t2v" and a["version"] == "v1" and a["took_ms"] > 0
    assert a["query"] == target.text.upper()  # normalised: spaces and the zero-width space gone
    hits = a["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert all(x["score"] >= y["score"] for x, y in zip(hits, hits[1:]))
    top = hits[0]
    assert set(top) == {"rank", "score", "id", "text", "glosses", "start", "end", "media_url", "media_kind", "span"}
    # a skeleton preview is the clip alone: its span lies inside the clip's own seconds
    assert isinstance(top["span"], list) and 0 <= top["span"][0] < top["span"][1]
    assert top["id"] == target.id and top["text"] == target.text
    assert top["media_kind"] == "skeleton" and top["media_url"] == f"/api/clips/{target.id}/media"
    assert top["start"] is None and top["end"] is None


def test_video_results_play_their_segment(client, corpus):
    hits = client.get("/api/search", params={"q": corpus["sentence"], "k": 3}).json()["results"]
    by_id = {h["id"]: h for h in hits[:2]}
    assert set(by_id) == {CUT_ID, WHOLE_ID}
    assert by_id[CUT_ID]["media_kind"] == "video" and (by_id[CUT_ID]["start"], by_id[CUT_ID]["end"]) == CUT
    assert by_id[WHOLE_ID]["media_kind"] == "video" and by_id[WHOLE_ID]["start"] is None
    assert by_id[CUT_ID]["media_url"] == f"/api/clips/{CUT_ID}/media"


def test_clip_metadata_names_no_folder(client, corpus):
    m = client.get(f"/api/clips/{CUT_ID}").json()
    assert m["id"] == CUT_ID and m["path"] == "news.mp4" and m["text"] == corpus["sentence"]
    assert m["split"] == "test" and (m["start"], m["end"]) == CUT and m["media_kind"] == "video"
    assert m["frames"] > 0 and m["fps"] == 25.0 and m["duration"] > 0
    assert set(m) == {"id", "path", "text", "glosses", "split", "signer", "duration", "frames", "fps", "start", "end",
                      "media_url", "media_kind"}
    pose_clip = corpus["train"][0]
    p = client.get(f"/api/clips/{pose_clip.id}").json()
    assert p["path"] == Path(pose_clip.path).name and p["media_kind"] == "skeleton"
    assert "/" not in json.dumps([m["path"], p["path"]])


def test_video_media_with_range_requests(client, corpus):
    data = corpus["video"].read_bytes()
    url = f"/api/clips/{CUT_ID}/media"
    full = client.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["content-type"] == "video/mp4" and full.headers["accept-ranges"] == "bytes"
    part = client.get(url, headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206 and part.content == data[100:1124]
    assert part.headers["content-range"] == f"bytes 100-1123/{len(data)}"
    assert part.headers["content-length"] == "1024"
    tail = client.get(url, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    open_end = client.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert open_end.status_code == 206 and open_end.content == data[-10:]
    beyond = client.get(url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
    head = client.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data)) and not head.content


def test_pose_clip_plays_as_a_cached_skeleton_preview(client, corpus):
    import av

    clip = corpus["train"][5]
    url = f"/api/clips/{clip.id}/media"
    first = client.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "video/mp4", first.text
    previews = list((corpus["work"] / "previews").glob("*.mp4"))
    assert len(previews) == 1 and previews[0].read_bytes() == first.content  # drawn once, kept
    with av.open(io.BytesIO(first.content)) as f:
        frames = sum(1 for _ in f.decode(video=0))
    assert frames == len(np.load(clip.path)["pose"])
    again = client.get(url, headers={"Range": "bytes=0-99"})
    assert again.status_code == 206 and again.content == first.content[:100]
    assert list((corpus["work"] / "previews").glob("*")) == previews  # no temporary left behind


def test_search_with_an_uploaded_clip(client, corpus):
    path, data = _pose_file(corpus)
    clip = corpus["train"][7]
    r = client.post("/api/search/clip", files={"file": ("mine.npz", data)}, params={"k": 3})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["mode"] == "v2t" and a["query"] == "mine.npz" and len(a["results"]) == 3
    top = a["results"][0]
    assert top["text"] == clip.text and top["id"] == clip.id and top["media_kind"] == "skeleton"
    r = client.post("/api/search/clip", files={"file": ("mine.npz", data)}, params={"target": "clips", "k": 2})
    assert r.status_code == 200 and r.json()["mode"] == "v2v" and r.json()["results"][0]["id"] == clip.id
    # the file's name does not decide what it is: a pose file called .mp4 is still read as a pose
    r = client.post("/api/search/clip", files={"file": ("clip.mp4", data)}, params={"k": 1})
    assert r.status_code == 200 and r.json()["results"][0]["text"] == clip.text


def test_translate_an_uploaded_clip(client, corpus):
    _, data = _pose_file(corpus)
    r = client.post("/api/translate", files={"file": ("mine.npz", data)})
    assert r.status_code == 200, r.text
    t = r.json()
    assert set(t) == {"translation", "glosses", "score"} and isinstance(t["translation"], str)
    assert t["glosses"] is None or isinstance(t["glosses"], str)
    assert isinstance(t["score"], float)


def test_page_and_offline_docs(client):
    import re

    page = client.get("/")
    if page.status_code == 200:  # the page is installed (slsearch/serve/static)
        assert page.headers["content-type"].startswith("text/html")
        assert client.get("/static/app.js").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", docs.text) + re.findall(r"url:\s*'([^']+)'", docs.text)
    assert urls and all(u.startswith("/") for u in urls), urls  # nothing from the internet
    assert all(client.get(u).status_code == 200 for u in urls)
    assert "validatorUrl" in docs.text
    spec = client.get("/openapi.json").json()
    assert {"/healthz", "/api/search", "/api/search/clip", "/api/translate", "/api/clips/{clip_id}",
            "/api/clips/{clip_id}/media", "/api/stats"} <= set(spec["paths"])


# --- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [
    {"q": ""}, {"q": "   "}, {"q": "\u200b\u200e"}, {"q": "a" * 2001}, {"q": "wort " * 5000}, {},
    {"q": "regen", "k": 0}, {"q": "regen", "k": 101}, {"q": "regen", "k": "zehn"}, {"q": "regen", "k": -3},
])
def test_bad_text_queries_are_422(client, params):
    assert_one_sentence(client.get("/api/search", params=params), 422)


def test_raw_query_strings_never_fail(client):
    assert_one_sentence(client.get("/api/search?q=%00%01%1b"), 422)  # control characters only: empty
    assert_one_sentence(client.get("/api/search?q=regen&k=1e9"), 422)
    for raw in ("q=%FF%FE", "q=%ED%A0%80", "q=regen&q=wind", "q=%", "q=regen&k=5&k=", "q=\u202e"):
        r = client.get(f"/api/search?{raw}")
        assert r.status_code in (200, 422) and "Traceback" not in r.text, (raw, r.text)


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


BAD_UPLOADS = [
    ("notes.txt", b"wetter morgen", 415),
    ("clip.mp4", b"hello, this is not a video at all", 415),
    ("picture.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 415),
    ("empty.npz", b"", 422),
    ("broken.mp4", b"\0\0\0\x18ftypisom" + os.urandom(2000), 422),
    ("broken.webm", b"\x1a\x45\xdf\xa3" + os.urandom(500), 422),
    ("archive.npz", b"PK\x03\x04" + os.urandom(300), 422),
    ("wrong.npy", _npy(np.zeros((10, 7), np.float32)), 422),
    ("nobody.npy", _npy(np.full((30, 543, 3), np.nan, np.float32)), 422),
    ("short.npy", _npy(np.random.default_rng(0).random((1, 543, 3), np.float32)), 422),
    ("truncated.npy", _npy(np.zeros((30, 543, 3), np.float32))[:4000], 422),
    ("odd.pose", os.urandom(200), 422),
]


@pytest.mark.parametrize("endpoint", ["/api/search/clip", "/api/translate"])
@pytest.mark.parametrize("name,data,status", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_uploads_get_one_sentence(client, endpoint, name, data, status):
    detail = assert_one_sentence(client.post(endpoint, files={"file": (name, data)}), status)
    if status == 415:
        assert "neither a video" in detail


def test_bad_requests_get_one_sentence(client, corpus):
    _, data = _pose_file(corpus)
    assert "'file'" in assert_one_sentence(client.post("/api/translate"), 422)
    assert_one_sentence(client.post("/api/translate", data={"file": "not a file"}), 422)
    assert_one_sentence(client.post("/api/search/clip", content=b"{}", headers={"content-type": "application/json"}), 422)
    assert_one_sentence(client.post("/api/search/clip", files={"file": ("a.npz", data)}, params={"target": "x"}), 422)
    assert_one_sentence(client.post("/api/search/clip", files={"file": ("a.npz", data)}, params={"k": 0}), 422)
    assert_one_sentence(client.post("/api/translate", content=b"--x\r\nbroken",
                                    headers={"content-type": "multipart/form-data; boundary=x"}), (400, 422))
    assert "no clip" in assert_one_sentence(client.get("/api/clips/nope"), 404).lower()
    assert_one_sentence(client.get("/api/clips/nope/media"), 404)
    assert_one_sentence(client.get("/api/clips/..%2F..%2Fetc%2Fpasswd/media"), 404)
    assert_one_sentence(client.get("/api/clips/%00/media"), 404)
    assert_one_sentence(client.get("/no/such/page"), 404)
    assert_one_sentence(client.delete("/api/search"), 405)
    for bad_range in ("bytes=abc", "items=0-10", "bytes=5", "bytes=10-5", "bytes=0-1,9-3"):
        assert_one_sentence(client.get(f"/api/clips/{CUT_ID}/media", headers={"Range": bad_range}), 400)


@pytest.fixture(scope="module")
def small_limits_client(app, index_dir):
    """A second app over the same live index with a 64 KiB upload limit and a 0.2 s search limit."""
    from fastapi.testclient import TestClient

    from slsearch.serve.app import create_app
    from slsearch.serve.limits import ServeSettings

    small = create_app(index_dir, live=app.state.live,
                       settings=ServeSettings(max_upload_mb=1 / 16, search_timeout_s=0.2, upload_timeout_s=0.2))
    with TestClient(small) as c:
        yield c


def test_uploads_over_the_limit_are_413(small_limits_client):
    big = os.urandom(100_000)
    for endpoint in ("/api/search/clip", "/api/translate"):
        detail = assert_one_sentence(small_limits_client.post(endpoint, files={"file": ("big.mp4", big)}), 413)
        assert "0.0625 MB" in detail
    boundary = "sls"  # chunked: no Content-Length, so the limit is met while reading

    def chunks():
        yield f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\r\n".encode()
        for _ in range(10):
            yield big[:10_000]
        yield f"\r\n--{boundary}--\r\n".encode()

    r = small_limits_client.post("/api/translate", content=chunks(),
                                 headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert_one_sentence(r, 413)


def test_time_limits_answer_503(small_limits_client, app, monkeypatch):
    from slsearch.index.search import Searcher

    slow = Searcher.search_text

    def sleepy(self, *args, **kwargs):
        time.sleep(0.5)
        return slow(self, *args, **kwargs)

    monkeypatch.setattr(Searcher, "search_text", sleepy)
    r = small_limits_client.get("/api/search", params={"q": "regen"})
    assert "limit of 0.2 s" in assert_one_sentence(r, 503) and r.headers["retry-after"]


def test_text_search_is_not_held_up_by_uploads(client, corpus, monkeypatch):
    """An upload busy in its worker (made slow here) does not delay text queries."""
    from slsearch.serve.uploads import SavedUpload

    real = SavedUpload.pose
    started = threading.Event()

    def slow_pose(self):
        started.set()
        time.sleep(3)
        return real(self)

    monkeypatch.setattr(SavedUpload, "pose", slow_pose)
    _, data = _pose_file(corpus)
    answers = []
    uploads = [threading.Thread(target=lambda: answers.append(
        client.post("/api/translate", files={"file": ("a.npz", data)}).status_code)) for _ in range(2)]
    for t in uploads:
        t.start()
    assert started.wait(10)
    t0 = time.perf_counter()
    for _ in range(5):
        assert client.get("/api/search", params={"q": "regen wind"}).status_code == 200
    assert time.perf_counter() - t0 < 2.5  # while one upload sleeps and the other waits its turn
    for t in uploads:
        t.join()
    assert answers == [200, 200]


def test_metrics_count_requests_errors_and_latency(client):
    client.get("/api/search", params={"q": "regen"})
    client.get("/api/search", params={"q": ""})
    client.get("/api/clips/nope")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'slsearch_http_requests_total{endpoint="/api/search",method="GET",status="200"}' in text
    assert 'slsearch_http_errors_total{endpoint="/api/search",status="422"}' in text
    assert 'slsearch_http_errors_total{endpoint="/api/clips/{clip_id}",status="404"}' in text
    assert 'slsearch_http_request_duration_seconds_bucket{endpoint="/api/search",le="+Inf"}' in text
    assert 'slsearch_http_request_duration_seconds_count{endpoint="/api/search"}' in text
    assert "slsearch_index_clips 42" in text
    for line in text.splitlines():  # every sample line is "name{labels} number"
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])
    assert 'endpoint="/no/such/page"' not in text  # unrouted paths do not become labels


# --- a new index version while serving ------------------------------------------------------------------

def test_new_index_versions_are_picked_up_without_restart(tiny_corpus, tiny_checkpoint, model, tmp_path):
    from fastapi.testclient import TestClient

    from slsearch.data.manifest import read_manifest
    from slsearch.index.build import build_index
    from slsearch.index.remove import remove_clips
    from slsearch.serve.app import create_app
    from slsearch.serve.limits import ServeSettings

    out = tmp_path / "indexes" / "live"
    build_index([tiny_corpus[0]], tiny_checkpoint, out, progress=False, model=model)
    extra_manifest = make_corpus(tmp_path / "extra", 3, seed=5, name="extra")
    extra = read_manifest(extra_manifest)
    app = create_app(out, model=model, settings=ServeSettings(poll_s=0.05))
    statuses: list[int] = []
    stop = threading.Event()

    with TestClient(app) as client:
        def keep_searching():
            while not stop.is_set():
                statuses.append(client.get("/api/search", params={"q": "regen sonne", "k": 3}).status_code)

        def wait_for(version: str) -> dict:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                h = client.get("/healthz").json()
                if h["version"] == version:
                    return h
                time.sleep(0.05)
            raise AssertionError(f"version {version} not picked up: {h}")

        searcher = threading.Thread(target=keep_searching)
        searcher.start()
        try:
            first = app.state.live.current()  # a request in flight holds this version
            build_index([extra_manifest], tiny_checkpoint, out, add=True, progress=False, model=model)
            assert wait_for("v2")["clips"] == 43
            hit = client.get("/api/search", params={"q": extra[1].text, "k": 1}).json()["results"][0]
            assert hit["id"] == extra[1].id
            assert client.get(f"/api/clips/{extra[0].id}").status_code == 200
            assert app.state.live.current().searcher.model is model  # same checkpoint: the model is reused
            remove_clips(out, [extra[0].id])
            assert wait_for("v3")["clips"] == 42
            assert client.get(f"/api/clips/{extra[0].id}").status_code == 404
            assert not Path(first.key).exists()  # pruned by the writers ...
            assert first.searcher.search_text("regen sonne", k=2)  # ... and the old version still answers
        finally:
            stop.set()
            searcher.join()
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        stats = client.get("/api/stats").json()
        assert stats["reloads"] == 2 and stats["version"] == "v3"


def test_a_broken_new_version_leaves_the_server_answering(tiny_corpus, tiny_checkpoint, model, tmp_path):
    from fastapi.testclient import TestClient

    from slsearch.index.build import build_index
    from slsearch.serve.app import create_app
    from slsearch.serve.limits import ServeSettings

    out = tmp_path / "indexes" / "brk"
    build_index([tiny_corpus[1]], tiny_checkpoint, out, progress=False, model=model)
    app = create_app(out, model=model, settings=ServeSettings(poll_s=0.0))
    bad = tmp_path / "indexes" / ".brk.v9"
    bad.mkdir()
    (bad / "index.json").write_text("{not json")
    link = tmp_path / "indexes" / ".brk.tmplink"
    os.symlink(bad.name, link)
    os.replace(link, out)  # a version that cannot be loaded
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/api/search", params={"q": "regen"}).status_code == 200
            app.state.live.check(wait=True)
        h = client.get("/healthz").json()
        assert h["version"] == "v1" and h["clips"] == 10
        assert "slsearch_index_reload_failures_total 1" in client.get("/metrics").text


# --- the command -------------------------------------------------------------------------------------

def test_serve_command_binds_localhost_by_default(index_dir, monkeypatch):
    import uvicorn

    from slsearch.cli import app as cli

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: seen.update(kw, app=application))
    r = CliRunner().invoke(cli, ["serve", "--index", str(index_dir)])
    assert r.exit_code == 0, r.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert seen["app"].state.live.current().clips == 42
    r = CliRunner().invoke(cli, ["serve", "--index", str(index_dir), "--host", "0.0.0.0", "--port", "8123",
                                 "--max-upload-mb", "5"])
    assert r.exit_code == 0 and seen["host"] == "0.0.0.0" and seen["port"] == 8123
    assert seen["app"].state.settings.max_upload_bytes == 5 << 20
    # what searches rank by, for every version the server loads
    r = CliRunner().invoke(cli, ["serve", "--index", str(index_dir), "--score", "cico"])
    assert r.exit_code == 0 and seen["app"].state.live.current().searcher.score == "cico"
    assert seen["app"].state.live.score == "cico"
    r = CliRunner().invoke(cli, ["serve", "--index", str(index_dir), "--score", "best"])
    assert r.exit_code == 2 and "--score must be one of" in r.output and "Traceback" not in r.output


def test_serve_command_errors_are_one_line(tmp_path, monkeypatch):
    import uvicorn

    from slsearch.cli import app as cli

    # an empty workspace of its own (earlier tests may have recorded an index in the session's), and a
    # server that must never start here
    monkeypatch.setenv("SLSEARCH_WORKSPACE", str(tmp_path / "slsearch.toml"))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("the server started"))

    for args, words in ((["--index", str(tmp_path / "none")], "no index here"), (["--port", "70000"], "--port"),
                        (["--index", str(tmp_path), "--max-upload-mb", "0"], "--max-upload-mb"),
                        ([], "slsearch demo")):
        r = CliRunner().invoke(cli, ["serve", *args])
        assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output, (args, r.output)
