"""`--ray`: extraction and embedding on a local Ray instance give what the built-in pool gives (the same
cache entries and poses, the same failure lines, the same index vectors), stream clip by clip, resume
from the pose cache, and survive an actor that dies."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from slsearch.data.extract import extract_many
from slsearch.data.manifest import Clip, read_manifest, write_manifest
from slsearch.data.pose_files import read_npz
from slsearch.distributed_ray import optional_address_args, require_ray, run_pool
from slsearch.errors import SlsearchError

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'slsearch[ray]')")

H2S = "_0fO5ETSwyg_0-5-rgb_front"


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray instance for the module: 2 CPUs, a 100 MB object store, no dashboard."""
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory):
    """Two real signing clips, a corrupt file and a missing one."""
    tmp = tmp_path_factory.mktemp("ray-clips")
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(b"\x00" * 4096)
    return [Clip(id="signer", path=shared_data / "video/signer_58frames.mp4"),
            Clip(id=H2S, path=shared_data / f"how2sign/clips/{H2S}.mp4"),
            Clip(id="corrupt", path=corrupt), Clip(id="missing", path=tmp / "missing.mp4")]


@pytest.fixture(scope="module")
def both(clips, local_ray, tmp_path_factory):
    """The same clips through the built-in pool and through Ray, each into an empty cache of its own."""
    tmp = tmp_path_factory.mktemp("ray-extract")
    heard = []
    builtin = extract_many(clips, workers=2, cache_dir=tmp / "builtin")
    on_ray = extract_many(clips, cache_dir=tmp / "ray", on_result=heard.append, ray="auto")
    return builtin, on_ray, heard, tmp


def test_ray_writes_the_same_cache_entries_with_the_same_poses(both):
    builtin, on_ray, _, tmp = both
    for a, b in zip(builtin[:2], on_ray[:2]):
        assert a.error is None and b.error is None and not b.cached
        assert a.frames == b.frames > 0
        assert a.cache_file.relative_to(tmp / "builtin") == b.cache_file.relative_to(tmp / "ray")
        pa, pb = read_npz(a.cache_file), read_npz(b.cache_file)
        assert pa.fps == pb.fps
        assert np.allclose(pa.data, pb.data, atol=1e-5, equal_nan=True)


def test_bad_clips_are_reported_as_the_builtin_pool_reports_them_and_the_rest_finish(both, clips):
    builtin, on_ray, heard, _ = both
    assert [r.clip for r in on_ray] == clips  # in order, the caller's own clips
    assert [r.error for r in on_ray] == [r.error for r in builtin]
    assert "corrupt.mp4: not a readable video" in on_ray[2].error
    assert on_ray[3].error.endswith("missing.mp4: file not found")
    assert sorted(r.clip.id for r in heard) == sorted(c.id for c in clips)  # on_result: once per clip


def test_a_run_that_died_resumes_from_the_cache(both, clips, tmp_path):
    """A cache holding the How2Sign clip (a run killed after it): only the other one is extracted."""
    _, on_ray, _, tmp = both
    cache = tmp_path / "cache"
    done = cache / on_ray[1].cache_file.relative_to(tmp / "ray")
    done.parent.mkdir(parents=True)
    shutil.copy(on_ray[1].cache_file, done)
    before = os.stat(done).st_mtime_ns
    again = extract_many(clips[:2], cache_dir=cache, ray="auto")
    assert not again[0].cached and again[1].cached
    assert os.stat(done).st_mtime_ns == before  # not written again
    assert again[0].cache_file.exists() and again[0].frames == on_ray[0].frames


def test_extract_cli_with_a_bare_ray_flag(clips, local_ray, tmp_path):
    from typer.testing import CliRunner

    from slsearch.cli import app

    result = CliRunner().invoke(app, ["extract", str(clips[0].path), str(clips[2].path), "--out",
                                      str(tmp_path / "poses"), "--json", "--ray"])
    assert result.exit_code == 0, result.output
    rows = read_manifest(tmp_path / "poses" / "manifest.jsonl")
    assert [c.id for c in rows] == ["signer_58frames"] and read_npz(rows[0].path).frames == 49
    assert '"failed": 1' in result.output and "corrupt.mp4: not a readable video" in result.output


def test_index_on_ray_gives_the_same_index(tiny_corpus, tiny_checkpoint, clips, local_ray, tmp_path):
    """Pose clips, a real video (extracted on the way) and a broken pose file, in batches of 4."""
    from slsearch.index.store import load_index
    from slsearch.index.build import build_index
    from slsearch.rank import load_retrieval_model

    broken = tmp_path / "broken.npz"
    np.savez(broken, pose=np.zeros((10, 7, 3), np.float32), fps=np.float32(25))
    rows = read_manifest(tiny_corpus[1]) + [Clip(id="signer", path=clips[0].path, text="hallo"),
                                            Clip(id="broken", path=broken, text="kaputt")]
    write_manifest(rows, tmp_path / "m.jsonl")
    model = load_retrieval_model(tiny_checkpoint)
    out = {}
    for how in (None, "auto"):
        summary = build_index([tmp_path / "m.jsonl"], tiny_checkpoint, tmp_path / f"index-{how}", batch_size=4,
                              model=model, ray=how)
        assert summary["clips_added"] == 11 and summary["failures"] == 1
        out[how] = summary, load_index(tmp_path / f"index-{how}")
    (s0, a), (s1, b) = out[None], out["auto"]
    assert s0["failed"] == s1["failed"] and "broken.npz" in s1["failed"][0]["reason"]
    assert a.clips.column("id").tolist() == b.clips.column("id").tolist()
    va = a.clips.index.reconstruct_n(0, a.clips.index.ntotal)
    vb = b.clips.index.reconstruct_n(0, b.clips.index.ntotal)
    assert np.allclose(va, vb, atol=1e-5)
    assert a.clips.column("frames").tolist() == b.clips.column("frames").tolist()
    assert a.clips.column("gloss_reading").tolist() == b.clips.column("gloss_reading").tolist()


def test_an_actor_that_dies_is_replaced_its_item_retried_once_then_reported(local_ray):
    class Fragile:  # defined here, so Ray ships it by value (workers cannot import this test module)
        """Dies on the item "die", as a decoder crash takes its process down."""

        def work(self, item):
            if item == "die":
                os._exit(1)
            if item == "bug":
                raise SlsearchError("a bug in the actor")
            return item.upper()

    actor = ray.remote(num_cpus=0)(Fragile)
    calls = []

    def call(a, item):
        calls.append(item)
        return a.work.remote(item)

    got = dict(run_pool(actor.remote, 2, ["a", "die", "b", "c"], call, lambda item: f"crashed on {item}",
                        ordered=True))
    assert got == {0: "A", 1: "crashed on die", 2: "B", 3: "C"}
    assert calls.count("die") == 2
    with pytest.raises(SlsearchError, match="^a bug in the actor$"):  # what the actor raises, as itself
        list(run_pool(actor.remote, 1, ["bug"], call, lambda item: item))


def test_actors_that_cannot_start_are_one_error_not_a_failure_per_clip(local_ray):
    def broken():
        raise ImportError("No module named 'slsearch'")

    class Unstartable:
        def __init__(self):
            broken()

        def work(self, item):
            return item

    actor = ray.remote(num_cpus=0)(Unstartable)
    with pytest.raises(SlsearchError, match="Ray workers could not start .*No module named 'slsearch'"):
        list(run_pool(actor.remote, 2, ["a", "b"], lambda a, item: a.work.remote(item), lambda item: item))


def test_a_bare_ray_flag_means_auto_and_an_address_is_kept():
    assert optional_address_args(["v/", "--ray"]) == ["v/", "--ray=auto"]
    assert optional_address_args(["--ray", "v/", "--out", "o"]) == ["--ray=auto", "v/", "--out", "o"]
    assert optional_address_args(["v/", "--ray", "--json"]) == ["v/", "--ray=auto", "--json"]
    for address in ("auto", "head:6379", "10.0.0.2:6379", "ray://head:10001"):
        assert optional_address_args(["v/", "--ray", address]) == ["v/", "--ray", address]


def test_without_ray_installed_the_error_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SlsearchError) as e:
        require_ray()
    assert "\n" not in str(e.value) and "pip install" in str(e.value)
