"""`slsearch translate`: clips (videos, pose files, folders, manifests) -> sentences.

Each clip is read with `load_pose` (videos through the MediaPipe cache); a clip that cannot be
read is reported on one line and skipped, the others are translated in batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from slsearch.data.manifest import Clip, collect_clips
from slsearch.data.poses import load_pose
from slsearch.errors import SlsearchError


@dataclass
class ClipTranslation:
    id: str
    path: str | None
    text: str  # the translation
    score: float  # length-normalised log-probability of the beam's best hypothesis
    token_ids: list[int]
    reference: str | None = None  # the clip's own sentence, when the manifest has one
    attention: np.ndarray | None = None  # (tokens, video tokens)
    glosses: str | None = None  # what the gloss head read, for models trained with glosses

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "path": self.path, "translation": self.text, "score": round(self.score, 4)}
        if self.glosses is not None:
            d["glosses"] = self.glosses
        if self.reference is not None:
            d["reference"] = self.reference
        return d


def translate_paths(model, paths: Sequence[str | Path], settings=None, max_len: int | None = None,
                    batch_size: int = 16, with_attention: bool = False) -> tuple[list[ClipTranslation], list[str]]:
    """Translate every clip found in `paths` with the network `model` and `settings` (a DecodeConfig; a
    checkpoint's own are `RetrievalModel.decode`). Returns (translations, failure lines)."""
    from slsearch.models.translator import translate

    skipped: list[SlsearchError] = []  # what folder scans left out (special files, links leaving the folder)
    clips = collect_clips(paths, skipped=skipped)
    if not clips:
        raise SlsearchError(f"no clips found in {', '.join(map(str, paths))}")
    ok: list[tuple[Clip, np.ndarray]] = []
    failures: list[str] = [str(e) for e in skipped]
    for clip in clips:
        try:
            seq = load_pose(clip, crops=model.video.front_end.needs_crops)  # crops: for an RGB stream
            if seq.frames < model.temporal_stride:
                raise SlsearchError(f"{clip.path}: clip has {seq.frames} frames, fewer than the model's "
                                    f"temporal stride {model.temporal_stride}")
            ok.append((clip, seq))
        except SlsearchError as e:
            failures.append(str(e))
    out: list[ClipTranslation] = []
    if ok:
        results = translate(model, [pose for _, pose in ok], settings, max_len=max_len, batch_size=batch_size,
                            with_attention=with_attention)
        for (clip, _), r in zip(ok, results):
            out.append(ClipTranslation(clip.id, str(clip.path) if clip.path else None, r.text, r.score,
                                       r.token_ids, clip.text, r.attention, r.glosses))
    return out, failures


def decode_settings(defaults, beam: int | None = None, length_penalty: float | None = None,
                    no_repeat_ngram: int | None = None):
    """A checkpoint's DecodeConfig with the options the user gave (checked) in place of its own."""
    check_decode_options(beam, length_penalty, no_repeat_ngram)
    return defaults.with_overrides(beam=beam, length_penalty=length_penalty, no_repeat_ngram=no_repeat_ngram)


def check_decode_options(beam: int | None, length_penalty: float | None, no_repeat_ngram: int | None) -> None:
    if beam is not None and beam < 1:
        raise SlsearchError(f"--beam must be at least 1, got {beam}")
    if length_penalty is not None and length_penalty < 0:
        raise SlsearchError(f"--length-penalty must not be negative, got {length_penalty}")
    if no_repeat_ngram is not None and no_repeat_ngram < 0:
        raise SlsearchError(f"--no-repeat-ngram must be 0 (off) or positive, got {no_repeat_ngram}")


def plot_attention(translation: ClipTranslation, model, out: str | Path, fps: float = 25.0) -> Path:
    """Draw the decoder's cross-attention (generated words x video tokens) as a PNG heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    att = translation.attention
    if att is None or att.size == 0:
        raise SlsearchError(f"{translation.id}: no attention to draw (empty translation)")
    words = [model.tokenizer.decode([i]) or "?" for i in translation.token_ids]
    stride_s = model.temporal_stride / fps
    fig, ax = plt.subplots(figsize=(max(6, att.shape[1] * 0.25), max(3, att.shape[0] * 0.35)))
    ax.imshow(att, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(words)), words)
    ticks = range(0, att.shape[1], max(1, att.shape[1] // 12))
    ax.set_xticks(list(ticks), [f"{t * stride_s:.1f}s" for t in ticks])
    ax.set_xlabel(f"video tokens (one per {model.temporal_stride} frames)")
    ax.set_title(f"{translation.id}: {translation.text}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

