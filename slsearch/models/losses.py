"""C²RL training objective: implicit content learning (contrastive) + explicit context learning (LM).

- `cico`: symmetric InfoNCE over the batch on the CiCo fine-grained score, learnable logit scale;
- `global`: symmetric InfoNCE on the pooled global vectors (the FAISS first stage);
- `lm`: cross-entropy of the decoder's sentence given the video tokens, label smoothing 0.2;
- `gloss`: CTC of the video tower's gloss head against the manifest's glosses, when it has them
  (clips without glosses are left out of it); or, for pseudo-glosses taken from the sentence, whose
  order is the spoken language's and not the signing's, `gloss_set`: the same head trained to spot
  each pseudo-gloss somewhere in the clip, in any order (Sign2GPT's order-free pseudo-gloss loss);
- with several visual streams (DVE-SLT): `stream`, the CiCo and global InfoNCE of each stream's own
  tokens against the text, and `inter`, a symmetric InfoNCE between the global vectors of every pair of
  streams of the same clips (the inter-modal loss that makes the streams agree).
Logit scales are clamped at ln(100), as CLIP/CiCo do. Returns a dict of weighted named losses.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from slsearch.models.similarity import CICO_TEMPERATURE, cico_similarity

MAX_LOGIT_SCALE = math.log(100.0)
GLOSS_OBJECTIVES = ("ctc", "set")


def symmetric_infonce(scores: torch.Tensor, logit_scale: torch.Tensor,
                      same_text: torch.Tensor | None = None) -> torch.Tensor:
    """scores (B, B) video x text with matching pairs on the diagonal -> mean of both CE directions.
    same_text (B, B) bool: pairs off the diagonal whose clips say the same sentence are no negatives (left out)."""
    logits = scores * logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    if same_text is not None:
        off_diagonal = ~torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same_text & off_diagonal, float("-inf"))
    target = torch.arange(scores.shape[0], device=scores.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class C2RLLoss(nn.Module):
    def __init__(self, cico_weight: float = 1.0, global_weight: float = 1.0, lm_weight: float = 1.0,
                 label_smoothing: float = 0.2, temperature: float = CICO_TEMPERATURE, gloss_weight: float = 0.0,
                 stream_weight: float = 1.0, inter_weight: float = 1.0, gloss_objective: str = "ctc"):
        super().__init__()
        if gloss_objective not in GLOSS_OBJECTIVES:
            raise ValueError(f"gloss objective must be one of {', '.join(GLOSS_OBJECTIVES)}, not {gloss_objective!r}")
        self.gloss_objective = gloss_objective
        self.stream_weight, self.inter_weight = stream_weight, inter_weight
        self.cico_weight, self.global_weight, self.lm_weight = cico_weight, global_weight, lm_weight
        self.gloss_weight = gloss_weight
        self.label_smoothing = label_smoothing
        self.temperature = temperature
        # distributed training (slsearch.training.distributed.BatchGroup): the contrastive terms over the
        # global batch gathered from every rank, the mean terms over the global token / clip counts
        self.batch_group = None

    def forward(self, video_tokens, video_mask, video_global, text_tokens=None, text_mask=None, text_global=None,
                logit_scale_fine=None, logit_scale_global=None, lm_logits=None, lm_labels=None, gloss_logits=None,
                gloss_targets=None, gloss_target_lengths=None, stream_tokens=None,
                stream_globals=None, text_keys=None) -> dict[str, torch.Tensor]:
        """text_keys (B,) int64 (slsearch.training.data.text_key): clips with equal keys say the same sentence
        and are not each other's negatives; None treats every other clip of the batch as a negative."""
        losses: dict[str, torch.Tensor] = {}
        if (self.cico_weight or self.global_weight) and text_tokens is None:
            raise ValueError("the contrastive losses need the text tower's outputs (with_text=True)")
        group = self.batch_group
        vt, vm, vg, tt, tm, tg = video_tokens, video_mask, video_global, text_tokens, text_mask, text_global
        keys = text_keys
        if group is not None and (self.cico_weight or self.global_weight or keys is not None):
            # every rank's clips, in rank order
            if keys is None:
                vt, vm, vg, tt, tm, tg = group.gather(vt, vm, vg, tt, tm, tg)
            else:
                vt, vm, vg, tt, tm, tg, keys = group.gather(vt, vm, vg, tt, tm, tg, keys)
        same = None if keys is None else keys[:, None] == keys[None, :]
        if self.cico_weight:
            fine = cico_similarity(vt, vm, tt, tm, self.temperature)  # (B, B)
            losses["cico_loss"] = self.cico_weight * symmetric_infonce(fine, logit_scale_fine, same)
        if self.global_weight:
            coarse = vg.float() @ tg.float().T  # (B, B), vectors are unit length
            losses["global_loss"] = self.global_weight * symmetric_infonce(coarse, logit_scale_global, same)
        if stream_tokens is not None and (self.stream_weight or self.inter_weight):
            losses.update(self._streams(stream_tokens, stream_globals, video_mask, text_tokens, text_mask,
                                        text_global, logit_scale_fine, logit_scale_global, same))
        if self.lm_weight and lm_logits is not None:
            if group is None:
                losses["lm_loss"] = self.lm_weight * F.cross_entropy(
                    lm_logits.float().flatten(0, 1), lm_labels.flatten(), ignore_index=-100,
                    label_smoothing=self.label_smoothing)
            else:  # the mean over the global batch's tokens
                total = F.cross_entropy(lm_logits.float().flatten(0, 1), lm_labels.flatten(), ignore_index=-100,
                                        label_smoothing=self.label_smoothing, reduction="sum")
                losses["lm_loss"] = self.lm_weight * group.global_mean(total, (lm_labels != -100).sum())
        if self.gloss_weight and gloss_logits is not None and gloss_targets is not None:
            objective = gloss_ctc if self.gloss_objective == "ctc" else gloss_set
            losses["gloss_loss"] = self.gloss_weight * objective(gloss_logits, video_mask, gloss_targets,
                                                                 gloss_target_lengths, group)
        return losses


    def _streams(self, stream_tokens, stream_globals, video_mask, text_tokens, text_mask, text_global,
                 logit_scale_fine, logit_scale_global, same_text=None) -> dict[str, torch.Tensor]:
        """DVE-SLT's per-stream cross-modal losses (mean over streams) and the inter-stream InfoNCE (mean over
        pairs; two clips of one sentence are still two clips there), over the global batch when distributed."""
        group = self.batch_group
        cross, inter, gathered = [], [], []
        for st, sg in zip(stream_tokens, stream_globals):
            vt, vm, vg, tt, tm, tg = st, video_mask, sg, text_tokens, text_mask, text_global
            if group is not None:
                vt, vm, vg, tt, tm, tg = group.gather(vt, vm, vg, tt, tm, tg)
            gathered.append(vg.float())
            if self.stream_weight:
                fine = cico_similarity(vt, vm, tt, tm, self.temperature)
                cross.append(symmetric_infonce(fine, logit_scale_fine, same_text)
                             + symmetric_infonce(vg.float() @ tg.float().T, logit_scale_global, same_text))
        if self.inter_weight:
            for i in range(len(gathered)):
                for j in range(i + 1, len(gathered)):
                    inter.append(symmetric_infonce(gathered[i] @ gathered[j].T, logit_scale_global))
        out = {}
        if cross:
            out["stream_loss"] = self.stream_weight * torch.stack(cross).mean()
        if inter:
            out["inter_loss"] = self.inter_weight * torch.stack(inter).mean()
        return out


def gloss_ctc(logits: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor,
              group=None) -> torch.Tensor:
    """logits (B, T, C+1) with blank 0, targets (B, S) padded, target_lengths (B,) with 0 = no glosses known
    -> mean over clips with glosses of the CTC loss per gloss (0 when no clip has glosses). With a
    distributed `group` (C2RLLoss.batch_group), the mean is over the clips with glosses of all ranks."""
    known = target_lengths > 0
    if group is None and not bool(known.any()):
        return logits.sum() * 0.0
    # clips without glosses get a harmless stand-in target, then are left out of the mean
    targets = torch.where(known[:, None], targets, torch.ones_like(targets))
    logp = torch.log_softmax(logits.float(), -1).transpose(0, 1)  # (T, B, C+1)
    per_clip = F.ctc_loss(logp, targets, mask.sum(1), target_lengths.clamp(min=1), blank=0,
                          reduction="none", zero_infinity=True)  # impossible alignments count 0, not inf
    if group is not None:  # every rank takes part in the count, with or without glosses
        return group.global_mean((per_clip / target_lengths.clamp(min=1))[known].sum(), known.sum())
    return (per_clip / target_lengths.clamp(min=1))[known].mean()


def gloss_set(logits: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor,
              group=None) -> torch.Tensor:
    """Order-free spotting of a clip's glosses (for pseudo-glosses, in spoken rather than signing order):
    with p_t(g) the softmax of token t's logits (B, T, C+1; blank 0), the clip shows gloss g as much as
    its likeliest token does, P(g) = max_t p_t(g) (multiple-instance learning: a gloss must win one token,
    so the greedy reading holds it; a noisy-OR lets it spread thin over many tokens and win none);
    binary cross-entropy of P against the set of the clip's glosses over the whole vocabulary, summed and
    divided by the clip's count of distinct glosses (as gloss_ctc divides by its length). The same head and softmax as CTC, so readings, posteriors and
    gloss search read it alike. Mean over the clips with glosses (of all ranks with a `group`)."""
    known = target_lengths > 0
    if group is None and not bool(known.any()):
        return logits.sum() * 0.0
    B, _, C1 = logits.shape
    present = torch.zeros(B, C1, device=logits.device)
    positions = torch.arange(targets.shape[1], device=targets.device)[None, :] < target_lengths[:, None]
    present.scatter_(1, torch.where(positions, targets, torch.zeros_like(targets)), 1.0)
    present = present[:, 1:]  # the blank is no gloss
    p = torch.softmax(logits.float(), -1)[..., 1:] * mask[..., None]  # padded tokens show nothing
    shown = p.amax(1).clamp(1e-6, 1 - 1e-6)  # (B, C)
    log_present, log_absent = torch.log(shown), torch.log1p(-shown)
    per_clip = -(present * log_present + (1 - present) * log_absent).sum(1) / present.sum(1).clamp(min=1)
    if group is not None:
        return group.global_mean(per_clip[known].sum(), known.sum())
    return per_clip[known].mean()
