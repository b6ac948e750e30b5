"""Subtitles as data: `.srt`, `.vtt`, `.ass`/`.ssa` files -> timed sentences, and a manifest of them.

Parsing is pysubs2's; this module adds what slsearch needs on top:

- a cue is `Cue(start, end, text)` in seconds, text with markup stripped (HTML-like tags `<i>`, `<v Anna>`,
  ASS override tags `{\\b1}`), lines joined by a space, whitespace collapsed; cues left without text
  (and ASS comment lines) are dropped; overlapping cues are kept, in order of start time;
- `shift` (seconds) is added to every cue. Interpreters lag the speech the subtitles follow, so the
  signing comes later than its cue: a positive shift moves the cues later. Default 0 (not yet measured,
  issue 20); a cue that starts before 0 after the shift is clipped to 0, one that ends at or before 0
  is dropped;
- `min_duration` (seconds, after the shift): shorter cues are dropped (default 0: only cues that do not
  end after they start);
- a file that cannot be used (not UTF-8, a timing line that is not a timestamp pair, no cues at all)
  is an InputError naming the file, the line where there is one, and the reason.

Naming rule (`find_subtitles`): the subtitles of `talk.mp4` are `talk.srt`, `talk.vtt`, `talk.ass` or
`talk.ssa` beside it, or the same with one language tag, e.g. `talk.de.srt`. The untagged file wins; among
several, the order is .srt, .vtt, .ass, .ssa, then the name; the others are reported as ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from slsearch.data.files import read_utf8
from slsearch.errors import InputError

SUBTITLE_EXTENSIONS = (".srt", ".vtt", ".ass", ".ssa")  # in order of preference
_FORMATS = {".srt": "srt", ".vtt": "vtt", ".ass": "ass", ".ssa": "ssa"}
_TS = r"(?:\d+:)?\d{1,2}:\d{2}(?:[,.]\d{1,3})?"
_TIMING = re.compile(rf"^\s*{_TS}\s*-->\s*{_TS}(?:\s.*)?$")
_TIMING_LIKE = re.compile(rf"^\s*{_TS}\s*[-=]+>?")  # a timestamp and an arrow of sorts: meant as timing
_TAG = re.compile(r"<[^<>]*>|\{\\[^{}]*\}")


class Cue(NamedTuple):
    start: float  # seconds
    end: float  # seconds
    text: str


def _vtt_cues_only(text: str) -> str:
    """WebVTT without what pysubs2 would read as cue text: cue identifiers (the line above a timing line)
    and NOTE, STYLE and REGION blocks. Line numbers are kept (a dropped line becomes an empty one)."""
    lines = text.split("\n")
    block_start = True
    for i, line in enumerate(lines):
        if not line.strip():
            block_start = True
            continue
        if block_start and line.split(" ", 1)[0].split("\t", 1)[0] in ("NOTE", "STYLE", "REGION"):
            j = i
            while j < len(lines) and lines[j].strip():
                lines[j] = ""
                j += 1
        elif block_start and "-->" not in line and i + 1 < len(lines) and "-->" in lines[i + 1] and i > 0:
            lines[i] = ""  # a cue identifier
        block_start = False
    return "\n".join(lines)


def _clean_text(text: str) -> str:
    return " ".join(_TAG.sub(" ", text).split())


def read_subtitles(path: str | Path, shift: float = 0.0, min_duration: float = 0.0) -> list[Cue]:
    """The cues of a subtitle file, shifted by `shift` seconds, in order of start (see the module doc)."""
    import pysubs2

    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(path, f"unsupported subtitle type {path.suffix!r} (use {', '.join(SUBTITLE_EXTENSIONS)})")
    if not path.is_file():
        raise InputError(path, "subtitle file not found" if not path.exists() else "not a regular file")
    text = read_utf8(path, "subtitles").replace("\r\n", "\n").replace("\r", "\n")
    if fmt in ("srt", "vtt"):  # pysubs2 reads a broken timing line as cue text: refuse it instead
        for n, line in enumerate(text.split("\n"), 1):
            if ("-->" in line or _TIMING_LIKE.match(line)) and not _TIMING.match(line):
                raise InputError(path, f"line {n} is not a valid timing line: {line.strip()[:60]!r}")
    if fmt == "vtt":
        text = _vtt_cues_only(text)
    try:
        subs = pysubs2.SSAFile.from_string(text, format_=fmt)
    except Exception as e:  # pysubs2's format errors, ValueError on a bad ASS field: all damage
        raise InputError(path, f"not a readable {fmt.upper()} file ({type(e).__name__}: {str(e)[:200]})") from None
    events = [e for e in subs if not e.is_comment]
    if not events and text.strip() and not (fmt == "vtt" and text.strip() == "WEBVTT"):
        raise InputError(path, f"no subtitle cues found (is it a {fmt.upper()} file?)")
    cues = []
    for e in events:
        words = _clean_text(e.plaintext)
        start, end = e.start / 1000 + shift, e.end / 1000 + shift
        if not words or end <= 0:
            continue
        start = max(start, 0.0)
        if end <= start or end - start < min_duration:
            continue
        cues.append(Cue(round(start, 3), round(end, 3), words))
    cues.sort(key=lambda c: (c.start, c.end))  # stable: overlapping cues keep their order
    return cues


def find_subtitles(media: Path) -> list[Path]:
    """Subtitle files for `media` by the naming rule (module doc), the preferred one first."""
    try:
        siblings = list(media.parent.iterdir())
    except OSError:
        return []
    found = []
    for p in siblings:
        ext = p.suffix.lower()
        if ext not in SUBTITLE_EXTENSIONS or not p.is_file():
            continue
        stem = p.name[: -len(ext)]
        if stem == media.stem:
            found.append((0, SUBTITLE_EXTENSIONS.index(ext), p.name, p))
        elif "." in stem and stem.rsplit(".", 1)[0] == media.stem and stem.rsplit(".", 1)[1]:
            found.append((1, SUBTITLE_EXTENSIONS.index(ext), p.name, p))
    return [f[-1] for f in sorted(found)]


def subtitle_manifest(paths: Iterable[str | Path], out: str | Path = "manifest.jsonl", shift: float = 0.0,
                      min_duration: float = 0.0) -> dict[str, Any]:
    """One manifest row per subtitle cue of every video (or pose file) under `paths` with subtitles.

    Rows: id `<clip id>#<n>` (n = 1, 2, ... in order of start; clip id as `slsearch index` names the
    file: its path below the folder, without extension), path = the video, start, end, text; written
    as JSONL to `out` (paths relative to it), readable by read_manifest, `slsearch index` and
    `slsearch train --manifest`. A subtitle file that cannot be read is reported in `failed` and the
    others go on; media without subtitles are listed in `without_subtitles`. InputError when no row
    at all comes out (an empty manifest is no use to anyone).
    """
    from slsearch.data.manifest import VIDEO_EXTENSIONS, POSE_EXTENSIONS, Clip, collect_clips, write_manifest

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    skipped: list[InputError] = []
    media = [c for c in collect_clips(paths, skipped=skipped)
             if c.path is not None and c.path.suffix.lower() in VIDEO_EXTENSIONS | POSE_EXTENSIONS
             and c.start is None and c.end is None]
    rows: list[Clip] = []
    without, failed, used, notes = [], [], {}, []
    for c in media:
        subs = find_subtitles(Path(c.path))
        if not subs:
            without.append(str(c.path))
            continue
        if len(subs) > 1:
            notes.append(f"{c.path}: using {subs[0].name}, ignoring {', '.join(s.name for s in subs[1:])}")
        try:
            cues = read_subtitles(subs[0], shift=shift, min_duration=min_duration)
        except InputError as e:
            failed.append({"path": e.path, "reason": str(e)})
            continue
        used[str(c.path)] = str(subs[0])
        rows.extend(Clip(id=f"{c.id}#{n}", path=c.path, text=cue.text, start=cue.start, end=cue.end)
                    for n, cue in enumerate(cues, 1))
    if not rows:
        where = ", ".join(map(str, paths))
        raise InputError(where, "no subtitle cues found: a subtitle file needs the video's name "
                                "(talk.mp4 + talk.srt, talk.vtt, talk.ass or talk.de.srt)"
                         + (f"; {len(failed)} unreadable, first: {failed[0]['reason']}" if failed else ""))
    write_manifest(rows, out)
    return {"out": str(out), "media": len(media), "with_subtitles": len(used), "segments": len(rows),
            "shift": shift, "min_duration": min_duration, "subtitles": used, "without_subtitles": without,
            "failed": failed, "skipped": [str(e) for e in skipped], "notes": notes}
