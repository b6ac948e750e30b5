"""The search page in a real browser (issue 16): headless Chromium, driven by selenium, against the real
server (`create_app` on uvicorn) over a small index built here with the tiny model.

The index holds the tiny corpus's dev clips (pose-only: they play as rendered skeleton previews) and one
real H.264 video whose clip is a segment (1 s to 3 s) of a 4 s file, so a result plays as video from
its start to its end. Its pose is put in the pose cache beforehand, as MediaPipe would find no signer
in a generated picture.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them when missing); skips with the
reason on a machine without them. Selenium is told where chromedriver is, so its driver manager never
tries to download one.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                                else None)

pytest.importorskip("selenium", reason="needs selenium (pip install -e '.[test]')")
pytest.importorskip("fastapi", reason="needs the server's dependencies (fastapi, uvicorn)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Debian's chromium and chromium-driver packages "
                              "(apt-get install -y chromium chromium-driver; .ci/run installs them)"),
]

VIDEO_ID = "weather_video"
VIDEO_GLOSSES = [6, 0, 8]  # morgen regen nord: not a sentence of the dev split (checked below)
VIDEO_START, VIDEO_END = 1.0, 3.0
WAIT_S = 60  # the first query loads the model; a slow CI machine gets time


# --- the index and the server ------------------------------------------------------------------

def _weather_video(folder: Path, video_writer) -> tuple[Path, str]:
    """A 4 s H.264 video (a moving gradient) and a manifest naming its 1-3 s segment with a sentence.
    Its pose (a gloss_poses clip of that sentence) goes into the pose cache under the key the indexer
    looks up, so the index has a real video clip without MediaPipe."""
    from gloss_poses import WORDS, make_clip
    from slsearch.data.extract import cache_key, cache_path
    from slsearch.data.manifest import Clip, write_manifest
    from slsearch.data.pose_files import save_pose_npz
    from slsearch.data.poses import DEFAULT_FPS

    h, w, n = 120, 160, 100
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    rows = np.linspace(0, 96, h, dtype=np.float32)[:, None, None]
    frames = np.stack([np.broadcast_to((ramp + rows + 6 * t) % 256, (h, w, 3)) for t in range(n)])
    video = video_writer(folder / f"{VIDEO_ID}.mp4", frames.astype(np.uint8), fps=25, codec="libx264")
    pose = make_clip(VIDEO_GLOSSES, np.random.default_rng(7))
    key = cache_key(video, DEFAULT_FPS, VIDEO_START, VIDEO_END)
    save_pose_npz(cache_path(key), pose, 25.0)
    sentence = " ".join(WORDS[g] for g in VIDEO_GLOSSES)
    manifest = folder / "video.jsonl"
    write_manifest([Clip(id=VIDEO_ID, path=video, text=sentence, gloss=" ".join(f"G{g}" for g in VIDEO_GLOSSES),
                         split="dev", start=VIDEO_START, end=VIDEO_END)], manifest)
    return manifest, sentence


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_corpus, tiny_checkpoint, tmp_path_factory, video_writer):
    """(base URL, index folder, sentence of the video clip, a pose clip of the dev split)."""
    import uvicorn

    from slsearch.data.manifest import read_manifest
    from slsearch.index.build import build_index
    from slsearch.serve.app import create_app

    work = tmp_path_factory.mktemp("serve-browser")
    manifest, sentence = _weather_video(work / "media", video_writer)
    dev = read_manifest(tiny_corpus[1])
    assert sentence not in {c.text for c in dev}
    out = work / "indexes" / "browser"
    summary = build_index([tiny_corpus[1], manifest], tiny_checkpoint, out, progress=False)
    assert summary["clips_added"] == len(dev) + 1, summary

    port = _free_port()
    config = uvicorn.Config(create_app(out), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="slsearch-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    yield base, out, sentence, dev[0]
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--mute-audio", f"--user-data-dir={profile}",
                 "--window-size=1280,1000"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


# --- helpers -----------------------------------------------------------------------------------

def _wait(driver, condition, what: str, timeout: float = WAIT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        alert = driver.execute_script("return document.getElementById('error').textContent")
        status = driver.execute_script("return document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {what}; alert={alert!r} status={status!r}") from None


def _hits(driver) -> list[dict]:
    """What the page shows for each result, read from the DOM."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#results li.hit')).map(li => {
          const v = li.querySelector('video');
          const dd = (cls) => { const e = li.querySelector('dd.' + cls); return e ? e.textContent : null; };
          return {heading: li.querySelector('h3').textContent, score: dd('score'), glosses: dd('glosses'),
                  id: dd('clip-id'), kind: v ? v.dataset.kind : null, src: v ? v.currentSrc || v.src : null};
        });""")


def _search(driver, text: str) -> list[dict]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "q")
    box.clear()
    box.send_keys(text, Keys.ENTER)  # Enter searches
    _wait(driver, lambda d: d.execute_script(
        "return document.getElementById('results-section').getAttribute('aria-busy') === 'false'"
        " && document.querySelectorAll('#results li.hit').length > 0"), f"results for {text!r}")
    return _hits(driver)


def _plays(driver, video, what: str) -> tuple[float, float]:
    """Start a <video> with a click, as a person would, and wait until its currentTime advances."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", video)
    _wait(driver, lambda d: d.execute_script("return arguments[0].readyState >= 1", video),
          f"{what}: metadata", timeout=20)
    before = driver.execute_script("return arguments[0].currentTime", video)
    video.click()  # a click on the picture toggles playback in Chromium's own controls
    time.sleep(0.3)
    if driver.execute_script("return arguments[0].paused", video):  # the click landed on a control
        driver.execute_script("arguments[0].play()", video)
    _wait(driver, lambda d: d.execute_script("return arguments[0].currentTime", video) > before + 0.3,
          f"{what}: currentTime to advance", timeout=20)
    error = driver.execute_script("return arguments[0].error && arguments[0].error.code", video)
    assert error is None, f"{what}: media error {error}"
    return before, driver.execute_script("return arguments[0].currentTime", video)


def _drop_file(driver, path: Path, target_selector: str) -> None:
    """Drop a file on the page as a person would drag it in: a DataTransfer holding the file
    (read by chromedriver through a throwaway file input), dispatched as dragenter/dragover/drop."""
    helper = driver.execute_script("""
        const i = document.createElement('input'); i.type = 'file'; i.id = 'test-drop-source';
        i.style.display = 'none'; document.body.append(i); return i;""")
    helper.send_keys(str(path))
    driver.execute_script("""
        const file = document.getElementById('test-drop-source').files[0];
        const target = document.querySelector(arguments[0]);
        const dt = new DataTransfer(); dt.items.add(file);
        for (const type of ['dragenter', 'dragover', 'drop']) {
          target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
        }
        document.getElementById('test-drop-source').remove();""", target_selector)


# --- the test ----------------------------------------------------------------------------------

def test_search_page_in_a_real_browser(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, index_dir, sentence, pose_clip = server
    d = browser
    d.get(base + "/")
    assert d.title == "slsearch"
    assert d.switch_to.active_element.tag_name == "body"

    # Offline: the page and everything it loads come from this server.
    html = urllib.request.urlopen(base + "/").read().decode()
    assert "http://" not in html and "https://" not in html
    _wait(d, lambda d: "clips" in d.find_element(By.ID, "stats").text, "index statistics in the footer")
    stats = json.loads(urllib.request.urlopen(base + "/api/stats").read())
    assert stats["clips"] == 11  # 10 dev clips and the video
    assert "11 clips" in d.find_element(By.ID, "stats").text
    # Keyboard: "/" jumps to the search box from anywhere; the box is labelled.
    d.find_element(By.TAG_NAME, "body").send_keys("/")
    box = d.switch_to.active_element
    assert box.get_attribute("id") == "q"
    assert d.find_element(By.CSS_SELECTOR, "label[for=q]").text

    # Focus order: box, number of results, Search, the clip's target, the file button (visibly focused).
    order = []
    for _ in range(4):
        d.switch_to.active_element.send_keys(Keys.TAB)
        order.append(d.execute_script("const e = document.activeElement; return e.id || e.name"))
    assert order == ["k", "search-button", "target", "file"], order
    assert d.execute_script("return getComputedStyle(document.querySelector('.file-button')).outlineStyle") \
        == "solid"
    d.find_element(By.TAG_NAME, "body").send_keys("/")

    # Type a sentence, press Enter: ranked results, each with a clip, score, sentence and glosses.
    hits = _search(d, sentence)
    assert [h["heading"].split(".")[0] for h in hits] == [str(i) for i in range(1, len(hits) + 1)]
    scores = [float(h["score"]) for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h["kind"] in ("video", "skeleton") and h["src"] for h in hits)
    api = json.loads(urllib.request.urlopen(f"{base}/api/search?q={urllib.parse.quote(sentence)}&k=10").read())
    assert [h["id"] for h in hits] == [h["id"] for h in api["results"]]
    for shown, hit in zip(hits, api["results"]):  # score, sentence and gloss reading, as the API says
        assert shown["score"] == f"{hit['score']:.3f}"
        assert (hit["text"] or hit["id"]) in shown["heading"]
        assert shown["glosses"] == (hit["glosses"] or "none (this model reads no glosses)")
        assert shown["src"].startswith(base + hit["media_url"])
    assert hits[0]["id"] == VIDEO_ID and sentence in hits[0]["heading"], hits[:3]
    assert "?q=" in d.current_url and "morgen" in d.current_url  # the search is in the URL
    assert d.execute_script("return document.activeElement.id") == "q"  # focus stays in the box
    _wait(d, lambda d: d.execute_script(  # every clip has a picture (skeleton previews are drawn on demand)
        "return Array.from(document.querySelectorAll('#results video')).every(v => v.readyState >= 2)"),
        "every result's first frame")
    d.save_screenshot(str(tmp_path / "results.png"))

    # The first clip plays (a real video: from its start, stopping at its end).
    video = d.find_elements(By.CSS_SELECTOR, "#results li.hit video")[0]
    assert video.get_attribute("data-kind") == "video"
    before, now = _plays(d, video, "the first result's video")
    assert before >= VIDEO_START - 0.05 and now >= VIDEO_START
    _wait(d, lambda d: d.execute_script("return arguments[0].paused", video), "the video to stop at its end",
          timeout=20)
    assert abs(d.execute_script("return arguments[0].currentTime", video) - VIDEO_END) < 0.3
    d.save_screenshot(str(tmp_path / "results-playing.png"))

    # A skeleton preview (a pose-only clip) plays too.
    skeleton = d.find_elements(By.CSS_SELECTOR, "#results li.hit video[data-kind=skeleton]")[0]
    _plays(d, skeleton, "a skeleton preview")

    # The URL can be shared: opening it shows the same results.
    shared = d.current_url
    d.get("about:blank")
    d.get(shared)
    _wait(d, lambda d: len(_hits(d)) == len(hits), "results from a shared URL")
    assert [h["id"] for h in _hits(d)] == [h["id"] for h in hits]
    assert d.find_element(By.ID, "q").get_attribute("value") == sentence

    # Drop a clip on the page: the sentences it signs.
    _drop_file(d, Path(pose_clip.path), "#drop-zone")
    _wait(d, lambda d: "Sentences for" in d.find_element(By.ID, "results-heading").text
          and d.execute_script("return document.getElementById('results-section').getAttribute('aria-busy')")
          == "false", "sentences for the dropped clip")
    found = _hits(d)
    assert found and all(h["heading"] for h in found)
    assert any(pose_clip.text in h["heading"] for h in found[:5]), found[:5]
    assert d.switch_to.active_element.get_attribute("id") == "results-heading"
    assert "?q=" not in d.current_url

    # The same through the file input that the drop zone offers (keyboard users): similar clips.
    d.find_element(By.CSS_SELECTOR, "input[name=target][value=clips]").click()
    d.find_element(By.ID, "file").send_keys(str(pose_clip.path))
    _wait(d, lambda d: "Clips like" in d.find_element(By.ID, "results-heading").text, "similar clips")
    assert _hits(d)[0]["id"] == pose_clip.id

    # Translate a clip: the sentence, and the gloss reading where the model has one.
    d.find_element(By.CSS_SELECTOR, "input[name=target][value=translate]").click()
    d.find_element(By.ID, "file").send_keys(str(pose_clip.path))
    _wait(d, lambda d: d.find_element(By.ID, "translation").is_displayed(), "a translation")
    assert d.find_element(By.ID, "translation-heading").text == f"Translation of {Path(pose_clip.path).name}"
    assert d.switch_to.active_element.get_attribute("id") == "translation-heading"
    assert not d.find_element(By.ID, "results-section").is_displayed()

    # An error is the server's one sentence, in the alert region; nothing stale stays shown.
    not_a_clip = tmp_path / "notes.txt"
    not_a_clip.write_text("not a clip")
    d.find_element(By.ID, "file").send_keys(str(not_a_clip))
    alert = _wait(d, lambda d: d.find_element(By.ID, "error").text, "an error for a text file")
    assert alert.endswith(".") and "{" not in alert and len(alert.splitlines()) == 1, alert
    assert not d.find_element(By.ID, "translation").is_displayed()

    d.get(base + "/?q=" + "x" * 5000)
    alert = _wait(d, lambda d: d.find_element(By.ID, "error").text, "an error message")
    assert d.find_element(By.ID, "error").get_attribute("role") == "alert"
    assert "{" not in alert and "Traceback" not in alert and len(alert.splitlines()) == 1

    # Search by glosses: offered where the index reads glosses, and asked for by the URL (?by=gloss)
    d.get(base + "/")
    _wait(d, lambda d: "clips" in d.find_element(By.ID, "stats").text, "index statistics")
    assert d.find_element(By.ID, "search-by").is_displayed() == stats["reads_glosses"]
    d.get(base + "/?by=gloss&q=G1+G2")
    assert d.find_element(By.CSS_SELECTOR, "input[name=by][value=gloss]").is_selected()
    assert d.find_element(By.ID, "q-label").text == "Search for glosses"
    if stats["reads_glosses"]:
        _wait(d, lambda d: _hits(d), "clips for glosses")
        api = json.loads(urllib.request.urlopen(f"{base}/api/search/gloss?q=G1+G2&k=10").read())
        assert [h["id"] for h in _hits(d)] == [h["id"] for h in api["results"]]
    else:  # this model reads no glosses: the server's sentence, nothing else
        alert = _wait(d, lambda d: d.find_element(By.ID, "error").text, "the no-glosses sentence")
        assert "reads no glosses" in alert and len(alert.splitlines()) == 1
    d.find_element(By.CSS_SELECTOR, "input[name=by][value=text]").click()
    assert d.find_element(By.ID, "q-label").text == "Search for a sentence"

    # Narrow screens: nothing sticks out sideways.
    d.get(base + "/?q=" + sentence.replace(" ", "+"))
    _wait(d, lambda d: _hits(d), "results at a narrow width")
    d.set_window_size(390, 900)
    assert d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    d.save_screenshot(str(tmp_path / "results-narrow.png"))
    d.set_window_size(1280, 1000)

    # Everything the page loaded came from this server.
    urls = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith(base) for u in urls), urls
    severe = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and "status of 4" not in e["message"]]
    assert not severe, severe
    assert (tmp_path / "results.png").stat().st_size > 10_000
