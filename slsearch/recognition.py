"""`slsearch recognize`: clips -> gloss sequences, read from a CVT-SLR recogniser run
(slsearch.models.cvt_slr) or the retrieval model's gloss CTC head.

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


def load_gloss_reader(path: str | Path, device: str = "cpu"):
    """The network that reads glosses from a folder: a CVT-SLR recogniser run (slsearch.models.cvt_slr) or
    a retrieval checkpoint with a gloss head. Both have `encode_video` -> gloss_logits + mask."""
    from slsearch.models.cvt_slr import is_recognizer_folder, load_recognizer

    if is_recognizer_folder(path):
        return load_recognizer(path, device)
    from slsearch.models.checkpoint import load_model

    model = load_model(path, device)
    check_gloss_head(model)
    return model


def load_gloss_lm(model_dir: str | Path, model, lm: str | Path | None, lm_weight: float, k: float | None = None):
    """The gloss LM for the beam search, or None when lm_weight is 0. `lm`: a manifest whose gloss column
    trains a bigram LM, or a saved lm.json; default: the recogniser run's own lm.json."""
    import json

    from slsearch.errors import InputError
    from slsearch.models.ctc import BigramLM
    from slsearch.models.cvt_slr import LM_FILE

    if not lm_weight:
        return None
    if lm is None:
        own = Path(model_dir) / LM_FILE
        if not own.is_file():
            raise SlsearchError(f"--lm-weight needs a gloss LM: {model_dir} has no {LM_FILE}; give --lm "
                                "TRAIN_MANIFEST (its gloss column trains a bigram LM)")
        lm = own
    lm = Path(lm)
    glosses = list(model.config.glosses)
    if lm.suffix == ".json":
        try:
            out = BigramLM.from_dict(json.loads(lm.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(lm, f"not a gloss LM file ({e})") from e
        if out.classes != len(glosses):
            raise InputError(lm, f"a gloss LM over {out.classes} glosses, the model reads {len(glosses)}")
        return out
    from slsearch.data.manifest import read_manifest

    ids = {g: i + 1 for i, g in enumerate(glosses)}
    seqs = [[ids[g] for g in c.gloss.split()] for c in read_manifest(lm) if c.gloss and c.gloss.strip()
            and all(g in ids for g in c.gloss.split())]
    if not seqs:
        raise InputError(lm, "no clip has glosses the model knows (a gloss LM needs a gloss column)")
    return BigramLM.from_sequences(seqs, len(glosses), 0.1 if k is None else k)


def check_gloss_head(model) -> None:
    if getattr(model, "is_recognizer", False):
        return
    if not getattr(model.config, "glosses", None) or getattr(model.video, "gloss_head", None) is None:
        raise SlsearchError("this model has no gloss head (train it on a manifest with glosses and "
                            "loss.gloss_weight > 0 to recognise glosses)")


def recognize_paths(model, paths: Sequence[str | Path], beam: int = 5, batch_size: int = 16, lm=None,
                    lm_weight: float = 0.0, lm_bonus: float = 0.0) -> tuple[list[ClipRecognition], list[str]]:
    """Read the glosses of every clip found in `paths` with the network `model`. Returns (recognitions,
    failure lines)."""
    if beam < 1:
        raise SlsearchError(f"--beam must be at least 1, got {beam}")
    check_gloss_head(model)
    skipped: list[SlsearchError] = []  # what folder scans left out (special files, links leaving the folder)
    clips = collect_clips(paths, skipped=skipped)
    if not clips:
        raise SlsearchError(f"no clips found in {', '.join(map(str, paths))}")
    recognitions, failures = recognize_clips(model, clips, beam, batch_size, lm, lm_weight, lm_bonus)
    return recognitions, [str(e) for e in skipped] + failures


def read_poses(model, poses: Sequence[np.ndarray], beam: int = 1) -> list[str]:
    """Gloss readings ('MORGEN REGEN') of pose arrays (T, 543, 3) at the model's frame rate, in one batch."""
    return [r for r, _ in read_poses_with_posteriors(model, poses, beam)]


def read_poses_with_posteriors(model, poses: Sequence[np.ndarray], beam: int = 1) -> list[tuple[str, bytes]]:
    """(reading, its tokens' top glosses as slsearch.rank.gloss_spotting packs them) per pose array:
    what an index stores per clip when its readings come from a recogniser (`index --readings RUN`)."""
    from slsearch.encode import posteriors_of
    from slsearch.models.padding import pad

    check_gloss_head(model)
    feats = [_front_end(model).prepare(p) for p in poses]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x, lengths = pad(feats)
            v = model.encode_video(x.to(model.device), lengths.to(model.device))
            logits, mask = v["gloss_logits"].float().cpu().numpy(), v["mask"].cpu().numpy()
    finally:
        if was_training:
            model.train()
    readings = [" ".join(read_glosses(logits[i, mask[i]], model.config.glosses, beam, model.temporal_stride).glosses)
                for i in range(len(poses))]
    return list(zip(readings, posteriors_of(logits, mask)))


def _front_end(model):
    return model.front_end if getattr(model, "is_recognizer", False) else model.video.front_end


def recognize_clips(model, clips: Sequence[Clip], beam: int = 5, batch_size: int = 16, lm=None,
                    lm_weight: float = 0.0, lm_bonus: float = 0.0) -> tuple[list[ClipRecognition], list[str]]:
    from slsearch.models.padding import pad

    check_gloss_head(model)
    ok: list[tuple[Clip, np.ndarray, int, float]] = []
    failures: list[str] = []
    for clip in clips:
        try:
            front_end = _front_end(model)
            crops = getattr(front_end, "needs_crops", False)  # a retrieval model with an RGB stream
            seq = load_pose(clip, crops=crops)
            feats = front_end.prepare(seq if crops else seq.data)
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
                                           model.temporal_stride, fps, frames, lm, lm_weight, lm_bonus)
                    out.append(ClipRecognition(clip.id, str(clip.path) if clip.path else None, reading,
                                               clip.gloss, frames / fps))
    finally:
        if was_training:
            model.train()
    return out, failures
