"""FAISS layer: each index kind built, tuned to the recall target, searched, added to and removed from."""

import numpy as np
import pytest

from slsearch.index import faiss_index as fi
from slsearch.index.choose import spec_for_type


@pytest.fixture(scope="module")
def clustered():
    """20k unit vectors in 200 clusters (real embeddings cluster; uniform noise is IVF's worst case)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, 32)).astype(np.float32)
    x = centres[rng.integers(0, 200, 20_000)] + 0.6 * rng.standard_normal((20_000, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_top_matches_argsort(clustered):
    q = clustered[:7]
    top = fi.exact_top(clustered, q, 10, chunk=3000)  # several chunks
    assert np.array_equal(top, np.argsort(-(q @ clustered.T), axis=1, kind="stable")[:, :10])
    assert fi.recall_at(top, top) == 1.0
    assert fi.recall_at(top[:, ::-1], top) == 1.0  # order inside the top-k does not matter
    assert fi.recall_at(np.zeros_like(top), top) == pytest.approx(1 / 70)  # id 0 is in query 0's top-10


@pytest.mark.parametrize("kind, knob", [("flat", None), ("ivf", "nprobe"), ("hnsw", "efSearch")])
def test_build_tune_add_remove(clustered, kind, knob, tmp_path):
    x, ids = clustered[:18_000], np.arange(18_000)
    spec = spec_for_type(kind, len(x), x.shape[1])
    index = fi.build(spec, x, ids)
    tuning = fi.tune(index, spec, x, ids, n_queries=200)
    assert tuning["reached"] and tuning["recall_at_10"] >= 0.95
    if knob:
        steps = tuning["measured"]
        assert list(tuning["params"]) == [knob] and steps[-1][knob] == tuning["params"][knob]
        # the smallest value that reaches the target (plus the tuning margin)
        assert all(s["recall_at_10"] < 0.95 + fi.TUNE_MARGIN for s in steps[:-1])
    # recall measured independently of tune's own sample
    q = clustered[18_000:18_300]
    truth = fi.exact_top(x, q, 10)
    assert fi.recall_at(fi.search(index, q, 10)[1], truth) >= 0.93

    index = fi.remove(index, np.arange(0, 18_000, 2))  # even ids out
    assert index.ntotal == 9_000
    _, found = fi.search(index, x[:200], 5)
    assert not np.any(found[found >= 0] % 2 == 0)
    fi.add(index, clustered[18_000:], np.arange(18_000, 20_000))
    _, found = fi.search(index, clustered[19_990:], 1)
    assert np.array_equal(found[:, 0], np.arange(19_990, 20_000))  # a vector finds itself
    fi.write(index, tmp_path / "v.faiss")
    again = fi.read(tmp_path / "v.faiss")
    assert again.ntotal == 11_000
    fi.set_search_params(again, tuning["params"])
    assert np.array_equal(fi.search(again, x[1:50:2], 3)[1], fi.search(index, x[1:50:2], 3)[1])


def test_compressed_index_trains_and_records_when_target_is_missed(clustered):
    spec = spec_for_type("IVF32,PQ8x4", 5_000, 32)  # a factory string; 4-bit codes train in a blink
    assert spec.kind == "custom" and spec.tune == "nprobe"
    x = clustered[:5_000]
    index = fi.build(spec, x, np.arange(5_000))
    tuning = fi.tune(index, spec, x, np.arange(5_000), n_queries=100)
    assert tuning["measured"] and 0 < tuning["recall_at_10"] <= 1
    assert tuning["reached"] == (tuning["recall_at_10"] >= 0.95)
    if not tuning["reached"]:  # best effort: every nprobe up to nlist was tried
        assert tuning["params"] == {"nprobe": 32}


def test_unreadable_index_file_is_a_clear_error(tmp_path):
    from slsearch.errors import SlsearchError

    (tmp_path / "bad.faiss").write_bytes(b"garbage")
    with pytest.raises(SlsearchError, match="not a readable FAISS index"):
        fi.read(tmp_path / "bad.faiss")
