"""CiCo fine-grained score and global cosine against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from slsearch.models import similarity as sim
from slsearch.models.similarity import cico_similarity, global_similarity, pad_tokens


def _one(v, t, vm=None, tm=None, **kw):
    v, t = torch.tensor([v], dtype=torch.float32), torch.tensor([t], dtype=torch.float32)
    vm = torch.ones(v.shape[:2], dtype=torch.bool) if vm is None else torch.tensor([vm])
    tm = torch.ones(t.shape[:2], dtype=torch.bool) if tm is None else torch.tensor([tm])
    return float(cico_similarity(v, vm, t, tm, **kw)[0, 0])


def test_cico_hand_computed_with_padding_masked():
    # video tokens e1, e2; text token e1 plus a padded token e2 that must not count.
    # s = [[1, 0], [0, 1]] but column 2 is padding -> s_valid = [[1], [0]].
    # v2t: each video token softmaxes over the one valid text token: weights 1 -> mean(1, 0) = 0.5
    # t2v: the text token softmaxes over video tokens (tau=1): e/(e+1) * 1 + 1/(e+1) * 0
    score = _one([[1, 0], [0, 1]], [[1, 0], [0, 1]], tm=[True, False], temperature=1.0)
    expected = 0.5 * (0.5 + math.e / (math.e + 1))
    assert score == pytest.approx(expected, abs=1e-6)


def test_cico_padding_leaks_only_without_mask():
    # The reference implementation's bug, kept behind mask_softmax=False: padded text token enters
    # the v2t softmax (video token 2 now finds a perfect match in the padding).
    unmasked = _one([[1, 0], [0, 1]], [[1, 0], [0, 1]], tm=[True, False], temperature=1.0, mask_softmax=False)
    masked = _one([[1, 0], [0, 1]], [[1, 0], [0, 1]], tm=[True, False], temperature=1.0)
    assert unmasked > masked + 0.05


def test_cico_independent_of_padding_and_scale():
    rng = np.random.default_rng(0)
    v = [rng.normal(size=(n, 8)).astype(np.float32) for n in (3, 7, 1)]
    t = [rng.normal(size=(n, 8)).astype(np.float32) for n in (2, 5)]
    vt, vm = pad_tokens(v)
    tt, tm = pad_tokens(t)
    full = cico_similarity(vt, vm, tt, tm)
    for i in range(3):
        for j in range(2):
            alone = cico_similarity(torch.tensor(v[i])[None] * 5.0, torch.ones(1, len(v[i]), dtype=torch.bool),
                                    torch.tensor(t[j])[None], torch.ones(1, len(t[j]), dtype=torch.bool))
            assert float(alone) == pytest.approx(float(full[i, j]), abs=1e-5)
    # garbage in padded slots changes nothing
    vt2 = vt.clone()
    vt2[~vm] = 100.0
    assert torch.allclose(cico_similarity(vt2, vm, tt, tm), full, atol=1e-6)


def test_cico_identical_token_sets_score_one_and_chunking(monkeypatch):
    rng = np.random.default_rng(1)
    toks = [rng.normal(size=(n, 4)).astype(np.float32) for n in (2, 3, 4, 5, 6)]
    x, m = pad_tokens(toks)
    full = cico_similarity(x, m, x, m, temperature=1e-3)  # near-hard max: each token finds itself
    assert torch.allclose(full.diagonal(), torch.ones(5), atol=1e-3)
    monkeypatch.setattr(sim, "_BLOCK_ELEMENTS", 1)  # one video per block
    assert torch.allclose(cico_similarity(x, m, x, m, temperature=1e-3), full, atol=1e-6)


def test_cico_rejects_items_without_tokens_and_width_mismatch():
    x = torch.zeros(1, 2, 4)
    with pytest.raises(ValueError, match="at least one valid token"):
        cico_similarity(x, torch.zeros(1, 2, dtype=torch.bool), x, torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="widths differ"):
        cico_similarity(x, torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.bool))


def test_global_similarity_is_cosine():
    v = np.array([[3.0, 0.0], [1.0, 1.0]], np.float32)
    t = np.array([[0.0, 2.0], [1.0, 0.0]], np.float32)
    s = global_similarity(v, t)
    expected = torch.tensor([[0.0, 1.0], [1 / math.sqrt(2), 1 / math.sqrt(2)]])
    assert torch.allclose(s, expected, atol=1e-6)


def test_pad_tokens_shapes_and_mask():
    tokens, mask = pad_tokens([np.ones((2, 3)), torch.full((4, 3), 2.0)])
    assert tokens.shape == (2, 4, 3) and tokens.dtype == torch.float32
    assert mask.tolist() == [[True, True, False, False], [True] * 4]
    assert float(tokens[0, 2:].abs().sum()) == 0.0
    with pytest.raises(ValueError):
        pad_tokens([np.ones((2, 3)), np.ones((2, 4))])
