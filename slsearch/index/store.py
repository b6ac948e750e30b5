"""The index folder on disk: format, atomic replacement, a writers' lock, checked loading.

```
indexes/news -> .news.v3/     # a symlink, swapped atomically (os.replace) when a new version is ready
  index.json                   # format version, checkpoint hash, dims, index types + params, counts, history
  vectors.faiss                # global video vectors, FAISS ids = `faiss_id` in meta.parquet
  meta.parquet                 # one row per clip, aligned with vectors.faiss by faiss_id
  tokens.f16.npy               # video token states (rows, d) float16, memory-mapped; offsets in meta
                               # or, with a compressed store (`index --tokens pq`, format 3):
  tokens.pq.npy                # their codes (rows, code_size) uint8, decoded per query by
  tokens.codec.faiss           # the collection's codec, trained once (slsearch/index/token_codec.py)
  texts.faiss, texts.parquet, text_tokens.f16.npy   # the corpus sentences, when texts are known
```

Writers build the next version in `.news.tmp-*` beside the target and swap the symlink, so a reader
never sees half a version and a crash leaves the previous one in place. Token files are immutable
segments: a later version hard-links the segments it keeps and appends new ones (`tokens.1.f16.npy`),
so adding clips never copies the token store. Removed clips' rows stay in their segment, unreferenced,
until `remove` finds most rows unreferenced and writes one compacted segment.

A reader pins the version it opens together with every file it will read (`load_index` opens them all
before it returns), so a writer may prune that version at any time; an index folder is untrusted
input, checked when it is loaded (the notes above `load_index`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import shutil
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slsearch.errors import InputError, SlsearchError
from slsearch.index import faiss_index

FORMAT_VERSION = 2  # 2: every clip row has gloss_reading and reading_prior, every sentence sentence_prior
# 3: format 2 with a compressed token store (index.json's collections record a token_codec). An index
# with float16 tokens is still written as format 2, so older readers keep reading it; one with codes
# is refused by them with the rebuild command instead of being misread.
CODEC_FORMAT_VERSION = 3
READ_FORMATS = (FORMAT_VERSION, CODEC_FORMAT_VERSION)
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
    # seconds into `path` of a clip cut from a longer video (the manifest's start/end), None: from its
    # beginning / to its end; what `slsearch serve` plays. Optional: an older index reads them as None
    ("start", pa.float64()), ("end", pa.float64()),
    # each clip token's likeliest glosses (slsearch.rank.gloss_spotting), which gloss search scores a query
    # against; None without a gloss head, and in an index built before they were kept
    ("gloss_posteriors", pa.binary()),
])
OPTIONAL_COLUMNS = ("start", "end", "gloss_posteriors")  # added after format 2: missing ones are read as nulls
TEXT_SCHEMA = pa.schema([("faiss_id", pa.int64()), ("text", pa.string()), *TOKEN_COLUMNS,
                         # log p(sentence) from the decoder's null clip, for V2T likelihood re-ranking
                         # (models trained with it; None otherwise)
                         ("sentence_prior", pa.float32())])
SCHEMAS = {"clips": CLIP_SCHEMA, "texts": TEXT_SCHEMA}


def _with_optional_columns(meta: pa.Table, schema: pa.Schema) -> pa.Table:
    """`meta` with every OPTIONAL_COLUMNS column of `schema` it lacks added as nulls (an older index)."""
    for name in OPTIONAL_COLUMNS:
        if name in schema.names and name not in meta.column_names:
            meta = meta.append_column(name, pa.nulls(meta.num_rows, schema.field(name).type))
    return meta


def token_file_name(collection: str, segment: int, compressed: bool = False) -> str:
    base, kind = FILES[collection]["tokens"], "pq" if compressed else "f16"
    return f"{base}.{kind}.npy" if segment == 0 else f"{base}.{segment}.{kind}.npy"


class TokenSegmentWriter:
    """Appends (L, d) token states to a .npy whose row count is only known at the end: float16 rows,
    or with a `codec` (slsearch.index.token_codec.TokenCodec) their (L, code_size) uint8 codes."""

    HEADER_BYTES = 128  # fixed .npy header, rewritten with the final shape on close

    def __init__(self, path: Path, dim: int, codec: Any = None):
        self.path, self.dim, self.rows, self.codec = Path(path), dim, 0, codec
        if codec is not None and codec.dim != dim:
            raise SlsearchError(f"internal: a codec of {codec.dim} dimensions for token states of {dim}")
        self._f = open(self.path, "wb")
        self._f.write(b"\0" * self.HEADER_BYTES)

    def append(self, tokens: np.ndarray) -> tuple[int, int]:
        """Write one item's tokens (L, d); returns (offset, count) in rows."""
        t = np.asarray(tokens)
        if t.ndim != 2 or t.shape[1] != self.dim:
            raise SlsearchError(f"token states of shape {t.shape} do not match token dim {self.dim}")
        t = np.ascontiguousarray(t, dtype=np.float16) if self.codec is None else self.codec.encode(t)
        self._f.write(t.tobytes())
        offset, self.rows = self.rows, self.rows + len(t)
        return offset, len(t)

    def close(self) -> None:
        width, descr = (self.dim, "<f2") if self.codec is None else (self.codec.code_size, "|u1")
        header = repr({"descr": descr, "fortran_order": False, "shape": (self.rows, width)})
        body_len = self.HEADER_BYTES - 10
        header_bytes = header.encode("ascii").ljust(body_len - 1) + b"\n"
        self._f.seek(0)
        self._f.write(b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + header_bytes)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


class TokenStore:
    """Memory-mapped token segments of one collection; gathers padded batches for re-ranking.

    Every segment is opened once, here, and checked against its .npy header (float16, (rows, dim),
    as many bytes as the header promises): a truncated or foreign file is refused now, not in the
    middle of a query. The open file (its descriptor serves the read hints) and the map pin the
    file's contents, so the store keeps answering after a writer prunes the version it came from.
    `where` names the index for the error messages. With a `codec` (token_codec.TokenCodec) the
    segments hold (rows, code_size) uint8 codes, decoded only for the items gathered.
    """

    def __init__(self, files: list[Path], dim: int, where: str | Path | None = None, codec: Any = None):
        self.dim, self.codec = dim, codec
        self._files: list[Any] = []  # open segment files: their descriptors serve the read hints
        self.segments = [self._open(Path(f), dim, where) for f in files]
        self.rows = np.array([len(s) for s in self.segments], dtype=np.int64)  # rows per segment
        # Read hints: a re-rank touches ~100 scattered items; telling the kernel about all of them
        # first lets their disk reads run concurrently instead of one page fault after another.
        self._fds = [f.fileno() for f in self._files] if hasattr(os, "posix_fadvise") else []
        self._row_bytes = dim * 2 if codec is None else codec.code_size  # float16, or one token's codes

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the segment files (the maps stay readable until the store is dropped)."""
        self._fds = []
        for f in getattr(self, "_files", []):
            try:
                f.close()
            except OSError:
                pass

    def prefetch(self, segment: np.ndarray, offset: np.ndarray, count: np.ndarray) -> None:
        """Ask the kernel to start reading these items' token rows (a no-op where unsupported)."""
        if not self._fds:
            return
        for s, o, c in zip(np.asarray(segment).tolist(), np.asarray(offset).tolist(), np.asarray(count).tolist()):
            seg = self.segments[s]
            start = getattr(seg, "offset", 0) + o * self._row_bytes
            try:
                os.posix_fadvise(self._fds[s], start, c * self._row_bytes, os.POSIX_FADV_WILLNEED)
            except (OSError, ValueError):  # a hint only (a closed store, an odd filesystem)
                return

    def _open(self, path: Path, dim: int, where: str | Path | None) -> np.ndarray:
        """One segment: opened without following a FIFO's promise of data, header checked, mapped from
        the same open file (so what is checked is what is read)."""
        def bad(reason: str) -> InputError:
            name = path.name if where is not None else str(path)
            return InputError(where if where is not None else path,
                              f"token file {name} {reason}; the index is damaged, rebuild it")

        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        f = os.fdopen(fd, "rb")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise bad("is not a regular file")
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f".npy version {version}")
            except OSError:
                raise
            except Exception as e:  # numpy's parser on untrusted bytes: ValueError, SyntaxError, EOFError...
                raise bad(f"is not a .npy array ({_one_line(e)})") from None
            want, width, what = ((np.dtype("<f2"), dim, "float16") if self.codec is None
                                 else (np.dtype("u1"), self.codec.code_size, "uint8 codes"))
            if dtype != want or fortran or len(shape) != 2:
                raise bad(f"holds {dtype} {'fortran ' if fortran else ''}{shape}, not (rows, {width}) {what}")
            if shape[1] != width:
                raise bad(f"has rows of {shape[1]} values, index.json says the token dim is {dim}" if self.codec is None
                          else f"has rows of {shape[1]} bytes, index.json says the token codes are {width}")
            start = f.tell()
            if st.st_size - start < shape[0] * width * want.itemsize:
                raise bad(f"is truncated ({st.st_size} bytes for {shape[0]} rows of {width})")
            if shape[0] == 0:
                seg = np.zeros((0, width), want)  # mmap of 0 bytes is refused
            else:
                seg = np.memmap(f, dtype=want, mode="r", offset=start, shape=(shape[0], width))
        except BaseException:
            f.close()
            raise
        self._files.append(f)
        return seg

    def gather_flat(self, segment: np.ndarray, offset: np.ndarray, count: np.ndarray) -> np.ndarray:
        """Token states of N items stacked without padding: (sum count, d) float32, items in order."""
        count = np.asarray(count, dtype=np.int64)
        if not len(count):
            return np.zeros((0, self.dim), np.float32)
        # row index of every token: offset of its item + its position inside the item
        within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        rows = np.repeat(np.asarray(offset, dtype=np.int64), count) + within
        seg = np.repeat(np.asarray(segment), count)
        if self.codec is not None:  # gather the codes, decode them in one call
            if len(self.segments) == 1:
                return self.codec.decode(self.segments[0][rows])
            codes = np.empty((len(rows), self.codec.code_size), np.uint8)
            for s in np.unique(seg):
                pick = seg == s
                codes[pick] = self.segments[s][rows[pick]]
            return self.codec.decode(codes)
        if len(self.segments) == 1:
            return np.asarray(self.segments[0][rows], dtype=np.float32)
        out = np.empty((len(rows), self.dim), np.float32)
        for s in np.unique(seg):
            pick = seg == s
            out[pick] = self.segments[s][rows[pick]]
        return out

    def stored_bytes(self) -> int:
        """Bytes of token rows in the segments (codes or float16), headers and codec not counted."""
        return int(self.rows.sum()) * self._row_bytes


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


class TextColumn:
    """A string or binary metadata column kept in Arrow, read as Python values only where asked: a whole
    column as Python objects costs ~80 bytes a row more than its text (at 10M clips, gigabytes), and a
    query needs the values of a few rows. Indexing with an int gives the value (None for null), with an
    array of rows an object array of those values, as a NumPy object column would."""

    def __init__(self, values: pa.Array | pa.ChunkedArray):
        if isinstance(values, pa.ChunkedArray):  # one array, for fast row access; a single chunk is not copied
            values = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, rows):
        if isinstance(rows, (int, np.integer)):
            return self.values[int(rows)].as_py()
        taken = self.values.take(pa.array(np.asarray(rows, dtype=np.int64)))
        out = np.empty(len(taken), dtype=object)
        out[:] = taken.to_pylist()
        return out

    def __iter__(self):
        return iter(self.values.to_pylist())

    @property
    def complete(self) -> bool:
        """Every row has a value."""
        return self.values.null_count == 0

    def tolist(self) -> list:
        return self.values.to_pylist()

    @staticmethod
    def concat(columns: list["TextColumn"]) -> "TextColumn":
        return TextColumn(pa.concat_arrays([c.values for c in columns]))


def column_of(table: pa.Table, name: str) -> np.ndarray | TextColumn:
    """A metadata column: numbers as a NumPy array, strings and bytes as a TextColumn."""
    values = table[name]
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type) or \
            pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
        return TextColumn(values)
    return values.to_numpy(zero_copy_only=False)


class RowOfId:
    """faiss id -> meta row, -1 for an id the metadata lacks (never an error, never another row).

    A dense table where the ids are compact; a binary search over the sorted ids where they are too
    sparse for one (ids are never reused, so many removals leave gaps, and an untrusted meta.parquet
    must not make a table of 2^40 entries).
    """

    def __init__(self, ids: np.ndarray):
        ids = np.asarray(ids, dtype=np.int64)
        self.size = int(ids.max()) + 1 if len(ids) else 0
        self._table: np.ndarray | None = None
        if self.size <= 4 * len(ids) + (1 << 20):
            self._table = np.full(self.size, -1, dtype=np.int64)
            self._table[ids] = np.arange(len(ids))
        else:
            order = np.argsort(ids, kind="stable")
            self._sorted, self._rows = ids[order], order.astype(np.int64)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, ids) -> np.ndarray:
        q = np.asarray(ids, dtype=np.int64)
        out = np.full(q.shape, -1, dtype=np.int64)
        if self._table is not None:
            ok = (q >= 0) & (q < self.size)
            out[ok] = self._table[q[ok]]
        elif len(self._sorted):
            pos = np.minimum(np.searchsorted(self._sorted, q), len(self._sorted) - 1)
            hit = self._sorted[pos] == q
            out[hit] = self._rows[pos[hit]]
        return out[()] if out.ndim == 0 else out


@dataclass
class Collection:
    """A FAISS index with its metadata rows (aligned by faiss_id) and token segments."""

    index: faiss.Index
    meta: pa.Table
    token_files: list[str]  # segment file names inside the index folder
    info: dict[str, Any] = field(default_factory=dict)  # index_type, factory, search_params, tuning, next_id

    def __post_init__(self) -> None:
        schema = SCHEMAS["clips" if "id" in self.meta.column_names else "texts"]
        self.meta = _with_optional_columns(self.meta, schema)
        missing = set(schema.names) - set(self.meta.column_names)
        if missing:
            raise SlsearchError(f"index metadata lacks the columns {', '.join(sorted(missing))}; rebuild the index "
                                "with `slsearch index PATH... --model CHECKPOINT --out INDEX`")
        self.meta = self.meta.select(schema.names).cast(schema)
        self.row_of_id = RowOfId(self.meta["faiss_id"].to_numpy())  # faiss id -> meta row (-1: none)

    def __len__(self) -> int:
        return self.meta.num_rows

    def column(self, name: str) -> np.ndarray | TextColumn:
        return column_of(self.meta, name)

    @property
    def next_id(self) -> int:
        return int(self.info.get("next_id", len(self.row_of_id)))


@dataclass
class StoredIndex:
    """One loaded version of an index folder, pinned: load_index opened every file it reads."""

    path: Path  # the resolved version folder (a writer may prune it later: nothing here reads it again)
    info: dict[str, Any]
    clips: Collection
    texts: Collection | None
    stores: dict[str, TokenStore] = field(default_factory=dict)  # token segments, opened with the version
    file_bytes: int | None = None  # the version's files, measured when it was opened

    def token_store(self, collection: str) -> TokenStore:
        """The collection's token segments, opened and checked when the index was loaded."""
        if collection in self.stores:
            return self.stores[collection]
        raise SlsearchError(f"{self.path}: no {collection} token store was opened with this index")

    def token_codec(self, collection: str) -> str:
        """'fp16', or the FAISS factory string of the collection's token codec."""
        codec = (self.info.get(collection) or {}).get("token_codec")
        return codec["factory"] if codec else "fp16"

    def token_store_bytes(self) -> int:
        """Bytes on disk of the token stores (segments and codec files) of both collections."""
        total = 0
        for name in ("clips", "texts"):
            cinfo = self.info.get(name) or {}
            files = list(cinfo.get("token_files") or []) + ([cinfo["token_codec"]["file"]]
                                                             if cinfo.get("token_codec") else [])
            for f in files:
                try:
                    total += (self.path / f).stat().st_size
                except OSError:  # pruned by a writer since: the open maps still serve it
                    total += 0
        return total

    def size_bytes(self) -> int:
        if self.file_bytes is not None:
            return self.file_bytes
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())


# --- reading ----------------------------------------------------------------------------------
#
# Readers and writers. A reader pins the version the link names when it opens the index, and
# everything it will ever read from it: load_index reads index.json, FAISS and the metadata into
# memory and opens and maps every token segment before it returns, before anything slow (loading a
# model takes seconds). An open file and a map keep a file's contents alive after a writer unlinks
# it (POSIX), so `_prune_versions` may delete a version under a reader that loaded it: the reader
# keeps answering from it, and its disk space comes back when the reader lets go. This needs no
# lease or reference count next to the lock, hence no stale lease of a killed reader that keeps
# versions forever, and a writer never waits for a reader. What remains is the few milliseconds
# between resolving the link and opening the last file: a version pruned inside them (two commits
# in a few ms) is noticed (the link no longer resolves to it) and the new version is opened instead,
# up to LOAD_ATTEMPTS times. A version that is merely broken does not move, and is reported.
#
# An index folder is untrusted input (people share them): every file it names must lie inside the
# version folder (symlinks resolved) and be a regular file; index.json, the metadata and the token
# headers are checked for shape, type and range here, so a damaged or hostile folder is one line
# naming it (an InputError), never a traceback at query time or a read of a file nobody named.

LOAD_ATTEMPTS = 3
MAX_INFO_BYTES = 256 << 20  # index.json holds settings and history: far below this


def _required_files(info: dict[str, Any]) -> list[str]:
    files = []
    for name in ("clips", "texts"):
        cinfo = info.get(name)
        if cinfo:
            files += [FILES[name]["faiss"], FILES[name]["meta"], *cinfo["token_files"]]
            if cinfo.get("token_codec"):
                files.append(cinfo["token_codec"]["file"])
    return files


def _one_line(e: BaseException | str) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:200] + "…"


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:60] + '…'}"


def load_index(path: str | Path, mmap: bool = False) -> StoredIndex:
    """Open an index folder, checking that it is complete, well formed and that FAISS and metadata agree.

    The version is pinned with every file read from it (see the notes above `LOAD_ATTEMPTS`): a writer
    committing meanwhile never makes this index fail later. A damaged or hostile folder is an
    InputError naming it and what is wrong.
    """
    given = Path(path)
    if not given.exists():
        raise SlsearchError(f"{given}: no index here (build one with `slsearch index PATH... --out {given}`)")
    for _ in range(LOAD_ATTEMPTS):
        folder = given.resolve()  # pin one version: a writer may swap the link while we read
        try:
            return _load_version(given, folder, mmap)
        except (SlsearchError, OSError) as e:
            if not _moved(given, folder):  # not a writer's doing: the folder itself is the problem
                if isinstance(e, FileNotFoundError):
                    raise InputError(given, f"{Path(e.filename or '?').name} vanished while the index was "
                                            "opened; try again") from None
                raise
    raise SlsearchError(f"{given}: writers replaced the index {LOAD_ATTEMPTS} times while it was being opened; "
                        "try again")


def _moved(given: Path, folder: Path) -> bool:
    """Whether the link no longer names `folder`, or the version is gone (a writer pruned it)."""
    try:
        return given.resolve() != folder or not folder.is_dir()
    except (OSError, RuntimeError):
        return True


def _load_version(given: Path, folder: Path, mmap: bool) -> StoredIndex:
    if not folder.is_dir() or not (folder / INFO_FILE).exists():
        raise SlsearchError(f"{given}: not an slsearch index (no {INFO_FILE}); "
                            "an incomplete or foreign folder — rebuild it with `slsearch index`")
    info, info_bytes = _read_info(given, folder)
    names = _required_files(info)
    where = {n: f"{INFO_FILE} entry {n!r}" for n in names}
    for name in (FILES[c][k] for c in FILES for k in ("faiss", "meta")):
        where[name] = name
    paths = {n: _inside(given, folder, n, where[n]) for n in names}  # nothing outside, before any read
    missing, sizes = [], info_bytes
    for name in dict.fromkeys(names):
        try:
            st = os.stat(paths[name])
        except FileNotFoundError:
            missing.append(name)
            continue
        if not stat.S_ISREG(st.st_mode):
            raise InputError(given, f"{where[name]} is not a regular file; the index is damaged, rebuild it")
        sizes += st.st_size
    if missing:
        raise SlsearchError(f"{given}: incomplete index, missing {', '.join(missing)}; rebuild it")
    clips, clip_store = _load_collection(given, "clips", info, paths, mmap)
    texts, text_store = _load_collection(given, "texts", info, paths, mmap) if info.get("texts") else (None, None)
    text_id = clips.column("text_id")
    linked = text_id[text_id >= 0]
    if (text_id < -1).any():
        raise InputError(given, f"{FILES['clips']['meta']} has text_id values below -1; the index is damaged, "
                                "rebuild it")
    if len(linked) and (texts is None or (texts.row_of_id[linked] < 0).any()):
        raise InputError(given, f"{FILES['clips']['meta']} links clips to sentences that "
                                f"{FILES['texts']['meta'] if texts is not None else 'the index'} lacks; "
                                "the index is damaged, rebuild it")
    stores = {"clips": clip_store, **({"texts": text_store} if text_store is not None else {})}
    return StoredIndex(folder, info, clips, texts, stores, sizes)


def _inside(given: Path, folder: Path, name: str, what: str) -> Path:
    """The file `name` of the version folder, resolved; refused when it leads out of the folder."""
    try:
        resolved = (folder / name).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise InputError(given, f"{what} is a symlink loop; the index is damaged, rebuild it") from None
    if resolved == folder or not resolved.is_relative_to(folder):
        raise InputError(given, f"{what} leads outside the index folder (to {resolved}); refusing to read it "
                                "(a damaged or hostile index)")
    return resolved


def _read_info(given: Path, folder: Path) -> tuple[dict[str, Any], int]:
    """index.json, parsed and checked for shape and types; and its size in bytes."""
    path = _inside(given, folder, INFO_FILE, INFO_FILE)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(given, f"{INFO_FILE} is not a regular file; the index is damaged, rebuild it")
        raw = f.read(MAX_INFO_BYTES + 1)
    if len(raw) > MAX_INFO_BYTES:
        raise InputError(given, f"{INFO_FILE} is over {MAX_INFO_BYTES >> 20} MiB; not an slsearch index, rebuild it")
    try:
        info = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(given, f"{INFO_FILE} is unreadable ({_one_line(e)}); rebuild the index") from None
    _check_info(given, info)
    return info, len(raw)


def _check_info(given: Path, info: Any) -> None:
    """index.json's shape: what readers and writers take from it has the type they expect."""
    def bad(key: str, want: str, value: Any) -> InputError:
        found = "it is missing (or null)" if value is None else f"not {_shown(value)}"
        return InputError(given, f"{INFO_FILE}: {key} should be {want}, {found}; the index is damaged, rebuild it")

    def count(v: Any, low: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    if not isinstance(info, dict):
        raise bad("the file", "an object", info)
    version = info.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > max(READ_FORMATS):
        raise SlsearchError(f"{given}: index format {version} is newer than this slsearch reads "
                            f"({', '.join(map(str, READ_FORMATS))}); upgrade slsearch, or rebuild it "
                            f"with `slsearch index PATH... --model CHECKPOINT --out {given}`")
    if version not in READ_FORMATS or isinstance(version, bool):
        raise SlsearchError(f"{given}: index format {_shown(version) if not isinstance(version, int) else version}, "
                            f"this slsearch reads format {FORMAT_VERSION}; rebuild it "
                            f"with `slsearch index PATH... --model CHECKPOINT --out {given}`")
    dims = info.get("dims")
    if not isinstance(dims, dict):
        raise bad("dims", "an object", dims)
    for key in ("global", "token"):
        if not count(dims.get(key), 1):
            raise bad(f"dims.{key}", "a positive integer", dims.get(key))
    ckpt = info.get("checkpoint")
    if not isinstance(ckpt, dict):
        raise bad("checkpoint", "an object", ckpt)
    if not isinstance(ckpt.get("hash"), str):
        raise bad("checkpoint.hash", "a string", ckpt.get("hash"))
    if not isinstance(ckpt.get("path"), (str, type(None))) or "\0" in (ckpt.get("path") or ""):
        raise bad("checkpoint.path", "a folder name", ckpt.get("path"))
    for key, types, want in (("lexicon", (str, type(None)), "a string"), ("history", list, "a list"),
                             ("tokens", str, "a string"),
                             ("created", str, "a string"), ("updated", str, "a string")):
        if key in info and not isinstance(info[key], types):
            raise bad(key, want, info[key])
    for name in ("clips", "texts"):
        coll = info.get(name)
        if name == "texts" and not coll and coll in (None, {}, []):
            continue
        if not isinstance(coll, dict):
            raise bad(name, "an object", coll)
        files = coll.get("token_files")
        if not isinstance(files, list) or not all(isinstance(f, str) and f not in ("", ".") and "\0" not in f
                                                  for f in files):
            raise bad(f"{name}.token_files", "a list of file names", files)
        if "next_id" in coll and not count(coll["next_id"], 0):
            raise bad(f"{name}.next_id", "a non-negative integer", coll["next_id"])
        for key in ("index_type", "factory"):
            if key in coll and not isinstance(coll[key], str):
                raise bad(f"{name}.{key}", "a string", coll[key])
        params = coll.get("search_params")
        if params is not None and not (isinstance(params, dict) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in params.values())):
            raise bad(f"{name}.search_params", "an object of numbers", params)
        codec = coll.get("token_codec")
        if codec is not None:
            if version != CODEC_FORMAT_VERSION:
                raise bad(f"{name}.token_codec", f"absent in format {version}", codec)
            if not isinstance(codec, dict):
                raise bad(f"{name}.token_codec", "an object", codec)
            for key, ok, want in (
                    ("factory", lambda v: isinstance(v, str), "a string"),
                    ("file", lambda v: isinstance(v, str) and v not in ("", ".") and "\0" not in v, "a file name"),
                    ("code_size", lambda v: count(v, 1), "a positive integer"),
                    ("sha256", lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v), "a SHA-256"),
                    ("trained_on", lambda v: v is None or count(v, 0), "a non-negative integer")):
                if not ok(codec.get(key)):
                    raise bad(f"{name}.token_codec.{key}", want, codec.get(key))


def _load_collection(given: Path, name: str, info: dict[str, Any], paths: dict[str, Path],
                     mmap: bool) -> tuple[Collection, TokenStore]:
    """One collection, checked: FAISS against dims and the metadata, the metadata's ids and token
    ranges against the token segments (opened here)."""
    cinfo, dims = info[name], info["dims"]
    fname, mname = FILES[name]["faiss"], FILES[name]["meta"]

    def bad(reason: str) -> InputError:
        return InputError(given, f"{reason}; the index is damaged, rebuild it")

    try:
        index = faiss_index.read(paths[fname], mmap=mmap)
    except SlsearchError as e:  # "PATH: not a readable FAISS index (Error in FUNCTION at FILE:LINE: what)"
        reason = re.sub(r"Error in .*? at \S+:\d+: ", "", str(e)[len(str(paths[fname])) + 2:])
        raise bad(f"{fname} is {_one_line(reason)}") from None
    if index.d != dims["global"]:
        raise bad(f"{fname} holds vectors of {index.d} dimensions, {INFO_FILE} says {dims['global']}")
    try:
        meta = pq.read_table(paths[mname])
    except PermissionError:
        raise
    except (pa.ArrowException, OSError, ValueError) as e:
        raise bad(f"{mname} is unreadable ({_one_line(e)})") from None
    if index.ntotal != meta.num_rows:
        raise SlsearchError(f"{given}: {fname} holds {index.ntotal} vectors but "
                            f"{mname} has {meta.num_rows} rows; the index is inconsistent, rebuild it")
    schema = SCHEMAS[name]
    meta = _with_optional_columns(meta, schema)
    missing = set(schema.names) - set(meta.column_names)
    if missing:
        raise SlsearchError(f"{given}: {mname} lacks the columns {', '.join(sorted(missing))}; rebuild the index "
                            "with `slsearch index PATH... --model CHECKPOINT --out INDEX`")
    try:
        meta = meta.select(schema.names).cast(schema)
    except (pa.ArrowException, ValueError, TypeError) as e:
        raise bad(f"{mname} has columns of the wrong types ({_one_line(e)})") from None
    required = ("faiss_id", "token_segment", "token_offset", "token_count") + (("id",) if name == "clips"
                                                                               else ("text",))
    nulls = [c for c in required if meta[c].null_count]
    if nulls:
        raise bad(f"{mname} has empty values in {', '.join(nulls)}")
    ids = meta["faiss_id"].to_numpy()
    if len(ids):
        if ids.min() < 0 or len(np.unique(ids)) != len(ids):
            raise bad(f"{mname} has negative or repeated faiss_id values")
        if "next_id" in cinfo and ids.max() >= cinfo["next_id"]:
            raise bad(f"{mname} has faiss_id {int(ids.max())}, beyond {INFO_FILE}'s {name}.next_id {cinfo['next_id']}")
    if isinstance(index, faiss.IndexIDMap):  # IDMap2 too: its ids are at hand, compare them (inverted files
        held = faiss.vector_to_array(index.id_map)  # are checked per query: an unknown id is refused there)
        if not np.array_equal(np.sort(held), np.sort(ids)):
            raise bad(f"{fname} and {mname} hold different ids")
    if cinfo.get("search_params"):
        try:
            faiss_index.set_search_params(index, cinfo["search_params"])
        except (RuntimeError, TypeError, ValueError, OverflowError) as e:
            raise bad(f"{INFO_FILE}: {name}.search_params do not fit {fname} ({_one_line(e)})") from None
    codec = None
    if cinfo.get("token_codec"):
        from slsearch.index.token_codec import TokenCodec

        codec = TokenCodec.load(paths[cinfo["token_codec"]["file"]], cinfo["token_codec"], dims["token"], given)
    store = TokenStore([paths[f] for f in cinfo["token_files"]], dims["token"], given, codec)
    seg, off, cnt = (meta[c].to_numpy().astype(np.int64) for c in ("token_segment", "token_offset", "token_count"))
    if len(seg):
        if seg.min() < 0 or seg.max() >= len(store.segments):
            raise bad(f"{mname} names token segment {int(seg.min() if seg.min() < 0 else seg.max())}, "
                      f"{INFO_FILE} lists {len(store.segments)} token file(s) for {name}")
        if off.min() < 0 or cnt.min() < 1:
            raise bad(f"{mname} has negative token offsets or token counts below 1")
        if off.max() > store.rows.max():  # before adding: offsets near 2^63 would wrap
            raise bad(f"{mname} has token offsets beyond every token file's rows")
        end = np.zeros(len(store.segments), np.int64)
        np.maximum.at(end, seg, off + cnt)  # per segment: the last row any item reads
        over = np.flatnonzero(end > store.rows)
        if len(over):
            s = int(over[0])
            raise bad(f"{mname} reads rows up to {int(end[s])} of token file {cinfo['token_files'][s]}, "
                      f"which holds {int(store.rows[s])}")
    return Collection(index, meta, list(cinfo["token_files"]), cinfo), store


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

    Token codecs: `tokens` ('fp16', 'pq', 'pq-small', 'opq' or a FAISS factory string,
    slsearch.index.token_codec)
    chooses the store of a new index; a writer over a previous version keeps that version's codecs
    (None: whatever it has; another value is refused). A new compressed collection is written as
    float16 first (a pending segment in the temporary folder), then at commit its codec is trained on
    a sample of those rows and the rows are encoded into the final segment, before anything is swapped in.
    """

    def __init__(self, out: str | Path, read_previous: bool = True, tokens: str | None = None):
        self.out = Path(out).absolute()
        # False for a rebuild: the current version is replaced, not read, so a damaged one is no obstacle
        self.read_previous = read_previous
        self.tokens_requested = tokens  # None: the previous version's codec, fp16 for a new index
        self.tokens = "fp16"  # the store this version is written with (set in __enter__)
        self._codecs: dict[str, Any] = {}  # collection -> TokenCodec, trained or from the previous version
        self._pending: dict[str, list[tuple[str, TokenSegmentWriter]]] = {"clips": [], "texts": []}
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
            if self.out.exists() and self.read_previous:
                self.previous = load_index(self.out)
            self._choose_tokens()
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
    def _choose_tokens(self) -> None:
        """The token store of this version: the previous version's codecs, or the one requested."""
        from slsearch.index.token_codec import factory_for

        prev = self.previous
        if prev is None:
            self.tokens = self.tokens_requested or "fp16"  # checked against the dim with the first segment
            return
        self.tokens = prev.info.get("tokens") or ("fp16" if not (prev.info["clips"].get("token_codec")) else
                                                  prev.info["clips"]["token_codec"]["factory"])
        have = (prev.info["clips"].get("token_codec") or {}).get("factory")
        if self.tokens_requested is not None and factory_for(self.tokens_requested, prev.info["dims"]["token"]) != have:
            raise SlsearchError(f"{self.out}: stores token states as {self.tokens}; adding to an index keeps its "
                                f"token codec (rebuild without --add for --tokens {self.tokens_requested})")
        for name, store in prev.stores.items():
            if store.codec is not None:
                self._codecs[name] = store.codec

    def _factory(self, dim: int) -> str | None:
        from slsearch.index.token_codec import factory_for

        return factory_for(self.tokens, dim)

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
        """A new segment for this version; returns its position in the token file list and its writer
        (it takes float16-able (L, d) token states whatever the store; a codec encodes them)."""
        assert self.tmp is not None
        codec = self._codecs.get(collection)
        compressed = codec is not None or self._factory(dim) is not None
        taken = set(self._segments[collection])  # names are per version folder: only ours can clash
        seg = 0
        while token_file_name(collection, seg, compressed) in taken:
            seg += 1
        name = token_file_name(collection, seg, compressed)
        self._segments[collection].append(name)
        if compressed and codec is None:  # float16 until commit trains the codec on these rows
            writer = TokenSegmentWriter(self.tmp / f".{name}.pending-f16", dim)
            self._pending[collection].append((name, writer))
        else:
            writer = TokenSegmentWriter(self.tmp / name, dim, codec)
        self._writers.append(writer)
        return len(self._segments[collection]) - 1, writer  # meta's token_segment: position in token_files

    def _encode_pending(self, collection: str) -> None:
        """Train the collection's codec on its pending float16 rows, encode them into their segments."""
        from slsearch.index.token_codec import ENCODE_BLOCK, TokenCodec, sample_rows

        pending = self._pending[collection]
        if not pending:
            return
        dim = pending[0][1].dim
        arrays = [np.load(w.path, mmap_mode="r") if w.rows else np.zeros((0, dim), np.float16) for _, w in pending]
        sample = sample_rows(arrays)
        if not len(sample):
            raise SlsearchError(f"{self.out}: no {collection} token states to train the {self.tokens} codec on")
        codec = TokenCodec.train(self._factory(dim), sample)
        for (name, w), rows in zip(pending, arrays):
            out = TokenSegmentWriter(self.tmp / name, dim, codec)
            self._writers.append(out)
            for start in range(0, len(rows), ENCODE_BLOCK):
                out.append(rows[start:start + ENCODE_BLOCK])
            out.close()
            del rows
            w.path.unlink()
        self._codecs[collection] = codec
        self._pending[collection] = []


    def token_files(self, collection: str) -> list[str]:
        return list(self._segments[collection])

    # commit -------------------------------------------------------------------------------------
    def commit(self, info: dict[str, Any], clips: Collection, texts: Collection | None) -> Path:
        """Write the version, then swap it in with one atomic rename; returns the version folder."""
        assert self.tmp is not None
        for w in self._writers:
            if not w._f.closed:
                w.close()
        for name in ("clips", "texts"):
            self._encode_pending(name)
        info = dict(info, format_version=FORMAT_VERSION, updated=_now(), tokens=self.tokens)
        info.setdefault("created", info["updated"])
        for name, coll in (("clips", clips), ("texts", texts)):
            if coll is None:
                info[name] = None
                continue
            info[name] = dict(coll.info, count=len(coll), token_files=list(coll.token_files))
            info[name].pop("token_codec", None)
            codec = self._codecs.get(name)
            if codec is not None:
                from slsearch.index.token_codec import codec_file_name

                file = codec_file_name(FILES[name]["tokens"])
                codec.write(self.tmp / file)
                info[name]["token_codec"] = codec.describe(file)
                info["format_version"] = CODEC_FORMAT_VERSION
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
