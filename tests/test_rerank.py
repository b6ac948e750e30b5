"""Ragged CiCo re-ranking equals the padded reference score, and the token store gathers correctly."""

import numpy as np
import pytest

from slsearch.index.store import StoredTokens, TokenSegmentWriter, TokenStore
from slsearch.models.similarity import cico_similarity, pad_tokens
from slsearch.rank.cico import cico_one_to_many


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_cico_similarity_in_both_directions(seed):
    rng = np.random.default_rng(seed)
    query = rng.standard_normal((7, 16)).astype(np.float32)
    cands = [rng.standard_normal((int(n), 16)).astype(np.float32) for n in rng.integers(1, 30, 12)]
    counts = np.array([len(c) for c in cands])
    ours = cico_one_to_many(query, np.concatenate(cands), counts)
    c, cm = pad_tokens(cands)
    q, qm = pad_tokens([query])
    as_text = cico_similarity(c, cm, q, qm)[:, 0].numpy()  # candidates are clips (T2V)
    as_video = cico_similarity(q, qm, c, cm)[0].numpy()  # the query is the clip (V2T)
    assert np.allclose(ours, as_text, atol=1e-5) and np.allclose(ours, as_video, atol=1e-5)
    # a different temperature is honoured
    hot = cico_one_to_many(query, np.concatenate(cands), counts, temperature=0.5)
    assert np.allclose(hot, cico_similarity(c, cm, q, qm, temperature=0.5)[:, 0].numpy(), atol=1e-5)


def test_identical_tokens_score_highest():
    rng = np.random.default_rng(3)
    query = rng.standard_normal((5, 8)).astype(np.float32)
    others = rng.standard_normal((20, 8)).astype(np.float32)
    scores = cico_one_to_many(query, np.concatenate([others, query]), np.array([10, 10, 5]))
    assert scores.argmax() == 2 and scores[2] > 0.9


def test_bad_counts():
    with pytest.raises(ValueError, match="sum to 4"):
        cico_one_to_many(np.ones((2, 3)), np.ones((4, 3)), np.array([1, 2]))
    assert cico_one_to_many(np.ones((2, 3)), np.ones((0, 3)), np.array([], dtype=int)).shape == (0,)


def test_token_store_gathers_across_segments(tmp_path):
    rng = np.random.default_rng(4)
    items = [rng.standard_normal((int(n), 6)).astype(np.float32) for n in rng.integers(1, 9, 10)]
    where = []
    for seg, part in enumerate((items[:6], items[6:])):
        w = TokenSegmentWriter(tmp_path / f"t{seg}.npy", 6)
        where += [(seg, *w.append(t)) for t in part]
        w.close()
    loaded = np.load(tmp_path / "t0.npy", mmap_mode="r")
    assert loaded.dtype == np.float16 and loaded.shape == (sum(len(t) for t in items[:6]), 6)
    store = TokenStore([tmp_path / "t0.npy", tmp_path / "t1.npy"], 6)
    pick = [8, 2, 6, 0]
    seg, off, cnt = (np.array([where[i][j] for i in pick]) for j in range(3))
    flat = store.gather_flat(seg, off, cnt)
    assert np.allclose(flat, np.concatenate([items[i] for i in pick]), atol=1e-2)
    # the per-item view the ranking cascade reads (one item, or a slice at once)
    view = StoredTokens(store, seg, off, cnt)
    assert len(view) == 4 and all(np.allclose(view[j], items[i], atol=1e-2) for j, i in enumerate(pick))
    assert all(np.array_equal(a, b) for a, b in zip(view[1:3], [view[1], view[2]]))
    assert np.array_equal(view[-1], view[3])
    with pytest.raises(IndexError):
        view[4]
