"""Synthetic programmes: sentence clips of one signer joined into one long pose sequence, with the truth.

A programme is what a broadcaster's archive holds: sentences signed one after another, the hands at rest
for a moment between them. Built from clips whose sentence and extent are known, it is the ground truth
for segmentation and for time-localised search (benchmarks/long_video.py, tests/test_long_media.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from slsearch.data.pose_files import PoseSequence
from slsearch.data.segments import Segment


def join_clips(clips: Sequence[tuple[PoseSequence, str | None]], rng: np.random.Generator,
               pause: tuple[float, float] = (0.3, 1.5)) -> tuple[PoseSequence, list[Segment]]:
    """Clips (pose at one frame rate, sentence) -> (programme, each sentence's true segment).

    Between two clips the signer rests for a uniform random `pause` (seconds): the last frame of the
    clip before (a rest pose: synthetic and real sentence clips end with the hands down) held still.
    """
    if not clips:
        raise ValueError("a programme needs at least one clip")
    fps = clips[0][0].fps
    if any(abs(seq.fps - fps) > 1e-6 for seq, _ in clips):
        raise ValueError("the clips of a programme must share one frame rate")
    parts: list[np.ndarray] = []
    truth: list[Segment] = []
    t = 0
    for i, (seq, text) in enumerate(clips):
        if i:
            gap = int(round(rng.uniform(*pause) * fps))
            parts.append(np.repeat(parts[-1][-1:], gap, axis=0))
            t += gap
        parts.append(seq.data)
        truth.append(Segment(round(t / fps, 3), round((t + seq.frames) / fps, 3), text))
        t += seq.frames
    return PoseSequence(np.concatenate(parts).astype(np.float32), fps), truth


def write_srt(segments: Sequence[Segment], path: str | Path, shift: float = 0.0) -> Path:
    """The segments as an .srt file, each cue moved by `shift` seconds (negative: the cues come before
    the signing, as subtitles that follow the speech do beside a lagging interpreter)."""
    import pysubs2

    subs = pysubs2.SSAFile()
    for s in segments:
        start, end = max(0.0, s.start + shift), s.end + shift
        if end > start:
            subs.append(pysubs2.SSAEvent(start=int(round(start * 1000)), end=int(round(end * 1000)),
                                         text=s.text or ""))
    path = Path(path)
    subs.save(str(path), format_="srt")
    return path
