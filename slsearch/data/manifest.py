"""Manifests: which clips there are, where their files are, and what they say.

Formats read: JSONL, CSV, TSV, Parquet with columns `id`, `path` (relative to the manifest),
`text` and optional `gloss`, `split`, `signer`, `start`/`end` (seconds, a clip inside a longer
video), `num_frames`; the PHOENIX-2014T corpus CSV (`name|video|start|end|speaker|orth|translation`);
How2Sign's realigned CSV. A folder without a manifest is scanned file by file (no text).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from slsearch.errors import InputError

VIDEO_EXTENSIONS = {".mp4", ".webm", ".mov", ".mkv", ".avi"}
POSE_EXTENSIONS = {".pose", ".npy", ".npz"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg"}
MANIFEST_EXTENSIONS = {".jsonl", ".csv", ".tsv", ".parquet"}
# Column names other corpora use for our fields (first match wins).
_PATH_KEYS = ("path", "file", "video", "video_path")
_TEXT_KEYS = ("text", "sentence", "translation")


@dataclass
class Clip:
    """One clip: a sentence-length stretch of signing and what is known about it."""

    id: str
    path: Path | None  # video file, frame folder or pose file; None for text-only rows
    text: str | None = None
    gloss: str | None = None
    split: str | None = None
    signer: str | None = None
    start: float | None = None  # seconds into `path`; None = from the beginning
    end: float | None = None  # seconds; None = to the end
    num_frames: int | None = None  # known clip length (e.g. PHOENIX), if any
    extra: dict[str, Any] = field(default_factory=dict)

    def to_record(self, relative_to: Path | None = None) -> dict[str, Any]:
        rec = asdict(self)
        extra = rec.pop("extra")
        if self.path is not None and relative_to is not None:
            try:
                rec["path"] = str(Path(self.path).resolve().relative_to(relative_to.resolve()))
            except ValueError:
                rec["path"] = str(Path(self.path).resolve())
        elif self.path is not None:
            rec["path"] = str(self.path)
        rec = {k: v for k, v in rec.items() if v is not None}
        rec.update(extra)
        return rec


def _clean(value: Any) -> Any:
    """Empty strings, NaN and None all mean 'not given'."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _first(row: dict[str, Any], keys: Iterable[str]) -> Any:
    for k in keys:
        v = _clean(row.get(k))
        if v is not None:
            return v
    return None


def _text_of(row: dict[str, Any], text_field: str | None) -> str | None:
    if text_field:
        v = _clean(row.get(text_field))
        return None if v is None else str(v)
    v = _first(row, _TEXT_KEYS)
    if v is None:  # corpora with one column per language (text_de, text_zh, text_en): the first wins
        for k in row:
            if k.startswith("text_") and not k.endswith("_raw") and _clean(row[k]) is not None:
                v = row[k]
                break
    return None if v is None else str(v)


def _float(value: Any, source: Path, what: str) -> float | None:
    value = _clean(value)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(source, f"{what} is not a number: {value!r}") from None


def clip_from_row(row: dict[str, Any], base: Path, source: Path, index: int, text_field: str | None = None) -> Clip:
    """A manifest row -> Clip; `path` is resolved against `base` (the manifest's folder)."""
    rel = _first(row, _PATH_KEYS)
    cid = _clean(row.get("id")) or _clean(row.get("name"))
    if cid is None:
        cid = Path(str(rel)).stem if rel is not None else f"row{index}"
    start = _float(row.get("start"), source, f"row {index} start")
    end = _float(row.get("end"), source, f"row {index} end")
    if start is not None and start < 0:  # PHOENIX writes -1 for "whole file"
        start = None
    if end is not None and end < 0:
        end = None
    nf = _clean(row.get("num_frames"))
    known = {"id", "name", "text", "gloss", "split", "signer", "start", "end", "num_frames", *_PATH_KEYS}
    return Clip(
        id=str(cid),
        path=(base / str(rel)) if rel is not None else None,
        text=_text_of(row, text_field),
        gloss=None if _clean(row.get("gloss")) is None else str(row["gloss"]),
        split=None if _clean(row.get("split")) is None else str(row["split"]),
        signer=None if _clean(row.get("signer")) is None else str(row["signer"]),
        start=start,
        end=end,
        num_frames=None if nf is None else int(nf),
        extra={k: v for k, v in row.items() if k not in known and _clean(v) is not None},
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"line {n} is not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise InputError(path, f"line {n} is not a JSON object")
            rows.append(row)
    return rows


def _read_delimited(path: Path, delimiter: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8", newline="") as f:
        return [dict(r) for r in csv.DictReader(f, delimiter=delimiter)]


def _sniff_delimiter(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        header = f.readline()
    return max(["|", "\t", ","], key=header.count)


def _phoenix_rows(rows: list[dict[str, Any]], base: Path, source: Path) -> list[Clip]:
    """PHOENIX-2014T corpus CSV: frames live in <root>/features/fullFrame-210x260px/<split>/<name>/."""
    split = next((s for s in ("train", "dev", "test") if f".{s}." in source.name), None)
    roots = [base, *list(base.parents)[:3]]
    clips = []
    for i, row in enumerate(rows):
        name = row["name"]
        candidates = [r / sub for r in roots for sub in (
            Path("features/fullFrame-210x260px") / (split or "") / name, Path(split or "") / name, Path(name))]
        folder = next((c for c in candidates if c.is_dir()), base / name)
        clips.append(Clip(
            id=name, path=folder, text=_clean(row.get("translation")), gloss=_clean(row.get("orth")),
            split=split, signer=_clean(row.get("speaker")),
        ))
    return clips


def _how2sign_rows(rows: list[dict[str, Any]], base: Path) -> list[Clip]:
    """How2Sign realigned CSV: sentence clips named SENTENCE_NAME.mp4, else the raw video + start/end."""
    clips = []
    for row in rows:
        sname, vname = row["SENTENCE_NAME"], row["VIDEO_NAME"]
        sentence_file = next((d / f"{sname}.mp4" for d in (base, base / "clips") if (d / f"{sname}.mp4").exists()), None)
        if sentence_file is not None:
            clips.append(Clip(id=sname, path=sentence_file, text=row.get("SENTENCE")))
        else:
            raw = next((d / f"{vname}.mp4" for d in (base, base / "raw_videos") if (d / f"{vname}.mp4").exists()),
                       base / f"{vname}.mp4")
            clips.append(Clip(id=sname, path=raw, text=row.get("SENTENCE"),
                              start=float(row["START_REALIGNED"]), end=float(row["END_REALIGNED"])))
    return clips


def read_manifest(path: str | Path, text_field: str | None = None) -> list[Clip]:
    """Read any supported manifest into Clips, paths resolved relative to the manifest's folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "manifest not found")
    ext = path.suffix.lower()
    base = path.parent
    if ext == ".jsonl" or ext == ".json":
        rows = _read_jsonl(path)
    elif ext == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    elif ext in (".csv", ".tsv"):
        rows = _read_delimited(path, _sniff_delimiter(path))
    else:
        raise InputError(path, f"unsupported manifest type {ext!r} (use .jsonl, .csv, .tsv or .parquet)")
    if not rows:
        raise InputError(path, "manifest has no rows")
    cols = set(rows[0])
    if {"name", "video", "orth", "translation"} <= cols:
        clips = _phoenix_rows(rows, base, path)
    elif {"SENTENCE_NAME", "VIDEO_NAME", "SENTENCE"} <= cols:
        clips = _how2sign_rows(rows, base)
    else:
        clips = [clip_from_row(r, base, path, i, text_field) for i, r in enumerate(rows)]
    seen: set[str] = set()
    for c in clips:
        if c.id in seen:
            raise InputError(path, f"duplicate clip id {c.id!r}")
        seen.add(c.id)
    return clips


def write_manifest(clips: Iterable[Clip], path: str | Path) -> Path:
    """Write clips as JSONL with paths relative to the manifest's folder (atomic replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for c in clips:
            f.write(json.dumps(c.to_record(relative_to=path.parent), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def is_frame_folder(path: Path) -> bool:
    """A folder whose files are images only (PHOENIX layout)."""
    if not path.is_dir():
        return False
    files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    return bool(files) and all(p.suffix.lower() in IMAGE_EXTENSIONS for p in files)


def scan_folder(folder: str | Path) -> list[Clip]:
    """Every video, pose file and frame folder below `folder`, as Clips without text.

    Unknown files are skipped silently: a folder of videos usually holds other things too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    clips: list[Clip] = []

    def walk(d: Path) -> None:
        if is_frame_folder(d) and d != folder:
            clips.append(Clip(id=str(d.relative_to(folder)), path=d))
            return
        if is_frame_folder(d):
            clips.append(Clip(id=d.name, path=d))
            return
        for p in sorted(d.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                walk(p)
            elif p.suffix.lower() in VIDEO_EXTENSIONS | POSE_EXTENSIONS:
                clips.append(Clip(id=str(p.relative_to(folder).with_suffix("")), path=p))

    walk(folder)
    return clips


def collect_clips(paths: Iterable[str | Path], text_field: str | None = None) -> list[Clip]:
    """Manifests, folders and single files -> one list of Clips (ids must be unique across all)."""
    clips: list[Clip] = []
    for p in map(Path, paths):
        if p.is_dir():
            clips.extend(scan_folder(p))
        elif p.suffix.lower() in MANIFEST_EXTENSIONS or p.suffix.lower() == ".json":
            clips.extend(read_manifest(p, text_field))
        elif p.suffix.lower() in VIDEO_EXTENSIONS | POSE_EXTENSIONS:
            clips.append(Clip(id=p.stem, path=p))  # a missing file is reported by the batch, which goes on
        elif not p.exists():
            raise InputError(p, "not found")
        else:
            raise InputError(p, f"unsupported file type {p.suffix!r}")
    seen: dict[str, int] = {}
    for c in clips:
        if c.id in seen:
            raise InputError(c.path or c.id, f"clip id {c.id!r} appears twice among the inputs")
        seen[c.id] = 1
    return clips
