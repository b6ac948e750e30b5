"""Manifests: which clips there are, where their files are, and what they say.

Formats read: JSONL, CSV, TSV, Parquet with columns `id`, `path` (relative to the manifest),
`text` and optional `gloss`, `split`, `signer`, `start`/`end` (seconds, a clip inside a longer
video), `num_frames`; the PHOENIX-2014T corpus CSV (`name|video|start|end|speaker|orth|translation`);
How2Sign's realigned CSV. A folder without a manifest is scanned file by file (no text).

A manifest that cannot be used (not UTF-8, not CSV/JSON/Parquet, a row of the wrong shape, a field
of the wrong type or size) is refused with an InputError naming the file, the line or row, and why.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from slsearch.data.files import check_regular_file, kind, read_utf8
from slsearch.errors import InputError

VIDEO_EXTENSIONS = {".mp4", ".webm", ".mov", ".mkv", ".avi"}
POSE_EXTENSIONS = {".pose", ".npy", ".npz"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg"}
MANIFEST_EXTENSIONS = {".jsonl", ".csv", ".tsv", ".parquet"}
# Column names other corpora use for our fields (first match wins).
_PATH_KEYS = ("path", "file", "video", "video_path")
_TEXT_KEYS = ("text", "sentence", "translation")
MAX_FIELD_CHARS = 131_072  # csv's own field limit; a longer value in any format is damage, not a sentence


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


def _show(value: Any, limit: int = 40) -> str:
    """A value for an error message, shortened: a 10 MB field must not become a 10 MB line."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit] + f"... ({len(r)} characters)"


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _text(value: Any, source: Path, where: str, what: str) -> str | None:
    """A text field: None when empty, else a string (numbers are written as text); InputError for a list,
    an object or any other type, a value over MAX_FIELD_CHARS, or text that is not valid Unicode."""
    value = _clean(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(source, f"{where}: {what} is {_type_name(value)}, expected text")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_FIELD_CHARS:
        raise InputError(source, f"{where}: {what} is {len(text)} characters long (the limit is {MAX_FIELD_CHARS})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(source, f"{where}: {what} is not valid Unicode (it holds an unpaired surrogate)") from None
    return text


def _text_of(row: dict[str, Any], text_field: str | None, source: Path, where: str) -> str | None:
    if text_field:
        return _text(row.get(text_field), source, where, text_field)
    key = next((k for k in _TEXT_KEYS if _clean(row.get(k)) is not None), None)
    if key is None:  # corpora with one column per language (text_de, text_zh, text_en): the first wins
        key = next((k for k in row if k.startswith("text_") and not k.endswith("_raw")
                    and _clean(row[k]) is not None), None)
    return None if key is None else _text(row[key], source, where, key)


def _float(value: Any, source: Path, what: str) -> float | None:
    value = _clean(value)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(source, f"{what} is not a number: {_show(value)}") from None
    if not math.isfinite(number):
        raise InputError(source, f"{what} is not a finite number: {_show(value)}")
    return number


def _count(value: Any, source: Path, what: str) -> int | None:
    """A whole number >= 0 ("12", 12 and 12.0 all read as 12), or None when empty."""
    number = _float(value, source, what)
    if number is None:
        return None
    if number < 0 or not number.is_integer():
        raise InputError(source, f"{what} is not a whole number of frames: {_show(value)}")
    return int(number)


def clip_from_row(row: dict[str, Any], base: Path, source: Path, index: int, text_field: str | None = None,
                  where: str | None = None) -> Clip:
    """A manifest row -> Clip; `path` is resolved against `base` (the manifest's folder).

    `where` names the row in error messages ("line 7"; default "row <index + 1>").
    """
    where = where or f"row {index + 1}"
    if not isinstance(row, dict):
        raise InputError(source, f"{where} is {_type_name(row)}, expected an object with named fields")
    path_key = next((k for k in _PATH_KEYS if _clean(row.get(k)) is not None), None)
    rel = None if path_key is None else _text(row[path_key], source, where, path_key)
    if rel is not None and "\0" in rel:
        raise InputError(source, f"{where}: {path_key} contains a NUL character")
    id_key = next((k for k in ("id", "name") if _clean(row.get(k)) is not None), None)
    cid = None if id_key is None else _text(row[id_key], source, where, id_key)
    if cid is None:
        cid = Path(rel).stem if rel is not None else f"row{index}"
    start = _float(row.get("start"), source, f"{where}: start")
    end = _float(row.get("end"), source, f"{where}: end")
    if start is not None and start < 0:  # PHOENIX writes -1 for "whole file"
        start = None
    if end is not None and end < 0:
        end = None
    known = {"id", "name", "text", "gloss", "split", "signer", "start", "end", "num_frames", *_PATH_KEYS}
    return Clip(
        id=cid,
        path=(base / rel) if rel is not None else None,
        text=_text_of(row, text_field, source, where),
        gloss=_text(row.get("gloss"), source, where, "gloss"),
        split=_text(row.get("split"), source, where, "split"),
        signer=_text(row.get("signer"), source, where, "signer"),
        start=start,
        end=end,
        num_frames=_count(row.get("num_frames"), source, f"{where}: num_frames"),
        extra={k: v for k, v in row.items() if k not in known and _clean(v) is not None},
    )


def _decode(path: Path) -> str:
    return read_utf8(path, "manifest")


Rows = list[tuple[str, dict[str, Any]]]  # (where in the file, e.g. "line 7"; the row's fields)


def _read_jsonl(path: Path) -> Rows:
    rows = []
    for n, line in enumerate(_decode(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(path, f"line {n} is not valid JSON ({e.msg})") from None
        except RecursionError:
            raise InputError(path, f"line {n} is nested too deeply to read") from None
        if not isinstance(row, dict):
            raise InputError(path, f"line {n} is not a JSON object (it is {_type_name(row)})")
        rows.append((f"line {n}", row))
    return rows


def _read_delimited(path: Path, text: str, delimiter: str) -> Rows:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        for r in reader:
            if None in r:  # DictReader files the values beyond the header under the key None
                raise InputError(path, f"line {reader.line_num} has more fields than the header "
                                       f"({len(reader.fieldnames or [])})")
            rows.append((f"line {reader.line_num}", dict(r)))
    except csv.Error as e:
        # line_num counts the lines read before the failing record: the fault is on the next one
        raise InputError(path, f"line {reader.line_num + 1}: not readable as CSV ({e})") from None
    return rows


def _sniff_delimiter(text: str) -> str:
    header = text.split("\n", 1)[0]
    return max(["|", "\t", ","], key=header.count)


def _read_parquet(path: Path) -> Rows:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        return [(f"row {i + 1}", r) for i, r in enumerate(table.to_pylist())]
    except PermissionError:
        raise
    except Exception as e:  # ArrowInvalid, ArrowNotImplementedError, OSError on a truncated file: all damage
        raise InputError(path, f"not a readable Parquet file ({type(e).__name__}: {_show(str(e), 200)})") from None


def _required(row: dict[str, Any], key: str, source: Path, where: str) -> str:
    value = _text(row.get(key), source, where, key)
    if value is None:
        raise InputError(source, f"{where}: {key} is missing")
    return value


def _phoenix_rows(rows: Rows, base: Path, source: Path) -> list[Clip]:
    """PHOENIX-2014T corpus CSV: frames live in <root>/features/fullFrame-210x260px/<split>/<name>/."""
    split = next((s for s in ("train", "dev", "test") if f".{s}." in source.name), None)
    roots = [base, *list(base.parents)[:3]]
    clips = []
    for where, row in rows:
        name = _required(row, "name", source, where)
        candidates = [r / sub for r in roots for sub in (
            Path("features/fullFrame-210x260px") / (split or "") / name, Path(split or "") / name, Path(name))]
        folder = next((c for c in candidates if c.is_dir()), base / name)
        clips.append(Clip(
            id=name, path=folder, text=_text(row.get("translation"), source, where, "translation"),
            gloss=_text(row.get("orth"), source, where, "orth"), split=split,
            signer=_text(row.get("speaker"), source, where, "speaker"),
        ))
    return clips


def _how2sign_rows(rows: Rows, base: Path, source: Path) -> list[Clip]:
    """How2Sign realigned CSV: sentence clips named SENTENCE_NAME.mp4, else the raw video + start/end."""
    clips = []
    for where, row in rows:
        sname, vname = _required(row, "SENTENCE_NAME", source, where), _required(row, "VIDEO_NAME", source, where)
        text = _text(row.get("SENTENCE"), source, where, "SENTENCE")
        sentence_file = next((d / f"{sname}.mp4" for d in (base, base / "clips") if (d / f"{sname}.mp4").exists()), None)
        if sentence_file is not None:
            clips.append(Clip(id=sname, path=sentence_file, text=text))
        else:
            raw = next((d / f"{vname}.mp4" for d in (base, base / "raw_videos") if (d / f"{vname}.mp4").exists()),
                       base / f"{vname}.mp4")
            clips.append(Clip(id=sname, path=raw, text=text,
                              start=_float(row.get("START_REALIGNED"), source, f"{where}: START_REALIGNED"),
                              end=_float(row.get("END_REALIGNED"), source, f"{where}: END_REALIGNED")))
    return clips


def read_manifest(path: str | Path, text_field: str | None = None) -> list[Clip]:
    """Read any supported manifest into Clips, paths resolved relative to the manifest's folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "manifest not found")
    ext = path.suffix.lower()
    base = path.parent
    if ext not in MANIFEST_EXTENSIONS | {".json"}:
        raise InputError(path, f"unsupported manifest type {ext!r} (use .jsonl, .csv, .tsv or .parquet)")
    check_regular_file(path)  # a FIFO or a device would be read forever
    if ext == ".jsonl" or ext == ".json":
        rows = _read_jsonl(path)
    elif ext == ".parquet":
        rows = _read_parquet(path)
    else:
        text = _decode(path)
        rows = _read_delimited(path, text, _sniff_delimiter(text))
    if not rows:
        raise InputError(path, "manifest has no rows")
    cols = set(rows[0][1])
    if {"name", "video", "orth", "translation"} <= cols:
        clips = _phoenix_rows(rows, base, path)
    elif {"SENTENCE_NAME", "VIDEO_NAME", "SENTENCE"} <= cols:
        clips = _how2sign_rows(rows, base, path)
    else:
        every = set().union(*(r for _, r in rows))
        ours = {"id", "name", *_PATH_KEYS, *_TEXT_KEYS, *([text_field] if text_field else [])}
        if not every & ours and not any(k.startswith("text_") for k in every):
            found = ", ".join(sorted(every)[:10]) + (", ..." if len(every) > 10 else "")
            raise InputError(path, f"has none of the columns id, path, text (found: {_show(found, 120)}); "
                                   "is it a manifest?")
        clips = [clip_from_row(r, base, path, i, text_field, where) for i, (where, r) in enumerate(rows)]
    seen: set[str] = set()
    for c in clips:
        if c.id in seen:
            raise InputError(path, f"duplicate clip id {_show(c.id, 80)}")
        seen.add(c.id)
    return clips


def write_manifest(clips: Iterable[Clip], path: str | Path) -> Path:
    """Write clips as JSONL with paths relative to the manifest's folder (atomic replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for c in clips:
            f.write(json.dumps(c.to_record(relative_to=path.parent), ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)
    return path


def is_frame_folder(path: Path) -> bool:
    """A folder whose files are images only (PHOENIX layout)."""
    try:
        if not path.is_dir():
            return False
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    except OSError:  # cannot be listed: not usable as a frame folder (scan_folder reports it)
        return False
    return bool(files) and all(p.suffix.lower() in IMAGE_EXTENSIONS for p in files)


def scan_folder(folder: str | Path, skipped: list[InputError] | None = None) -> list[Clip]:
    """Every video, pose file and frame folder below `folder`, as Clips without text.

    Unknown files are skipped silently: a folder of videos usually holds other things too. Skipped
    with a line (an InputError "path: reason" appended to `skipped`; dropped when it is None): media
    files that are not regular files (FIFOs, devices, sockets), names that are not valid Unicode,
    symlinks that lead out of `folder` (nothing outside the folder the user named is read; name the
    target itself to include it), broken symlinks, folders that cannot be listed, and symlinks to a
    folder or file the scan has already seen (two links to `.` would otherwise make the scan recurse
    without end). Symlinks that stay inside `folder` are followed, after everything else, so a file
    reached both directly and through a link is taken once, under its own name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    root = folder.resolve()
    clips: list[Clip] = []
    seen_dirs: set[Path] = set()
    seen_files: dict[Path, Path] = {}
    links: list[Path] = []  # symlinks inside the folder, followed after the rest

    def skip(p: Path, reason: str) -> None:
        if skipped is not None:  # the caller reports them (a library never prints)
            skipped.append(InputError(p, reason))

    def named(p: Path, is_file: bool) -> str | None:
        """The clip id of `p`, or None (skipped with a line) when its name is not valid Unicode."""
        rel = p.relative_to(folder)
        cid = str(rel.with_suffix("")) if is_file else str(rel) if p != folder else p.name
        try:
            cid.encode("utf-8")
        except UnicodeEncodeError:
            skip(p, "the name is not valid UTF-8; rename it")
            return None
        return cid

    def add_file(p: Path) -> None:
        real = p.resolve()
        if real in seen_files:
            skip(p, f"the same file as {seen_files[real]} (a symlink to it)")
            return
        try:
            what = kind(p)
        except InputError as e:
            skip(p, e.reason)
            return
        if what is not None:
            skip(p, f"not a regular file ({what})")
            return
        seen_files[real] = p
        if (cid := named(p, True)) is not None:
            clips.append(Clip(id=cid, path=p))

    def walk(d: Path) -> None:
        real = d.resolve()
        if real in seen_dirs:
            skip(d, "symlink to a folder already scanned (a loop, or a second name for it)")
            return
        seen_dirs.add(real)
        if is_frame_folder(d):
            if (cid := named(d, False)) is not None:
                clips.append(Clip(id=cid, path=d))
            return
        try:
            entries = sorted(d.iterdir())
        except OSError as e:
            skip(d, f"cannot be listed ({e.strerror or e})")
            return
        for p in entries:
            if p.name.startswith("."):
                continue
            if p.is_symlink():
                links.append(p)
            elif p.is_dir():
                walk(p)
            elif p.suffix.lower() in VIDEO_EXTENSIONS | POSE_EXTENSIONS:
                add_file(p)

    def follow(p: Path) -> None:
        media = p.suffix.lower() in VIDEO_EXTENSIONS | POSE_EXTENSIONS
        try:
            target = p.resolve(strict=True)
        except (OSError, RuntimeError):
            if media:
                skip(p, "broken symlink or symlink loop")
            return
        if not (media or target.is_dir()):
            return  # a link to some other kind of file: ignored like the file would be
        if not target.is_relative_to(root):
            skip(p, f"symlink leads out of the scanned folder (to {target}); name that path to include it")
        elif target.is_dir():
            walk(p)
        else:
            add_file(p)

    walk(folder)
    while links:
        follow(links.pop(0))
    return clips


def collect_clips(paths: Iterable[str | Path], text_field: str | None = None,
                  skipped: list[InputError] | None = None) -> list[Clip]:
    """Manifests, folders and single files -> one list of Clips (ids must be unique across all).

    What folder scans skip (special files, symlinks leaving the folder, loops) is appended to
    `skipped` as InputErrors ("path: reason"), dropped when it is None (see scan_folder).
    """
    clips: list[Clip] = []
    for p in map(Path, paths):
        if p.is_dir():
            clips.extend(scan_folder(p, skipped))
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
