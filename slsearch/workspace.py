"""The workspace: what `slsearch index`, `query`, `eval` and `translate` use when no flag names it.

A workspace is a small TOML file, `slsearch.toml`, found the way git finds its repository: in the
working folder or the nearest parent folder that has one; `$SLSEARCH_WORKSPACE` names it instead (a
file, or a folder holding `slsearch.toml`). It holds two paths, relative to the file's own folder:

```toml
model = "runs/news"       # the last trained model: `train` and `demo` write it
index = "indexes/news"    # the last built index: `index` and `demo` write it
```

Precedence, highest first: the command's flag (`--model`, `--index`), then `$SLSEARCH_MODEL` /
`$SLSEARCH_INDEX`, then the workspace file. With none of them there is no default, and the error
names the command that makes one. When no workspace file exists yet, the first one is written in the
working folder. Writes are atomic (a temporary file renamed over the old one) and keep every other
line of the file (comments, keys of your own) as it was.

The training and indexing libraries know nothing of this: the CLI commands record what they made.
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from slsearch.errors import SlsearchError

WORKSPACE_FILE = "slsearch.toml"
ENV_WORKSPACE = "SLSEARCH_WORKSPACE"
ENV = {"model": "SLSEARCH_MODEL", "index": "SLSEARCH_INDEX"}
KEYS = ("model", "index")
INDEX_FOLDER = "indexes"  # `slsearch index` writes indexes/<name> beside the workspace file by default
HEADER = ("# slsearch workspace: the model and index that `slsearch index/query/eval/translate` use when no\n"
          "# flag names one. Written by `slsearch train`, `index` and `demo`; paths are relative to this file.\n")

NO_MODEL = ("no model yet: train one with `slsearch train --manifest TRAIN --dev DEV --out runs/NAME`, "
            "or run `slsearch demo` (or pass --model CHECKPOINT)")
NO_INDEX = ("no index yet: build one with `slsearch index VIDEOS/`, or run `slsearch demo` "
            "(or pass --index DIR)")
FIX = {"model": "train one with `slsearch train` or run `slsearch demo`, or pass --model CHECKPOINT",
       "index": "build one with `slsearch index VIDEOS/` or run `slsearch demo`, or pass --index DIR"}


@dataclass
class Workspace:
    """The workspace file (whether or not it exists yet) and the paths it holds, resolved."""

    file: Path  # absolute; where it is read and where `record` writes
    exists: bool
    values: dict[str, Path]  # key -> absolute path (relative entries resolved against file.parent)

    @property
    def folder(self) -> Path:
        return self.file.parent


@dataclass
class Default:
    """A resolved default: the path and where it came from ("--model", "$SLSEARCH_INDEX", a file...)."""

    path: Path
    source: str


def _abs(path: str | Path, base: Path | None = None) -> Path:
    """Absolute without resolving symlinks (an index folder is a symlink swapped on every commit)."""
    p = Path(os.path.expanduser(str(path)))
    return Path(os.path.abspath(p if p.is_absolute() or base is None else base / p))


def find_file(cwd: str | Path | None = None) -> Path:
    """The workspace file: $SLSEARCH_WORKSPACE, else the nearest slsearch.toml in the working folder or
    its parents, else ./slsearch.toml (not there yet: `record` creates it)."""
    env = os.environ.get(ENV_WORKSPACE)
    if env:
        p = _abs(env)
        return p / WORKSPACE_FILE if p.is_dir() else p
    start = _abs(cwd or Path.cwd())
    for folder in (start, *start.parents):
        candidate = folder / WORKSPACE_FILE
        if candidate.is_file():
            return candidate
    return start / WORKSPACE_FILE


def _parse(file: Path, text: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SlsearchError(f"{file}: not valid TOML ({e}); fix it or delete it") from None
    for key in KEYS:
        if key in data and not (isinstance(data[key], str) and data[key] and "\0" not in data[key]):
            raise SlsearchError(f"{file}: {key} should be a path in quotes, not {data[key]!r}; fix it or delete it")
    return data


def load(cwd: str | Path | None = None) -> Workspace:
    """The workspace file and its paths (none when it does not exist yet)."""
    file = find_file(cwd)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Workspace(file, False, {})
    except UnicodeDecodeError:
        raise SlsearchError(f"{file}: not a text file (UTF-8); fix it or delete it") from None
    except IsADirectoryError:
        raise SlsearchError(f"{file}: a folder, not a workspace file") from None
    data = _parse(file, text)
    return Workspace(file, True, {k: _abs(data[k], file.parent) for k in KEYS if k in data})


# --- writing ----------------------------------------------------------------------------------

def _toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _stored(path: Path, folder: Path) -> str:
    """What the file holds for `path`: relative to the workspace folder when inside it, else absolute."""
    p = _abs(path)
    try:
        return p.relative_to(folder).as_posix() or "."
    except ValueError:
        return str(p)


def _updated(text: str, entries: dict[str, str]) -> str:
    """The file's text with the top-level `key = ...` lines of `entries` replaced (or added before the
    first table), every other line kept."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    first_table = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    todo = dict(entries)
    for i in range(first_table):
        m = re.match(r"\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=", lines[i])
        key = m and m.group(1).strip('"')
        if key in todo:
            lines[i] = f"{key} = {_toml_string(todo.pop(key))}\n"
    added = [f"{k} = {_toml_string(v)}\n" for k, v in todo.items()]
    if not lines:
        return HEADER + "".join(added)
    return "".join(lines[:first_table] + added + lines[first_table:])


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise writers of one folder's workspace (flock on the folder; best effort)."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record(cwd: str | Path | None = None, **paths: str | Path) -> Path:
    """Write `model=` and/or `index=` into the workspace file (created when missing); returns the file.

    Atomic: the new text goes to a temporary file beside it, which is renamed over the old one.
    """
    unknown = set(paths) - set(KEYS)
    if unknown:
        raise ValueError(f"unknown workspace keys {sorted(unknown)}")
    file = find_file(cwd)
    if file.is_symlink():
        file = Path(os.path.realpath(file))
    file.parent.mkdir(parents=True, exist_ok=True)
    with _locked(file.parent):
        try:
            old = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            old = ""
        except UnicodeDecodeError:
            raise SlsearchError(f"{file}: not a text file (UTF-8); fix it or delete it") from None
        _parse(file, old)  # never overwrite a file we cannot read back
        new = _updated(old, {k: _stored(Path(v), file.parent) for k, v in paths.items()})
        _parse(file, new)
        tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(new)
                f.flush()
                os.fsync(f.fileno())
            if file.exists():
                with contextlib.suppress(OSError):
                    os.chmod(tmp, file.stat().st_mode & 0o7777)
            os.replace(tmp, file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return file


def try_record(cwd: str | Path | None = None, **paths: str | Path) -> tuple[Path | None, str | None]:
    """`record`, but a failure (read-only folder, a broken file) is a message, not an exception: what
    was just trained or built must not be reported as failed because its bookmark could not be written."""
    try:
        return record(cwd, **paths), None
    except (SlsearchError, OSError) as e:
        from slsearch.errors import describe_os_error

        return None, (describe_os_error(e) if isinstance(e, OSError) else str(e))


# --- resolving --------------------------------------------------------------------------------

def shown(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    try:
        return _abs(path).relative_to(_abs(Path.cwd())).as_posix() or "."
    except ValueError:
        return str(path)


def lookup(key: str, flag: str | Path | None = None, ws: Workspace | None = None) -> Default | None:
    """flag > $SLSEARCH_MODEL / $SLSEARCH_INDEX > the workspace file; None when none names one.
    Existence is not checked here (see `resolve`)."""
    if flag is not None and str(flag) != "":
        return Default(Path(flag), f"--{key}")
    env = os.environ.get(ENV[key])
    if env:
        return Default(_abs(env), f"${ENV[key]}")
    ws = ws if ws is not None else load()
    if key in ws.values:
        return Default(ws.values[key], str(ws.file))
    return None


def resolve(key: str, flag: str | Path | None = None, ws: Workspace | None = None) -> Path:
    """The model or index to use: the flag as given; a default only when it exists, else one line that
    says what to run."""
    d = lookup(key, flag, ws)
    if d is None:
        raise SlsearchError(NO_MODEL if key == "model" else NO_INDEX)
    if d.source != f"--{key}" and not d.path.exists():
        raise SlsearchError(f"{d.source} names the {key} {shown(d.path)}, which is not there any more: {FIX[key]}")
    return d.path


def resolve_model(flag: str | Path | None = None, via_index: bool = False) -> Path:
    """The model: flag > $SLSEARCH_MODEL > workspace model; with `via_index`, else the checkpoint the
    default index was built with (what `translate` falls back to)."""
    ws = load() if flag is None else None
    if via_index and lookup("model", flag, ws) is None:
        d = lookup("index", None, ws)
        ckpt = _index_checkpoint(d.path) if d is not None and d.path.exists() else None
        if ckpt is not None:
            if not Path(ckpt).exists():
                raise SlsearchError(f"the index {shown(d.path)} was built with the model {ckpt}, which is not "
                                    f"there any more: {FIX['model']}")
            return Path(ckpt)
    return resolve("model", flag, ws)


def index_model(flag: str | Path | None, out: Path, add: bool) -> Path:
    """`slsearch index`'s model: --model; with --add the one the index was built with (vectors of two
    models cannot share an index) when it is still there; else the default model (as `translate`)."""
    if add and (flag is None or str(flag) == "") and out.exists():
        ckpt = _index_checkpoint(out)
        if ckpt is not None and Path(ckpt).exists():
            return Path(ckpt)
    return resolve_model(flag, via_index=True)


def _index_checkpoint(index_dir: Path) -> str | None:
    """The checkpoint path index.json records (read without loading the index)."""
    import json

    from slsearch.index.store import INFO_FILE

    try:
        info = json.loads((index_dir / INFO_FILE).read_text(encoding="utf-8"))
        path = info["checkpoint"]["path"]
        return path if isinstance(path, str) and path else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def default_index_name(paths: list[str]) -> str:
    """indexes/<name>: the first path's folder name, or a manifest's (or file's) stem."""
    if not paths:
        raise SlsearchError("give the clips to index: folders, manifests or files")
    p = _abs(paths[0])
    name = p.name if p.is_dir() else p.stem
    name = re.sub(r"[^\w.-]+", "-", name).strip(".-") or "index"
    return name


def default_index_out(paths: list[str], ws: Workspace | None = None) -> Path:
    """Where `slsearch index PATHS` writes without --out: indexes/<name> beside the workspace file."""
    ws = ws if ws is not None else load()
    return ws.folder / INDEX_FOLDER / default_index_name(paths)


def index_out(paths: list[str], out: str | Path | None, add: bool) -> Path:
    """`slsearch index`'s folder: --out; with --add the default index ($SLSEARCH_INDEX, the workspace's)
    when there is one; else indexes/<name>."""
    if out is not None and str(out) != "":
        return Path(out)
    ws = load()
    if add:
        d = lookup("index", None, ws)
        if d is not None and d.path.exists():
            return d.path
    return default_index_out(paths, ws)


# --- status -----------------------------------------------------------------------------------

def status() -> dict[str, Any]:
    """What the defaults are now: the workspace file, the model and the index, each with its source,
    whether it exists, and (the index) its size, splits and whether it was built with the model."""
    from collections import Counter

    from slsearch.models.checkpoint import WEIGHTS_FILE, file_hash

    ws = load()
    out: dict[str, Any] = {"workspace": {"file": str(ws.file), "exists": ws.exists},
                           "env": {name: os.environ[name] for name in (ENV_WORKSPACE, *ENV.values())
                                   if os.environ.get(name)}}
    model = lookup("model", None, ws)
    m: dict[str, Any] = {"path": None, "source": None, "exists": False, "hash": None}
    if model is not None:
        m.update(path=str(model.path), source=model.source, exists=model.path.exists())
        weights = model.path / WEIGHTS_FILE
        if weights.is_file():
            m["hash"] = file_hash(weights)
        elif m["exists"]:
            m["problem"] = f"no {WEIGHTS_FILE}: not a trained checkpoint"
    index = lookup("index", None, ws)
    i: dict[str, Any] = {"path": None, "source": None, "exists": False}
    if index is not None:
        i.update(path=str(index.path), source=index.source, exists=index.path.exists())
        if i["exists"]:
            from slsearch.index.store import load_index

            try:
                idx = load_index(index.path, mmap=True)
            except SlsearchError as e:
                i["problem"] = str(e)
            else:
                splits = Counter(str(s) for s in idx.clips.column("split") if s is not None)
                ckpt = idx.info.get("checkpoint") or {}
                i.update(clips=len(idx.clips), sentences=len(idx.texts) if idx.texts is not None else 0,
                         splits=dict(sorted(splits.items())), checkpoint=ckpt.get("path"),
                         checkpoint_hash=ckpt.get("hash"),
                         matches_model=(ckpt.get("hash") == m["hash"]) if m["hash"] else None)
    if model is None and i.get("checkpoint"):
        m["falls_back_to"] = i["checkpoint"]  # what `translate` and `index` use then: the index's model
    out["model"], out["index"] = m, i
    return out
