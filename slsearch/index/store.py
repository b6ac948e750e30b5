"""The index folder on disk: format, atomic replacement, a writers' lock, checked loading.

```
indexes/news -> .news.v3/     # a symlink, swapped atomically (os.replace) when a new version is ready
  index.json                   # format version, checkpoint hash, dims, index types + params, counts, history
  vectors.faiss                # global video vectors, FAISS ids = `faiss_id` in meta.parquet
  meta.parquet                 # one row per clip, aligned with vectors.faiss by faiss_id
  tokens.f16.npy               # video token states (rows, d) float16, memory-mapped; offsets in meta
  texts.faiss, texts.parquet, text_tokens.f16.npy   # the corpus sentences, when texts are known
```

Writers build the next version in `.news.tmp-*` beside the target and swap the symlink, so a reader
never sees half a version and a crash leaves the previous one in place. Token files are immutable
segments: a later version hard-links the segments it keeps and appends new ones (`tokens.1.f16.npy`),
so adding clips never copies the token store. Removed clips' rows stay in their segment, unreferenced,
until `remove` finds most rows unreferenced and writes one compacted segment.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slsearch.errors import SlsearchError
from slsearch.index import faiss_index

FORMAT_VERSION = 2  # 2: every clip row has gloss_reading and reading_prior, every sentence sentence_prior
INFO_FILE = "index.json"
KEEP_VERSIONS = 2  # the current version and the one before it (readers may still be loading it)

# File names per collection: clips (video vectors) and texts (sentence vectors).
FILES = {
    "clips": {"faiss": "vectors.faiss", "meta": "meta.parquet", "tokens": "tokens"},
    "texts": {"faiss": "texts.faiss", "meta": "texts.parquet", "tokens": "text_tokens"},
}

TOKEN_COLUMNS = [("token_segment", pa.int32()), ("token_offset", pa.int64()), ("token_count", pa.int32())]
CLIP_SCHEMA = pa.schema([
    ("faiss_id", pa.int64()),  # the id of this clip's vector in vectors.faiss (its row number when added)
    ("id", pa.string()), ("path", pa.string()), ("source_hash", pa.string()),
    ("duration", pa.float64()), ("frames", pa.int64()), ("fps", pa.float64()),
    ("text", pa.string()), ("text_id", pa.int64()),  # text_id: faiss_id in texts.faiss, -1 when no text
    ("split", pa.string()), ("signer", pa.string()),
    *TOKEN_COLUMNS,
    ("gloss_reading", pa.string()),  # what the model's gloss head reads in the clip (None without a head)
    # log p(reading) under the lexicon's training sentences, for its T2V reverse channel; valid for the
    # lexicon whose fingerprint index.json records under "lexicon" (None without one)
    ("reading_prior", pa.float32()),
])
TEXT_SCHEMA = pa.schema([("faiss_id", pa.int64()), ("text", pa.string()), *TOKEN_COLUMNS,
                         # log p(sentence) from the decoder's null clip, for V2T likelihood re-ranking
                         # (models trained with it; None otherwise)
                         ("sentence_prior", pa.float32())])
SCHEMAS = {"clips": CLIP_SCHEMA, "texts": TEXT_SCHEMA}


def token_file_name(collection: str, segment: int) -> str:
    base = FILES[collection]["tokens"]
    return f"{base}.f16.npy" if segment == 0 else f"{base}.{segment}.f16.npy"


class TokenSegmentWriter:
    """Appends (L, d) token states to a float16 .npy whose row count is only known at the end."""

    HEADER_BYTES = 128  # fixed .npy header, rewritten with the final shape on close

    def __init__(self, path: Path, dim: int):
        self.path, self.dim, self.rows = Path(path), dim, 0
        self._f = open(self.path, "wb")
        self._f.write(b"\0" * self.HEADER_BYTES)

    def append(self, tokens: np.ndarray) -> tuple[int, int]:
        """Write one item's tokens (L, d); returns (offset, count) in rows."""
        t = np.ascontiguousarray(tokens, dtype=np.float16)
        if t.ndim != 2 or t.shape[1] != self.dim:
            raise SlsearchError(f"token states of shape {t.shape} do not match token dim {self.dim}")
        self._f.write(t.tobytes())
        offset, self.rows = self.rows, self.rows + len(t)
        return offset, len(t)

    def close(self) -> None:
        header = repr({"descr": "<f2", "fortran_order": False, "shape": (self.rows, self.dim)})
        body_len = self.HEADER_BYTES - 10
        header_bytes = header.encode("ascii").ljust(body_len - 1) + b"\n"
        self._f.seek(0)
        self._f.write(b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + header_bytes)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


class TokenStore:
    """Memory-mapped token segments of one collection; gathers padded batches for re-ranking."""

    def __init__(self, files: list[Path], dim: int):
        self.dim = dim
        self.segments = [self._open(f) for f in files]
        # Read hints: a re-rank touches ~100 scattered items; telling the kernel about all of them
        # first lets their disk reads run concurrently instead of one page fault after another.
        self._fds = [os.open(f, os.O_RDONLY) for f in files] if hasattr(os, "posix_fadvise") else []
        self._row_bytes = dim * 2  # float16

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", []):
            try:
                os.close(fd)
            except OSError:
                pass

    def prefetch(self, segment: np.ndarray, offset: np.ndarray, count: np.ndarray) -> None:
        """Ask the kernel to start reading these items' token rows (a no-op where unsupported)."""
        if not self._fds:
            return
        for s, o, c in zip(np.asarray(segment).tolist(), np.asarray(offset).tolist(), np.asarray(count).tolist()):
            seg = self.segments[s]
            start = getattr(seg, "offset", 0) + o * self._row_bytes
            os.posix_fadvise(self._fds[s], start, c * self._row_bytes, os.POSIX_FADV_WILLNEED)

    @staticmethod
    def _open(path: Path) -> np.ndarray:
        with open(path, "rb") as f:
            empty = f.seek(0, 2) <= TokenSegmentWriter.HEADER_BYTES
        return np.load(path, mmap_mode=None if empty else "r")  # mmap of 0 bytes is refused

    def gather_flat(self, segment: np.ndarray, offset: np.ndarray, count: np.ndarray) -> np.ndarray:
        """Token states of N items stacked without padding: (sum count, d) float32, items in order."""
        count = np.asarray(count, dtype=np.int64)
        if not len(count):
            return np.zeros((0, self.dim), np.float32)
        # row index of every token: offset of its item + its position inside the item
        within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        rows = np.repeat(np.asarray(offset, dtype=np.int64), count) + within
        seg = np.repeat(np.asarray(segment), count)
        if len(self.segments) == 1:
            return np.asarray(self.segments[0][rows], dtype=np.float32)
        out = np.empty((len(rows), self.dim), np.float32)
        for s in np.unique(seg):
            pick = seg == s
            out[pick] = self.segments[s][rows[pick]]
        return out


class StoredTokens(Sequence):
    """The token states of chosen items of a TokenStore as a sequence of (L, d) arrays, read on access
    (a slice reads its items at once), so a whole collection is never in memory together."""

    def __init__(self, store: TokenStore, segment: np.ndarray, offset: np.ndarray, count: np.ndarray):
        self.store, self.segment, self.offset, self.count = store, segment, offset, np.asarray(count, np.int64)

    def __len__(self) -> int:
        return len(self.count)

    def __getitem__(self, i):
        if isinstance(i, slice):
            part = slice(*i.indices(len(self)))
            flat = self.store.gather_flat(self.segment[part], self.offset[part], self.count[part])
            return np.split(flat, np.cumsum(self.count[part])[:-1])
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} of {len(self)}")
        i %= len(self)
        return self.store.gather_flat(self.segment[i:i + 1], self.offset[i:i + 1], self.count[i:i + 1])


@dataclass
class Collection:
    """A FAISS index with its metadata rows (aligned by faiss_id) and token segments."""

    index: faiss.Index
    meta: pa.Table
    token_files: list[str]  # segment file names inside the index folder
    info: dict[str, Any] = field(default_factory=dict)  # index_type, factory, search_params, tuning, next_id

    def __post_init__(self) -> None:
        schema = SCHEMAS["clips" if "id" in self.meta.column_names else "texts"]
        missing = set(schema.names) - set(self.meta.column_names)
        if missing:
            raise SlsearchError(f"index metadata lacks the columns {', '.join(sorted(missing))}; rebuild the index "
                                "with `slsearch index PATH... --model CHECKPOINT --out INDEX`")
        self.meta = self.meta.select(schema.names).cast(schema)
        ids = self.meta["faiss_id"].to_numpy()
        size = max(int(ids.max()) + 1 if len(ids) else 0, int(self.info.get("next_id", 0)))
        self.row_of_id = np.full(size, -1, dtype=np.int64)  # faiss id -> meta row
        self.row_of_id[ids] = np.arange(len(ids))

    def __len__(self) -> int:
        return self.meta.num_rows

    def column(self, name: str) -> np.ndarray:
        return self.meta[name].to_numpy(zero_copy_only=False)

    @property
    def next_id(self) -> int:
        return int(self.info.get("next_id", len(self.row_of_id)))


@dataclass
class StoredIndex:
    """One loaded version of an index folder."""

    path: Path  # the resolved version folder
    info: dict[str, Any]
    clips: Collection
    texts: Collection | None

    def token_store(self, collection: str) -> TokenStore:
        coll = self.clips if collection == "clips" else self.texts
        return TokenStore([self.path / f for f in coll.token_files], self.info["dims"]["token"])

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())


# --- reading ----------------------------------------------------------------------------------

def _required_files(info: dict[str, Any]) -> list[str]:
    files = [FILES["clips"]["faiss"], FILES["clips"]["meta"], *info["clips"]["token_files"]]
    if info.get("texts"):
        files += [FILES["texts"]["faiss"], FILES["texts"]["meta"], *info["texts"]["token_files"]]
    return files


def load_index(path: str | Path, mmap: bool = False) -> StoredIndex:
    """Open an index folder, checking that it is complete and that FAISS and metadata agree."""
    given = Path(path)
    if not given.exists():
        raise SlsearchError(f"{given}: no index here (build one with `slsearch index PATH... --out {given}`)")
    folder = given.resolve()  # pin one version: a writer may swap the link while we read
    info_file = folder / INFO_FILE
    if not folder.is_dir() or not info_file.exists():
        raise SlsearchError(f"{given}: not an slsearch index (no {INFO_FILE}); "
                            "an incomplete or foreign folder — rebuild it with `slsearch index`")
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SlsearchError(f"{info_file}: unreadable ({e}); rebuild the index") from None
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        raise SlsearchError(f"{given}: index format {version!r}, this slsearch reads format {FORMAT_VERSION}; rebuild it "
                            f"with `slsearch index PATH... --model CHECKPOINT --out {given}`")
    missing = [f for f in _required_files(info) if not (folder / f).exists()]
    if missing:
        raise SlsearchError(f"{given}: incomplete index, missing {', '.join(missing)}; rebuild it")
    clips = _load_collection(folder, "clips", info["clips"], given, mmap)
    texts = _load_collection(folder, "texts", info["texts"], given, mmap) if info.get("texts") else None
    return StoredIndex(folder, info, clips, texts)


def _load_collection(folder: Path, name: str, info: dict[str, Any], given: Path, mmap: bool) -> Collection:
    index = faiss_index.read(folder / FILES[name]["faiss"], mmap=mmap)
    try:
        meta = pq.read_table(folder / FILES[name]["meta"])
    except (pa.ArrowInvalid, OSError) as e:
        raise SlsearchError(f"{folder / FILES[name]['meta']}: unreadable ({e}); rebuild the index") from None
    if index.ntotal != meta.num_rows:
        raise SlsearchError(f"{given}: {FILES[name]['faiss']} holds {index.ntotal} vectors but "
                            f"{FILES[name]['meta']} has {meta.num_rows} rows; the index is inconsistent, rebuild it")
    return Collection(index, meta, list(info["token_files"]), info)


# --- writing ----------------------------------------------------------------------------------

def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IndexWriter:
    """Build the next version of an index folder; commit swaps it in, anything else leaves the old one.

    with IndexWriter(out) as w:          # takes the lock; w.previous is the current version or None
        seg = w.new_token_segment("clips", dim)
        ...
        w.commit(info, clips, texts)     # files written and fsynced, then one atomic symlink swap
    """

    def __init__(self, out: str | Path):
        self.out = Path(out).absolute()
        self.parent = self.out.parent
        self.name = self.out.name
        self.lock_path = self.parent / f".{self.name}.lock"
        self.tmp: Path | None = None
        self.previous: StoredIndex | None = None
        self._lock_fd: int | None = None
        self._segments: dict[str, list[str]] = {"clips": [], "texts": []}
        self._writers: list[TokenSegmentWriter] = []

    # lock ---------------------------------------------------------------------------------------
    def __enter__(self) -> "IndexWriter":
        if self.out.exists() and not self.out.is_symlink() and self.out.is_dir() and any(self.out.iterdir()) \
                and not (self.out / INFO_FILE).exists():
            raise SlsearchError(f"{self.out}: exists and is not an slsearch index; choose another --out")
        self.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SlsearchError(f"{self.out}: another writer holds the lock ({self.lock_path}, pid {holder}); "
                                "wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        try:
            self._remove_stale_temporaries()
            if self.out.exists():
                self.previous = load_index(self.out)
            self.tmp = self.parent / f".{self.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self.tmp.mkdir()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for w in self._writers:
            if not w._f.closed:
                w._f.close()
        if self.tmp is not None and self.tmp.exists():  # not committed: drop the half-built version
            shutil.rmtree(self.tmp, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _remove_stale_temporaries(self) -> None:
        # We hold the lock, so any temporary folder left here is from a writer that crashed.
        for p in self.parent.glob(f".{self.name}.tmp-*"):
            shutil.rmtree(p, ignore_errors=True)

    # token segments -----------------------------------------------------------------------------
    def keep_token_files(self, collection: str, files: list[str]) -> None:
        """Carry segments of the previous version over (hard links: no copy, segments never change)."""
        assert self.previous is not None and self.tmp is not None
        for name in files:
            src, dst = self.previous.path / name, self.tmp / name
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)  # a filesystem without hard links
            self._segments[collection].append(name)

    def new_token_segment(self, collection: str, dim: int) -> tuple[int, TokenSegmentWriter]:
        """A new segment for this version; returns its position in the token file list and its writer."""
        assert self.tmp is not None
        taken = set(self._segments[collection])  # names are per version folder: only ours can clash
        seg = 0
        while token_file_name(collection, seg) in taken:
            seg += 1
        name = token_file_name(collection, seg)
        self._segments[collection].append(name)
        writer = TokenSegmentWriter(self.tmp / name, dim)
        self._writers.append(writer)
        return len(self._segments[collection]) - 1, writer  # meta's token_segment: position in token_files

    def token_files(self, collection: str) -> list[str]:
        return list(self._segments[collection])

    # commit -------------------------------------------------------------------------------------
    def commit(self, info: dict[str, Any], clips: Collection, texts: Collection | None) -> Path:
        """Write the version, then swap it in with one atomic rename; returns the version folder."""
        assert self.tmp is not None
        for w in self._writers:
            if not w._f.closed:
                w.close()
        info = dict(info, format_version=FORMAT_VERSION, updated=_now())
        info.setdefault("created", info["updated"])
        for name, coll in (("clips", clips), ("texts", texts)):
            if coll is None:
                info[name] = None
                continue
            info[name] = dict(coll.info, count=len(coll), token_files=list(coll.token_files))
            faiss_index.write(coll.index, self.tmp / FILES[name]["faiss"])
            pq.write_table(coll.meta, self.tmp / FILES[name]["meta"])
        missing = [f for f in _required_files(info) if not (self.tmp / f).exists()]
        if missing:
            raise SlsearchError(f"internal: token segments {missing} were not written")
        (self.tmp / INFO_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
        for f in self.tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(self.tmp)
        version = self._next_version_folder()
        self.tmp.rename(version)
        self.tmp = None
        self._swap_link(version)
        self._prune_versions(version)
        return version

    def _versions(self) -> list[Path]:
        found = []
        for p in self.parent.glob(f".{self.name}.v*"):
            suffix = p.name[len(self.name) + 3:]
            if suffix.isdigit():
                found.append((int(suffix), p))
        return [p for _, p in sorted(found)]

    def _next_version_folder(self) -> Path:
        versions = self._versions()
        last = int(versions[-1].name[len(self.name) + 3:]) if versions else 0
        return self.parent / f".{self.name}.v{last + 1}"

    def _swap_link(self, version: Path) -> None:
        if self.out.exists() and not self.out.is_symlink():
            # An index folder that is not a link (copied by hand): move it aside as a version first.
            self.out.rename(self._next_version_folder_before(version))
        link_tmp = self.parent / f".{self.name}.link-{uuid.uuid4().hex[:8]}"
        os.symlink(version.name, link_tmp)  # relative: the index folder stays movable with its parent
        os.replace(link_tmp, self.out)
        _fsync_dir(self.parent)

    def _next_version_folder_before(self, version: Path) -> Path:
        return self.parent / f".{self.name}.v0-{uuid.uuid4().hex[:6]}"

    def _prune_versions(self, current: Path) -> None:
        versions = [v for v in self._versions() if v != current]
        for old in versions[:max(0, len(versions) - (KEEP_VERSIONS - 1))]:
            shutil.rmtree(old, ignore_errors=True)
