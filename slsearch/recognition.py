"""`slsearch recognize`: clips -> gloss sequences, read from the retrieval model's gloss CTC head.

Each clip is read with `load_pose` (a clip that cannot be read is reported on one line and skipped), its
video tokens go through the encoder, and the gloss logits are decoded with CTC prefix beam search
(`slsearch.models.ctc`); each gloss gets a time span from the Viterbi alignment and a confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from slsearch.data.manifest import Clip, collect_clips
from slsearch.data.poses import load_pose
from slsearch.errors import SlsearchError
from slsearch.models.ctc import GlossReading, read_glosses


@dataclass
class ClipRecognition:
    id: str
    path: str | None
    reading: GlossReading
    reference: str | None = None  # the manifest's gloss column, when it has one
    duration: float = 0.0  # seconds

    @property
    def glosses(self) -> str:
        return " ".join(self.reading.glosses)

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "path": self.path, "duration": round(self.duration, 3), **self.reading.to_dict()}
        if self.reference is not None:
            d["reference"] = self.reference
        return d


def check_gloss_head(model) -> None:
    if not getattr(model.config, "glosses", None) or getattr(model.video, "gloss_head", None) is None:
        raise SlsearchError("this model has no gloss head (train it on a manifest with glosses and "
                            "loss.gloss_weight > 0 to recognise glosses)")


def recognize_paths(model, paths: Sequence[str | Path], beam: int = 5,
                    batch_size: int = 16) -> tuple[list[ClipRecognition], list[str]]:
    """Read the glosses of every clip found in `paths` with the network `model`. Returns (recognitions,
    failure lines)."""
    if beam < 1:
        raise SlsearchError(f"--beam must be at least 1, got {beam}")
    check_gloss_head(model)
    skipped: list[SlsearchError] = []  # what folder scans left out (special files, links leaving the folder)
    clips = collect_clips(paths, skipped=skipped)
    if not clips:
        raise SlsearchError(f"no clips found in {', '.join(map(str, paths))}")
    recognitions, failures = recognize_clips(model, clips, beam, batch_size)
    return recognitions, [str(e) for e in skipped] + failures


def recognize_clips(model, clips: Sequence[Clip], beam: int = 5,
                    batch_size: int = 16) -> tuple[list[ClipRecognition], list[str]]:
    from slsearch.models.padding import pad

    check_gloss_head(model)
    ok: list[tuple[Clip, np.ndarray, int, float]] = []
    failures: list[str] = []
    for clip in clips:
        try:
            seq = load_pose(clip)
            feats = model.video.front_end.prepare(seq.data)
            if feats.shape[0] < model.temporal_stride:
                raise SlsearchError(f"{clip.path}: clip has {seq.frames} frames, fewer than the model's "
                                    f"temporal stride {model.temporal_stride}")
            ok.append((clip, feats, seq.frames, float(seq.fps)))
        except SlsearchError as e:
            failures.append(str(e))
    out: list[ClipRecognition] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(ok), batch_size):
                part = ok[start:start + batch_size]
                x, lengths = pad([f for _, f, _, _ in part])
                v = model.encode_video(x.to(model.device), lengths.to(model.device))
                logits, mask = v["gloss_logits"].float().cpu().numpy(), v["mask"].cpu().numpy()
                for row, (clip, _, frames, fps) in enumerate(part):
                    reading = read_glosses(logits[row, mask[row]], model.config.glosses, beam,
                                           model.temporal_stride, fps, frames)
                    out.append(ClipRecognition(clip.id, str(clip.path) if clip.path else None, reading,
                                               clip.gloss, frames / fps))
    finally:
        if was_training:
            model.train()
    return out, failures
