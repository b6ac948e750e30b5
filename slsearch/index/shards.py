"""A shard set: one searchable index made of indexes built independently (per collection, language,
month or machine).

```
indexes/archive/               # the set folder
  shards.json                  # the set's checkpoint, its readings source, and its shards in order
  2026-11 -> .2026-11.v2/      # a shard built here: `slsearch index ... --out indexes/archive --shard 2026-11`
  2026-12 -> .2026-12.v1/
                               # or a shard elsewhere (an absolute path): `slsearch shards add SET FOLDER`
```

A shard is an ordinary index folder: it has its own versions, `--add` and `remove` work on it alone.
Adding a shard writes shards.json only (under a lock, replaced atomically), never another shard. Every
shard must come from the set's checkpoint (and the same gloss-readings source): their vectors and token
states are then comparable, and `Searcher` merges the shards' FAISS candidates into one global top-N and
ranks it once, so a set's top-k is the one an index holding all its clips would give.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from slsearch.errors import InputError, SlsearchError

SHARDS_FILE = "shards.json"
FORMAT = 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class Shard:
    name: str
    path: Path | None  # absolute; None for a shard another process serves
    added: str | None = None
    url: str | None = None  # `slsearch serve SHARD --shard-api` elsewhere (slsearch.index.remote)

    @property
    def source(self) -> Path | str:
        return self.url if self.url else self.path


@dataclass
class ShardSet:
    folder: Path
    checkpoint: dict[str, Any]  # {"hash", "path"} of the model every shard was built with
    readings: dict[str, Any] | None  # the recogniser the shards' gloss readings come from (None: the model's head)
    shards: list[Shard]

    def names(self) -> list[str]:
        return [s.name for s in self.shards]


def is_shard_set(path: str | Path) -> bool:
    return (Path(path) / SHARDS_FILE).is_file()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name) or name in (".", ".."):
        raise SlsearchError(f"--shard {name!r}: a shard name is letters, digits, '.', '_' and '-' "
                            "(at most 100, starting with a letter or digit)")
    return name


def read_shard_set(path: str | Path) -> ShardSet:
    """shards.json of a set folder, checked for shape; an InputError naming the file otherwise."""
    folder = Path(path)
    file = folder / SHARDS_FILE
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SlsearchError(f"{folder}: not a shard set (no {SHARDS_FILE})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(file, f"unreadable ({' '.join(str(e).split())[:120]})") from None
    try:
        if d.get("format") != FORMAT:
            raise InputError(file, f"format {d.get('format')!r}, this slsearch reads {FORMAT}")
        shards, seen = [], set()
        for s in d["shards"]:
            name = check_name(s["name"])
            if name in seen:
                raise InputError(file, f"shard {name!r} is listed twice")
            seen.add(name)
            if s.get("url"):
                shards.append(Shard(name, None, s.get("added"), str(s["url"])))
                continue
            p = Path(s["path"])
            shards.append(Shard(name, p if p.is_absolute() else folder / p, s.get("added")))
        checkpoint = d["checkpoint"]
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("hash"), str):
            raise InputError(file, "its checkpoint entry has no hash")
        return ShardSet(folder, checkpoint, d.get("readings"), shards)
    except (KeyError, TypeError, AttributeError, SlsearchError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(file, f"damaged ({type(e).__name__}: {e}); rebuild it with `slsearch shards add`") from None


def shard_folders(path: str | Path, local_only: str | None = None) -> list[tuple[str, Path | str]]:
    """(name, folder, or URL of a shard another process serves) of every shard of a set, or [(folder name,
    folder)] for a plain index. `local_only`: what needs the folders (a served shard is refused, naming it)."""
    folder = Path(path)
    if not is_shard_set(folder):
        return [(folder.name, folder)]
    shard_set = read_shard_set(folder)
    if not shard_set.shards:
        raise SlsearchError(f"{folder}: the shard set has no shards yet (add one with `slsearch index ... "
                            f"--out {folder} --shard NAME`)")
    remote = [s for s in shard_set.shards if s.url]
    if local_only and remote:
        raise SlsearchError(f"{folder}: {local_only} needs every shard's folder, and shard {remote[0].name} is served "
                            f"by {remote[0].url}; run it where the shard folders are mounted")
    return [(s.name, s.source) for s in shard_set.shards]


def _index_info(folder: Path) -> dict[str, Any]:
    """A shard's index.json (through its link), without loading its vectors."""
    from slsearch.index.store import INFO_FILE

    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        info["checkpoint"]["hash"]
        return info
    except FileNotFoundError:
        raise SlsearchError(f"{folder}: not an slsearch index (no {INFO_FILE}); build it with `slsearch index`") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(folder / INFO_FILE, "unreadable or without a checkpoint hash; rebuild the index") from None


def _source_info(source: Path | str) -> dict[str, Any]:
    """index.json of a shard folder, or of the index a shard server serves."""
    from slsearch.index.remote import is_url, shard_info

    return shard_info(source)["info"] if is_url(source) else _index_info(Path(source))


def _readings_of(info: dict[str, Any]) -> dict[str, Any] | None:
    r = info.get("readings")
    return {"path": r.get("path"), "hash": r.get("hash")} if isinstance(r, dict) else None


def check_joins(set_dir: str | Path, name: str, checkpoint_hash: str, readings_hash: str | None,
                where: str | Path) -> None:
    """Refuse, before anything is built or written, a shard that the set could not search with its others:
    another checkpoint or another gloss-readings source."""
    check_name(name)
    if not is_shard_set(set_dir):
        return
    s = read_shard_set(set_dir)
    if s.checkpoint["hash"] != checkpoint_hash:
        raise SlsearchError(f"{where}: built with checkpoint {checkpoint_hash}, but the shard set {set_dir} searches "
                            f"checkpoint {s.checkpoint['hash']} ({s.checkpoint.get('path')}); vectors of two models "
                            "are not comparable. Build the shard with the set's model, or start another set")
    theirs = (s.readings or {}).get("hash")
    if theirs != readings_hash:
        describe = lambda h: f"the recogniser {h}" if h else "the model's gloss head"  # noqa: E731
        raise SlsearchError(f"{where}: its gloss readings come from {describe(readings_hash)}, the shard set "
                            f"{set_dir}'s from {describe(theirs)}; a set reads glosses one way (`index --readings`)")


@contextmanager
def _locked(set_dir: Path) -> Iterator[None]:
    """One writer of shards.json at a time (shards built on several machines may register at once)."""
    set_dir.mkdir(parents=True, exist_ok=True)
    with open(set_dir / ".shards.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(set_dir: Path, checkpoint: dict[str, Any], readings: dict[str, Any] | None,
           shards: list[dict[str, Any]]) -> None:
    tmp = set_dir / f".{SHARDS_FILE}.tmp"
    tmp.write_text(json.dumps({"format": FORMAT, "checkpoint": checkpoint, "readings": readings,
                               "shards": shards}, indent=2) + "\n", encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, set_dir / SHARDS_FILE)


def register_shard(set_dir: str | Path, name: str, folder: str | Path, replace: bool = False) -> ShardSet:
    """Add the index `folder` (or the URL of `slsearch serve INDEX --shard-api`) to the set as `name`
    (creating the set with its checkpoint when it has none yet). A folder inside the set is recorded
    relative to it (the set moves as one); another by its absolute path. Re-registering a name for the
    same folder is a no-op; for another folder, an error unless `replace`."""
    from slsearch.index.remote import is_url

    set_dir = Path(set_dir)
    folder = str(folder).rstrip("/") if is_url(folder) else Path(folder)
    check_name(name)
    info = _source_info(folder)
    checkpoint, readings = info["checkpoint"], _readings_of(info)
    with _locked(set_dir):
        check_joins(set_dir, name, checkpoint["hash"], (readings or {}).get("hash"), folder)
        entries: list[dict[str, Any]] = []
        if is_shard_set(set_dir):
            current = read_shard_set(set_dir)
            checkpoint, readings = current.checkpoint, current.readings
            entries = [_entry(set_dir, s) for s in current.shards]
        where = {"url": folder} if isinstance(folder, str) else {"path": _recorded(set_dir, folder)}
        for e in entries:
            if e["name"] == name:
                if e.get("url") == where.get("url") and (e.get("url") or Path(set_dir / e["path"]).absolute()
                                                         == Path(set_dir / where["path"]).absolute()):
                    return read_shard_set(set_dir)
                if not replace:
                    raise SlsearchError(f"{set_dir}: it already has a shard {name!r} ({e.get('url') or e['path']}); "
                                        "pick another name or drop that one first (`slsearch shards --drop`)")
                e.pop("url", None), e.pop("path", None)
                e.update(where)
                break
        else:
            entries.append({"name": name, **where,
                            "added": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
        _write(set_dir, {"hash": checkpoint["hash"], "path": checkpoint.get("path")}, readings, entries)
    return read_shard_set(set_dir)


def drop_shard(set_dir: str | Path, name: str) -> ShardSet:
    """Take a shard out of the set; its folder is left as it is (delete it yourself if it is not wanted)."""
    set_dir = Path(set_dir)
    with _locked(set_dir):
        s = read_shard_set(set_dir)
        if name not in s.names():
            raise SlsearchError(f"{set_dir}: no shard {name!r} (it has {', '.join(s.names()) or 'none'})")
        entries = [_entry(set_dir, x) for x in s.shards if x.name != name]
        _write(set_dir, s.checkpoint, s.readings, entries)
    return read_shard_set(set_dir)


def _entry(set_dir: Path, s: Shard) -> dict[str, Any]:
    where = {"url": s.url} if s.url else {"path": _recorded(set_dir, s.path)}
    return {"name": s.name, **where, "added": s.added}


def _recorded(set_dir: Path, folder: Path) -> str:
    try:
        return str(Path(os.path.abspath(folder)).relative_to(os.path.abspath(set_dir)))
    except ValueError:
        return os.path.abspath(folder)


def describe(set_dir: str | Path) -> dict[str, Any]:
    """The set as `slsearch shards` shows it: each shard's clips, sentences, version and size on disk."""
    s = read_shard_set(set_dir)
    rows = []
    from slsearch.index.remote import shard_info

    for shard in s.shards:
        row: dict[str, Any] = {"name": shard.name, "path": str(shard.source), "added": shard.added}
        try:
            head = shard_info(shard.url) if shard.url else None
            info = head["info"] if head else _index_info(shard.path)
            version = head["version"] if head else os.path.realpath(shard.path).rsplit(".", 1)[-1]
            row.update(clips=(info.get("clips") or {}).get("count"), texts=(info.get("texts") or {}).get("count"),
                       version=version, updated=info.get("updated"),
                       ok=info["checkpoint"]["hash"] == s.checkpoint["hash"])
        except SlsearchError as e:
            row.update(ok=False, error=str(e))
        rows.append(row)
    return {"set": str(s.folder), "checkpoint": s.checkpoint, "readings": s.readings, "shards": rows,
            "clips": sum(r.get("clips") or 0 for r in rows)}


def version_key(path: str | Path) -> str | None:
    """What names the versions an index folder or a shard set answers from now (one readlink per shard):
    a reader holding another key has an older one. None when it cannot be read right now."""
    try:
        if not is_shard_set(path):
            return os.path.realpath(path)
        from slsearch.index.remote import remote_version

        return "|".join(f"{s.url}@{remote_version(s.url)}" if s.url else os.path.realpath(s.path)
                        for s in read_shard_set(path).shards)
    except (OSError, ValueError, SlsearchError):
        return None


def checkpoint_hash(path: str | Path) -> str | None:
    """The checkpoint hash an index folder or a shard set records, or None when unreadable."""
    try:
        if is_shard_set(path):
            return read_shard_set(path).checkpoint["hash"]
        return _index_info(Path(path))["checkpoint"]["hash"]
    except (OSError, SlsearchError):
        return None


def build_shard(paths, model_dir: str | Path, set_dir: str | Path, name: str, add: bool = False,
                readings: str | Path | None = None, **build: Any) -> dict[str, Any]:
    """`slsearch index PATHS --out SET --shard NAME`: build (add=True: grow) the shard NAME of the set
    and register it. A shard the set could not search with the others (another checkpoint, another
    readings source) is refused before anything is embedded; the other shards are never touched.
    Returns build_index's summary with the set's `shard`, `set`, `shards` and `set_clips`."""
    from slsearch.index.build import build_index
    from slsearch.index.store import INFO_FILE
    from slsearch.models.checkpoint import WEIGHTS_FILE, file_hash

    set_dir = Path(set_dir)
    folder = set_dir / check_name(name)
    if (set_dir / INFO_FILE).exists():
        raise SlsearchError(f"{set_dir}: an index, not a shard set; give --out a new folder for the set (or index "
                            "without --shard)")
    weights = Path(model_dir) / WEIGHTS_FILE if model_dir is not None else None
    if weights is not None and weights.is_file():
        reader_hash = None
        if readings is not None:
            from slsearch.recognition import load_gloss_reader

            reader_hash = load_gloss_reader(readings).checkpoint_hash
        elif add and (folder / INFO_FILE).exists():
            reader_hash = (_readings_of(_index_info(folder)) or {}).get("hash")
        check_joins(set_dir, name, file_hash(weights), reader_hash, folder)
    summary = build_index(paths, model_dir, folder, add=add, readings=readings, **build)
    shard_set = register_shard(set_dir, name, folder)
    counts = describe(set_dir)
    return {**summary, "shard": name, "set": str(set_dir), "shards": len(shard_set.shards),
            "set_clips": counts["clips"]}


def remove_from_set(set_dir: str | Path, ids: list[str]) -> dict[str, Any]:
    """`slsearch remove ID... --index SET`: drop clips from whichever shards hold them (each shard a new
    version of its own; shards without them are not touched). Every id must be in some shard, checked
    before anything is removed."""
    import pyarrow.parquet as pq

    from slsearch.index.remove import remove_clips
    from slsearch.index.store import FILES

    holders: dict[str, list[str]] = {}
    wanted = set(ids)
    found: set[str] = set()
    for name, folder in shard_folders(set_dir, local_only="remove"):
        try:
            held = set(pq.read_table(Path(os.path.realpath(folder)) / FILES["clips"]["meta"], columns=["id"])
                       .column("id").to_pylist())
        except (OSError, ValueError) as e:
            raise InputError(folder, f"its clip list is unreadable ({' '.join(str(e).split())[:120]})") from None
        mine = [i for i in ids if i in held]
        if mine:
            holders[name] = mine
            found |= set(mine)
    unknown = [i for i in ids if i not in found]
    if unknown or not wanted:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise SlsearchError(f"{set_dir}: no clip with id {shown} in any shard" if unknown else
                            "give at least one clip id to remove")
    folders = dict(shard_folders(set_dir))
    per_shard = {name: remove_clips(folders[name], mine) for name, mine in holders.items()}
    left = describe(set_dir)
    return {"index": str(set_dir), "removed": len(wanted), "shards": {n: s["removed"] for n, s in per_shard.items()},
            "clips_total": left["clips"],
            "texts_total": sum(r.get("texts") or 0 for r in left["shards"]),
            "seconds": round(sum(s["seconds"] for s in per_shard.values()), 2)}
