"""Cutting a long pose sequence (a programme) into sentence-length segments to index.

Three ways, chosen per file by `plan_segments`:

- **subtitles**: one segment per cue (after `shift`), with the cue's text. Cues past the end of the media
  are clipped or dropped, overlapping cues are cut where the next one starts; each such repair is a note.
- **activity**: signing is where a hand is raised into the signing space. Per frame, a wrist's height
  above the hip in torso lengths (hip to shoulder, from the pose) says whether the hand is raised; a
  majority vote over `smooth` seconds removes flicker; raised stretches closer than `min_pause` are one
  phrase, stretches shorter than `min_segment` are dropped, and each segment is padded by `pad` (the
  hands rise before the first sign starts and fall after the last one). A phrase longer than
  `max_segment` (continuous signing with no lowered hands) is cut at its quietest moment (slowest
  wrists) when that moment is a real pause, else covered by overlapping windows.
- **windows**: overlapping windows of `window` seconds every `stride` seconds (hits from two windows of
  the same file are merged at search time, index/search.py).

The defaults are measured on synthetic programmes of sentences with rest pauses between them
(benchmarks/long_video.py, RESULTS "Long videos"); they are meant for real signing: a torso-relative
height and a pause of about a third of a second, not properties of the synthesiser.

Interpreters lag the speech that subtitles follow: `estimate_shift` finds the shift (seconds, positive:
the signing comes later than its cue) that puts the cues over the most signing activity.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from slsearch.data import layout as L
from slsearch.data.pose_files import PoseSequence
from slsearch.data.subtitles import Cue
from slsearch.errors import SlsearchError

METHODS = ("auto", "subtitles", "activity", "windows")
_SHOULDERS, _HIPS = (11, 12), (23, 24)


@dataclass(frozen=True)
class SegmentParams:
    longer_than: float = 60.0  # seconds: media longer than this are segmented (media with subtitles always)
    raised: float = 0.25  # a wrist this many torso lengths above the hip is raised into the signing space
    smooth: float = 0.2  # seconds of majority vote over the raised / lowered state
    min_pause: float = 0.5  # seconds: lowered hands shorter than this do not end a phrase
    min_segment: float = 0.6  # seconds: shorter raised stretches are not signing (a scratch, a wave)
    max_segment: float = 15.0  # seconds: longer phrases are cut at a pause or covered by windows
    pad: float = 0.2  # seconds added at both ends of an activity segment
    window: float = 8.0  # seconds: window length (windows method, and the fallback inside long phrases)
    stride: float = 4.0  # seconds between window starts

    def __post_init__(self) -> None:
        for name in ("longer_than", "smooth", "min_pause", "min_segment", "max_segment", "pad", "window", "stride"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise SlsearchError(f"segment {name} must be a number >= 0, not {value}")
        if self.window <= 0 or self.stride <= 0:
            raise SlsearchError("segment window and stride must be positive")
        if self.max_segment < max(self.min_segment, 1.0):
            raise SlsearchError(f"segment max_segment ({self.max_segment}) must be at least 1 s and min_segment")


@dataclass
class Segment:
    start: float  # seconds into the media
    end: float
    text: str | None = None  # the cue's text (subtitles), else None


@dataclass
class SegmentPlan:
    segments: list[Segment]
    method: str  # what cut them: subtitles, activity or windows
    shift: float | None = None  # the subtitle shift applied (seconds), when subtitles cut them
    notes: list[str] = field(default_factory=list)  # repairs and findings, one line each


# --- activity -------------------------------------------------------------------------------------------

def hand_height(seq: PoseSequence) -> np.ndarray | None:
    """(T,) height of the higher wrist above the hip, in torso lengths (NaN where no wrist is seen);
    None when the pose has no shoulders anywhere (no torso to measure by)."""
    pose = seq.data[:, L.POSE, :2].astype(np.float64)
    shoulder_y, hip_y = _mean_y(pose, _SHOULDERS), _mean_y(pose, _HIPS)
    if shoulder_y is None:
        return None
    shoulder_y = _fill(shoulder_y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no shoulder width, handled below
        width = np.nanmedian(np.abs(pose[:, 11, 0] - pose[:, 12, 0]))
    if hip_y is not None:
        torso = float(np.nanmedian(_fill(hip_y) - shoulder_y))
        hip = _fill(hip_y)
    else:  # hips never estimated: a torso is about 1.5 shoulder widths
        torso = 1.5 * float(width) if np.isfinite(width) else np.nan
        hip = shoulder_y + torso
    if not np.isfinite(torso) or torso <= 1e-6:
        return None
    wrists = pose[:, (L.LEFT_WRIST_POSE, L.RIGHT_WRIST_POSE), 1]  # (T, 2)
    with np.errstate(invalid="ignore"):
        heights = (hip[:, None] - wrists) / torso
    return np.nanmax(np.where(np.isfinite(heights), heights, -np.inf), axis=1)


def _mean_y(pose: np.ndarray, points: tuple[int, int]) -> np.ndarray | None:
    """(T,) mean height of two body points per frame (NaN where neither is seen); None if never seen."""
    y = pose[:, points, 1]
    if not np.isfinite(y).any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames where neither point is seen stay NaN
        return np.nanmean(y, axis=1)


def wrist_speed(seq: PoseSequence) -> np.ndarray:
    """(T,) speed of the faster wrist in image widths per second (0 where it cannot be measured)."""
    wrists = seq.data[:, (L.LEFT_WRIST_POSE, L.RIGHT_WRIST_POSE), :2].astype(np.float64)
    step = np.linalg.norm(np.diff(wrists, axis=0), axis=-1) * seq.fps  # (T-1, 2)
    step = np.where(np.isfinite(step), step, 0.0).max(axis=1)
    return np.concatenate([[0.0], step]) if len(wrists) else np.zeros(0)


def _fill(x: np.ndarray) -> np.ndarray:
    """NaNs replaced by the nearest earlier finite value (the first ones by the first finite one)."""
    x = x.copy()
    ok = np.isfinite(x)
    if not ok.any():
        return x
    idx = np.where(ok, np.arange(len(x)), 0)
    np.maximum.accumulate(idx, out=idx)
    x = x[idx]
    x[: np.argmax(ok)] = x[np.argmax(ok)]
    return x


def _majority(active: np.ndarray, frames: int) -> np.ndarray:
    """Each frame takes the majority state of the `frames` frames around it (odd window, ties stay)."""
    if frames <= 1:
        return active
    half = frames // 2
    c = np.concatenate([[0], np.cumsum(np.pad(active.astype(np.int64), half, mode="edge"))])
    votes = c[2 * half + 1:] - c[:-(2 * half + 1)]
    return votes * 2 > 2 * half + 1


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """[first, end) frame ranges where `active` is True."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def activity_runs(seq: PoseSequence, params: SegmentParams) -> list[tuple[int, int]] | None:
    """[first, end) frames of the signing phrases (before padding); None when the pose has no torso."""
    height = hand_height(seq)
    if height is None:
        return None
    fps = seq.fps
    active = _majority(height > params.raised, max(1, int(round(params.smooth * fps)) | 1))
    runs = _runs(active)
    merged: list[list[int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] < params.min_pause * fps:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged if b - a >= params.min_segment * fps]


def _split_long(a: int, b: int, speed: np.ndarray, fps: float, params: SegmentParams) -> list[tuple[int, int]]:
    """A phrase longer than max_segment: cut at its quietest moment when that is a pause (the wrists
    slower than a quarter of the phrase's median speed), recursively; else overlapping windows."""
    if b - a <= params.max_segment * fps:
        return [(a, b)]
    margin = int(params.min_segment * fps) or 1
    inner = speed[a + margin: b - margin]
    if len(inner):
        kernel = max(1, int(0.2 * fps))
        smooth = np.convolve(inner, np.ones(kernel) / kernel, mode="same")
        cut = a + margin + int(np.argmin(smooth))
        if smooth.min() < 0.25 * np.median(speed[a:b]):
            return _split_long(a, cut, speed, fps, params) + _split_long(cut, b, speed, fps, params)
    starts = window_starts((b - a) / fps, params)
    return [(a + int(round(s * fps)), min(b, a + int(round((s + params.window) * fps)))) for s in starts]


def segment_by_activity(seq: PoseSequence, params: SegmentParams) -> SegmentPlan:
    runs = activity_runs(seq, params)
    if runs is None:
        plan = segment_by_windows(seq.duration, params)
        plan.notes.append("no shoulders in the pose to tell signing from rest: cut into overlapping windows")
        return plan
    speed = wrist_speed(seq)
    pieces = [p for a, b in runs for p in _split_long(a, b, speed, seq.fps, params)]
    segments = []
    for a, b in pieces:
        start = max(0.0, a / seq.fps - params.pad)
        end = min(seq.duration, b / seq.fps + params.pad)
        segments.append(Segment(round(start, 3), round(end, 3)))
    plan = SegmentPlan(segments, "activity")
    if not segments:
        plan.notes.append("no signing detected (no hand raised into the signing space long enough)")
    return plan


# --- windows --------------------------------------------------------------------------------------------

def window_starts(duration: float, params: SegmentParams) -> list[float]:
    """Starts of windows covering [0, duration]; the last window ends at the end (never a sliver)."""
    if duration <= params.window:
        return [0.0]
    starts = list(np.arange(0.0, duration - params.window, params.stride))
    starts.append(duration - params.window)
    return [round(float(s), 3) for s in starts]


def segment_by_windows(duration: float, params: SegmentParams) -> SegmentPlan:
    return SegmentPlan([Segment(s, round(min(duration, s + params.window), 3))
                        for s in window_starts(duration, params)], "windows")


# --- subtitles ------------------------------------------------------------------------------------------

def segments_from_cues(cues: list[Cue], duration: float, shift: float = 0.0) -> SegmentPlan:
    """One segment per cue, moved by `shift` seconds, repaired to fit the media (see the module doc)."""
    notes: list[str] = []
    out: list[Segment] = []
    past_end = clipped = overlapped = 0
    shifted = sorted((Cue(c.start + shift, c.end + shift, c.text) for c in cues), key=lambda c: (c.start, c.end))
    for i, cue in enumerate(shifted):
        start, end = max(0.0, cue.start), min(duration, cue.end)
        if start >= duration or end <= 0:
            past_end += 1
            continue
        if end < cue.end or start > cue.start:
            clipped += 1
        if i + 1 < len(shifted) and shifted[i + 1].start < end:  # overlaps the next cue: ends where it starts
            overlapped += 1
            end = max(start, shifted[i + 1].start)
        if end - start <= 0:
            continue
        out.append(Segment(round(start, 3), round(end, 3), cue.text))
    if past_end:
        notes.append(f"{past_end} subtitle cue(s) start after the end of the media ({duration:.1f} s): dropped")
    if clipped:
        notes.append(f"{clipped} subtitle cue(s) run past the media's start or end: clipped")
    if overlapped:
        notes.append(f"{overlapped} subtitle cue(s) overlap the next one: cut where the next starts")
    return SegmentPlan(out, "subtitles", shift=shift, notes=notes)


def estimate_shift(cues: list[Cue], seq: PoseSequence, params: SegmentParams,
                   lo: float = -2.0, hi: float = 5.0, step: float = 0.1) -> float | None:
    """The shift (seconds, in [lo, hi]) that puts the cues over signing: the one maximising the sum, over
    the frames the shifted cues cover, of +1 for a raised hand and -1 for lowered ones; ties go to the
    smallest |shift|. None when the pose cannot tell signing from rest."""
    height = hand_height(seq)
    if height is None or not cues:
        return None
    fps = seq.fps
    active = _majority(height > params.raised, max(1, int(round(params.smooth * fps)) | 1))
    gain = np.concatenate([[0.0], np.cumsum(np.where(active, 1.0, -1.0))])
    n = len(active)
    starts = np.array([c.start for c in cues]) * fps
    ends = np.array([c.end for c in cues]) * fps
    best, best_score = 0.0, -np.inf
    for s in sorted(np.arange(lo, hi + step / 2, step), key=lambda s: (abs(s), s)):
        a = np.clip(np.round(starts + s * fps), 0, n).astype(int)
        b = np.clip(np.round(ends + s * fps), 0, n).astype(int)
        score = float((gain[b] - gain[a]).sum())
        if score > best_score + 1e-9:
            best, best_score = round(float(s), 2), score
    return best


# --- the plan -------------------------------------------------------------------------------------------

def plan_segments(seq: PoseSequence, cues: list[Cue] | None, params: SegmentParams, method: str = "auto",
                  shift: float | str = 0.0) -> SegmentPlan:
    """The segments of one long media. `method` auto: subtitles when there are cues, else activity.
    `shift`: seconds, or "auto" (estimate_shift; 0 when the pose cannot tell)."""
    if method not in METHODS:
        raise SlsearchError(f"segmenting method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "subtitles" or (method == "auto" and cues):
        if not cues:
            return SegmentPlan([], "subtitles", notes=["no subtitle cues"])
        notes = []
        if shift == "auto":
            estimate = estimate_shift(cues, seq, params)
            if estimate is None:
                notes.append("subtitle shift not estimated (no torso in the pose to tell signing from rest): 0 s")
            shift = estimate or 0.0
        plan = segments_from_cues(cues, seq.duration, float(shift))
        plan.notes = notes + plan.notes
        return plan
    if method == "windows":
        return segment_by_windows(seq.duration, params)
    return segment_by_activity(seq, params)
