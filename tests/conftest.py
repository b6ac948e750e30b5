"""Shared fixtures: the real data beside the repository, a private pose cache, small generated videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real sign-language data); tests that need it skip on a user's machine."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real data not present at {SHARED_DATA} (it lives beside the repository in CI)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _private_pose_cache(tmp_path_factory):
    """Keep tests out of the user's ~/.cache: every test session gets its own pose cache."""
    import os

    old = os.environ.get("SLSEARCH_CACHE")
    os.environ["SLSEARCH_CACHE"] = str(tmp_path_factory.mktemp("slsearch-cache"))
    yield
    if old is None:
        os.environ.pop("SLSEARCH_CACHE", None)
    else:
        os.environ["SLSEARCH_CACHE"] = old


@pytest.fixture(autouse=True, scope="session")
def _private_workspace(tmp_path_factory):
    """Keep tests out of the working folder's slsearch.toml: `train`, `index` and `demo` record their
    model and index in a workspace of the test session's own ($SLSEARCH_WORKSPACE, slsearch.workspace);
    so do subprocesses, which inherit it. Tests of the lookup itself unset it (monkeypatch)."""
    import os

    old = {k: os.environ.pop(k, None) for k in ("SLSEARCH_WORKSPACE", "SLSEARCH_MODEL", "SLSEARCH_INDEX")}
    os.environ["SLSEARCH_WORKSPACE"] = str(tmp_path_factory.mktemp("workspace") / "slsearch.toml")
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def write_video(path: Path, frames: np.ndarray, fps: int = 25, codec: str = "mpeg4") -> Path:
    """Write (T, H, W, 3) uint8 frames as a video file with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def video_writer():
    """The write_video function, for module-scoped fixtures that cannot use make_video."""
    return write_video


@pytest.fixture
def make_video(tmp_path):
    """make_video(name, n_frames, fps, size=(h, w)) -> path of a moving-gradient video."""

    def make(name: str = "clip.mp4", n_frames: int = 30, fps: int = 25, size=(64, 96)) -> Path:
        h, w = size
        ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        frames = np.stack([np.broadcast_to((ramp + 8 * t) % 256, (h, w, 3)) for t in range(n_frames)])
        return write_video(tmp_path / name, frames.astype(np.uint8), fps=fps)

    return make


# --- index and search (issue 5) ------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """(train manifest, dev manifest) of generated gloss clips (tests/gloss_poses.py)."""
    from gloss_poses import make_corpus

    d = tmp_path_factory.mktemp("index-corpus")
    return make_corpus(d / "train", 40, seed=0, name="train"), make_corpus(d / "dev", 10, seed=1, name="dev")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_corpus, tmp_path_factory):
    """A real checkpoint trained with the tiny recipe on tiny_corpus (~15 s on 2 cores), shared by the
    index and search tests. The LM loss is off: retrieval is what these tests need."""
    from slsearch.training.loop import train

    out = tmp_path_factory.mktemp("index-ckpt") / "tiny"
    train("tiny", *tiny_corpus, out, overrides=["loss.lm_weight=0", "train.epochs=10"], progress=False)
    return out


DEMO_LIMIT = 100  # clips per split of the tiny demo: chance R@1 is 1 %, chance R@10 is 10 %


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """The demo run once with the tiny recipe: (workdir, summary). Its corpus, model and index
    serve the demo, eval and translate tests alike."""
    from slsearch.demo import run_demo

    workdir = tmp_path_factory.mktemp("demo")
    summary = run_demo(workdir, recipe="tiny", limit=DEMO_LIMIT, overrides=["train.epochs=15"],
                       progress=False)
    return workdir, summary
