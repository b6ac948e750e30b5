"""The one embedding path: clips and sentences -> global vectors + token states.

Training's dev evaluation, indexing and queries all call `encode_videos` / `encode_texts`, so a
clip is always embedded the same way. Inside: batching, sorting by length (less padding), eval
mode and no_grad; results come back in input order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from slsearch.errors import SlsearchError
from slsearch.models.padding import pad
from slsearch.progress import Progress, track
from slsearch.models.video_tower import ctc_glosses


def posteriors_of(logits: np.ndarray, mask: np.ndarray) -> list[bytes]:
    """Gloss logits (B, T, C+1) and their token mask -> each clip's stored top glosses (gloss_spotting.pack)."""
    from slsearch.rank.gloss_spotting import pack  # slsearch.rank imports this module

    return [pack(logits[i, mask[i]]) for i in range(len(logits))]


@dataclass
class Encoded:
    vectors: np.ndarray  # (N, D) float32, L2-normalised global vectors
    tokens: list[np.ndarray]  # N arrays (L_i, d) float32: the valid token states only
    readings: list[str] | None = None  # clips of a model with a gloss head: the greedy CTC gloss reading
    posteriors: list[bytes] | None = None  # and the top glosses of each token (slsearch.rank.gloss_spotting)

    def __len__(self) -> int:
        return len(self.tokens)


def _batched(model, items: Sequence[Any], lengths: Sequence[int], batch_size: int,
             run: Callable[[list[int]], tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str] | None,
                                              list[bytes] | None]],
             progress: Progress | None, desc: str) -> Encoded:
    """Run `run(indices) -> (tokens, mask, global, readings or None, posteriors or None)` over
    length-sorted batches; reassemble in order."""
    if batch_size <= 0:
        raise SlsearchError(f"batch_size must be positive, got {batch_size}")
    n = len(items)
    vectors = np.zeros((n, model.embed_dim), np.float32)
    tokens: list[np.ndarray | None] = [None] * n
    readings: list[str] | None = None
    posteriors: list[bytes] | None = None
    order = np.argsort(-np.asarray(lengths), kind="stable")  # longest first: memory peak shows at once
    was_training = model.training
    if was_training:  # walking every module costs ~3 ms: skip it for an eval-mode model (queries)
        model.eval()
    advance = track(progress, desc, n)
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size].tolist()
                tok, mask, glob, read, post = run(idx)
                tok, mask, glob = tok.float().cpu().numpy(), mask.cpu().numpy(), glob.float().cpu().numpy()
                if read is not None and readings is None:
                    readings, posteriors = [""] * n, [b""] * n
                for row, i in enumerate(idx):
                    tokens[i] = tok[row, mask[row]]
                    vectors[i] = glob[row]
                    if read is not None:
                        readings[i], posteriors[i] = read[row], post[row]
                advance(len(idx))
    finally:
        if was_training:
            model.train()
    return Encoded(vectors, tokens, readings, posteriors)  # type: ignore[arg-type]


def prepare_videos(model, inputs: Sequence[Any]) -> list[np.ndarray]:
    """Items -> per-frame features (T, F) via the model's front end; checks the temporal stride. Paths and
    manifest Clips are read here, before the model (`load_pose`, with a video's crops for an RGB stream)."""
    from slsearch.data.pose_files import PoseSequence
    from slsearch.data.poses import load_pose

    front_end = model.video.front_end
    feats = []
    for item in inputs:
        read = isinstance(item, (np.ndarray, PoseSequence))
        f = front_end.prepare(item if read else load_pose(item, crops=front_end.needs_crops))
        if f.shape[0] < model.temporal_stride:
            name = getattr(item, "id", "<array>" if read else item)
            raise SlsearchError(f"{name}: clip has {f.shape[0]} frames, fewer than the temporal stride "
                                f"{model.temporal_stride}")
        feats.append(f)
    return feats


def encode_videos(model, inputs: Sequence[Any], batch_size: int = 32, progress: Progress | None = None) -> Encoded:
    """Clips -> Encoded. An item is a pose array (T, 543, 3), a feature array (T, F) already made by
    the front end, a PoseSequence (with a video's crops, for an RGB stream) or a path / manifest Clip that
    `slsearch.data.poses.load_pose` reads."""
    if len(inputs) == 0:
        return Encoded(np.zeros((0, model.embed_dim), np.float32), [])
    feats = prepare_videos(model, inputs)
    device = model.device

    def run(idx: list[int]):
        x, lengths = pad([feats[i] for i in idx])
        out = model.encode_video(x.to(device), lengths.to(device))
        if "gloss_logits" not in out:
            return out["tokens"], out["mask"], out["global"], None, None
        logits, mask = out["gloss_logits"].float().cpu(), out["mask"].cpu()
        readings = ctc_glosses(logits, mask, model.config.glosses)
        return out["tokens"], out["mask"], out["global"], readings, posteriors_of(logits.numpy(), mask.numpy())

    return _batched(model, feats, [f.shape[0] for f in feats], batch_size, run, progress, "encoding clips")


def encode_texts(model, texts: Sequence[str], batch_size: int = 128, progress: Progress | None = None) -> Encoded:
    """Sentences -> Encoded (token states of the mBART encoder, global vectors). Each sentence is
    normalised first (`slsearch.text.normalise_query`: NFC, no control or zero-width characters, one space
    between words); one that is empty after that or holds an unpaired surrogate is an InputError."""
    from slsearch.text import normalise_query

    if isinstance(texts, str):
        raise SlsearchError("encode_texts takes a list of sentences, not one string")
    if len(texts) == 0:
        return Encoded(np.zeros((0, model.embed_dim), np.float32), [])
    # no length cap here: corpus sentences may be long, and the tokenizer keeps the first max_length tokens
    texts = [normalise_query(t, max_chars=None, what="sentence") for t in texts]
    device = model.device

    def run(idx: list[int]):
        ids, mask = model.tokenizer([texts[i] for i in idx])
        out = model.encode_text(ids.to(device), mask.to(device))
        return out["tokens"], out["mask"], out["global"], None, None

    return _batched(model, texts, [len(t) for t in texts], batch_size, run, progress, "encoding texts")
