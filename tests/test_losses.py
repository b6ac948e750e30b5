"""Contrastive and LM losses against hand-computed values; model outputs feed the loss directly."""

import math

import pytest
import torch
import torch.nn.functional as F

from slsearch.models.losses import C2RLLoss, symmetric_infonce


def test_symmetric_infonce_hand_computed():
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # logit scale ln(1): each row/column CE = -log(e / (e + 1)) = log(1 + e^-1)
    assert float(symmetric_infonce(scores, torch.tensor(0.0))) == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)
    # asymmetric matrix: mean of the row-wise and column-wise cross-entropies
    s = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    rows = 0.5 * (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-1)))
    cols = 0.5 * (math.log1p(math.exp(-1)) + math.log1p(math.exp(-0.5)))
    assert float(symmetric_infonce(s, torch.tensor(0.0))) == pytest.approx(0.5 * (rows + cols), abs=1e-6)


def test_logit_scale_clamped_at_ln_100():
    scores = torch.tensor([[0.1, 0.0], [0.0, 0.1]])
    clamped = float(symmetric_infonce(scores, torch.tensor(math.log(1000.0))))
    assert clamped == pytest.approx(math.log1p(math.exp(-10.0)), rel=1e-3)  # 100 * 0.1, not 1000 * 0.1


def _inputs(B=3, Lv=4, Lt=3, d=8, V=11):
    g = torch.Generator().manual_seed(0)
    vt, tt = torch.randn(B, Lv, d, generator=g), torch.randn(B, Lt, d, generator=g)
    vm, tm = torch.ones(B, Lv, dtype=torch.bool), torch.ones(B, Lt, dtype=torch.bool)
    vm[0, 2:] = False
    vg, tg = F.normalize(torch.randn(B, d, generator=g), dim=-1), F.normalize(torch.randn(B, d, generator=g), dim=-1)
    logits = torch.randn(B, Lt, V, generator=g)
    labels = torch.randint(0, V, (B, Lt), generator=g)
    labels[1, -1] = -100
    return dict(video_tokens=vt, video_mask=vm, text_tokens=tt, text_mask=tm, video_global=vg, text_global=tg,
                logit_scale_fine=torch.tensor(0.0), logit_scale_global=torch.tensor(0.0),
                lm_logits=logits, lm_labels=labels)


def test_c2rl_loss_parts_and_weights():
    x = _inputs()
    losses = C2RLLoss(cico_weight=1.0, global_weight=2.0, lm_weight=0.5, label_smoothing=0.2)(**x)
    assert set(losses) == {"cico_loss", "global_loss", "lm_loss"}
    assert float(losses["global_loss"]) == pytest.approx(
        2.0 * float(symmetric_infonce(x["video_global"] @ x["text_global"].T, torch.tensor(0.0))), abs=1e-6)
    # label smoothing 0.2 by hand: 0.8 * NLL + 0.2 * mean over classes of -log p, ignoring -100
    logp = x["lm_logits"].log_softmax(-1).flatten(0, 1)
    lab = x["lm_labels"].flatten()
    keep = lab != -100
    nll = -logp[keep].gather(1, lab[keep][:, None]).squeeze(1)
    smooth = -logp[keep].mean(1)
    assert float(losses["lm_loss"]) == pytest.approx(0.5 * float((0.8 * nll + 0.2 * smooth).mean()), abs=1e-5)
    off = C2RLLoss(lm_weight=0.0, cico_weight=0.0)(**x)
    assert set(off) == {"global_loss"}


def test_cico_loss_low_when_pairs_match():
    x = _inputs()
    x["text_tokens"] = x["video_tokens"][:, :3].clone()  # each text equals its own video's first tokens
    x["text_mask"] = x["video_mask"][:, :3].clone()
    x["logit_scale_fine"] = torch.tensor(math.log(100.0))
    matched = float(C2RLLoss(global_weight=0, lm_weight=0)(**x)["cico_loss"])
    x["text_tokens"] = x["text_tokens"].roll(1, 0)
    x["text_mask"] = x["text_mask"].roll(1, 0)
    shuffled = float(C2RLLoss(global_weight=0, lm_weight=0)(**x)["cico_loss"])
    assert matched < 0.5 < shuffled


def test_clips_of_the_same_sentence_are_no_negatives():
    # clips 0 and 1 say the same sentence: their cross pairs (0.9 and 0.8) leave the softmax, clip 2's stay
    s = torch.tensor([[1.0, 0.9, 0.0], [0.8, 1.0, 0.1], [0.2, 0.0, 1.0]])
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])

    def ce(*others):  # -log softmax of the diagonal score 1.0 against the others
        return math.log(math.exp(1.0) + sum(math.exp(o) for o in others)) - 1.0
    rows = [ce(0.0), ce(0.1), ce(0.2, 0.0)]  # each clip against the texts
    cols = [ce(0.2), ce(0.0), ce(0.0, 0.1)]  # each text against the clips
    expected = 0.5 * (sum(rows) / 3 + sum(cols) / 3)
    masked = float(symmetric_infonce(s, torch.tensor(0.0), same))
    assert masked == pytest.approx(expected, abs=1e-6)
    assert masked < float(symmetric_infonce(s, torch.tensor(0.0)))  # the twin no longer counts against


def test_text_keys_reach_every_contrastive_term():
    x = _inputs()
    plain = C2RLLoss(lm_weight=0.0)(**x)
    distinct = C2RLLoss(lm_weight=0.0)(**x, text_keys=torch.tensor([1, 2, 3]))
    for k in ("cico_loss", "global_loss"):
        assert float(distinct[k]) == pytest.approx(float(plain[k]), abs=1e-6)  # all different: no change
    twins = C2RLLoss(lm_weight=0.0)(**x, text_keys=torch.tensor([7, 7, 3]))
    for k in ("cico_loss", "global_loss"):
        assert float(twins[k]) != pytest.approx(float(plain[k]), abs=1e-4)
