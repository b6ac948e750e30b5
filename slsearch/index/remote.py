"""Shards served by other processes: one `slsearch serve SHARD --shard-api` per shard (on its own machine),
and a shard set whose shards.json names them by URL (`slsearch shards SET --add http://host:8101`).

The front (`slsearch query --index SET`, `slsearch serve SET`) holds the model and ranks; a remote shard
answers three questions about the index version it serves, over HTTP (JSON, and bytes for token states):

    GET  /api/shard/info                  index.json, the version, counts, token width
    GET  /api/shard/meta/{clips|texts}    the version's metadata rows (Arrow IPC; read once, at load)
    POST /api/shard/search/{collection}   {"vectors": [[...]], "n": N, "version": V} -> rows, scores
    POST /api/shard/tokens/{collection}   {"rows": [...], "version": V} -> counts and float16 token states

So a search over remote shards is the search over local ones (slsearch.index.search): every shard's FAISS
top-N merged into the global top-N, the candidates' token states fetched (one request per shard that holds
some), ranked once; the hits are those of one index over every shard's clips. Requests name the version
they were planned on; a shard that has moved to another answers 409 and the front reloads the set.
Written with the standard library's urllib: three small JSON/bytes calls need no client package.
"""

from __future__ import annotations

import io
import json
import os
import ssl
import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from slsearch.errors import SlsearchError
from slsearch.index.search import _Part
from slsearch.index.store import TextColumn, column_of

TIMEOUT_S = 30.0
VERSION_TIMEOUT_S = 2.0  # asking which version a shard serves: a front asks every second, in requests
COLLECTIONS = ("clips", "texts")
# the deployment's shared secret: a shard served with it answers only requests that carry it
SHARD_KEY_ENV = "SLSEARCH_SHARD_KEY"
# a PEM file of the certificate authority that signed the shards' TLS certificates (`serve --tls-cert`), when
# it is the deployment's own rather than one the system trusts
SHARD_CA_ENV = "SLSEARCH_SHARD_CA"


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def _call(url: str, body: dict[str, Any] | None = None, timeout: float = TIMEOUT_S) -> bytes:
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json"} if data else {}
    key = os.environ.get(SHARD_KEY_ENV)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=_tls_context(url)) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read().decode("utf-8")).get("detail")
        except (ValueError, UnicodeDecodeError, AttributeError):
            detail = None
        if e.code == 409:
            raise ShardMoved(f"{url}: {detail or 'the shard serves another version now'}") from None
        raise SlsearchError(f"{url}: the shard answered {e.code}: {detail or e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise SlsearchError(f"{url}: the shard's TLS certificate is not trusted ({reason.verify_message}); set "
                                f"{SHARD_CA_ENV} to the PEM file of the authority that signed it") from None
        raise SlsearchError(f"{url}: the shard does not answer ({getattr(e, 'reason', e)}); is "
                            "`slsearch serve ... --shard-api` running there?") from None


_contexts: dict[str | None, ssl.SSLContext] = {}


def _tls_context(url: str) -> ssl.SSLContext | None:
    """The certificate check of an https shard: the system's authorities, or the deployment's own CA."""
    if not url.startswith("https://"):
        return None
    ca = os.environ.get(SHARD_CA_ENV) or None
    if ca not in _contexts:
        if ca is not None and not Path(ca).is_file():
            raise SlsearchError(f"{ca}: {SHARD_CA_ENV} names no file (the PEM of the shards' certificate authority)")
        try:
            _contexts[ca] = ssl.create_default_context(cafile=ca)
        except ssl.SSLError as e:
            raise SlsearchError(f"{ca}: not a PEM certificate authority ({e.reason or e})") from None
    return _contexts[ca]


class ShardMoved(SlsearchError):
    """A remote shard committed a new version since the set was loaded."""


class RemoteCollection:
    """A remote shard's metadata of one collection, as a loaded Collection offers it."""

    def __init__(self, meta: pa.Table, info: dict[str, Any]):
        self.meta, self.info = meta, info

    def __len__(self) -> int:
        return self.meta.num_rows

    def column(self, name: str) -> np.ndarray | TextColumn:
        return column_of(self.meta, name)


class RemotePart(_Part):
    """One collection of a remote shard: its metadata here (read once), FAISS and tokens over there."""

    def __init__(self, shard: "RemoteShard", collection: str):  # not _Part.__init__: no local FAISS or store
        self.shard, self.collection, self.where = shard, collection, shard.url
        self.coll: RemoteCollection = getattr(shard, collection)
        self.dim = shard.dim

    def search(self, q_vectors: np.ndarray, m: int, prefetch: bool) -> tuple[np.ndarray, np.ndarray]:
        d = json.loads(_call(f"{self.shard.url}/api/shard/search/{self.collection}",
                             {"vectors": np.asarray(q_vectors, np.float32).tolist(), "n": int(m),
                              "version": self.shard.version}))
        scores, rows = np.asarray(d["scores"], np.float32), np.asarray(d["rows"], np.int64)
        if rows.shape != (len(q_vectors), m) or scores.shape != rows.shape or (rows >= len(self)).any():
            raise SlsearchError(f"{self.where}: the shard's search answer does not fit its metadata")
        return scores, rows

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = _call(f"{self.shard.url}/api/shard/tokens/{self.collection}",
                    {"rows": np.asarray(rows, np.int64).tolist(), "version": self.shard.version})
        return unpack_tokens(raw, len(rows), self.dim, self.where)

    def prefetch(self, rows: np.ndarray) -> None:
        """The shard reads its own store; nothing to hint from here."""


class RemoteShard:
    """A shard served by another process, loaded as load_index loads a local one: its info and metadata."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        head = shard_info(self.url)
        self.info: dict[str, Any] = head["info"]
        self.version: str = head["version"]
        self.key = f"{self.url}@{self.version}"
        self.dim = int(head["dim"])
        self.clips = self._collection("clips")
        self.texts = self._collection("texts") if head.get("texts") else None

    def _collection(self, name: str) -> RemoteCollection:
        table = pa.ipc.open_stream(io.BytesIO(_call(f"{self.url}/api/shard/meta/{name}"))).read_all()
        return RemoteCollection(table, self.info.get(name) or {})

    def part(self, collection: str) -> RemotePart:
        return RemotePart(self, collection)


def shard_info(url: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """What a shard server says of itself: {"info": its index.json, "version", "clips", "texts", "dim"}."""
    try:
        head = json.loads(_call(f"{url.rstrip('/')}/api/shard/info", timeout=timeout))
        head["info"]["checkpoint"]["hash"]
        return head
    except (ValueError, KeyError, TypeError):
        raise SlsearchError(f"{url}: not a shard server's answer (run `slsearch serve INDEX --shard-api` there)") from None


def remote_version(url: str) -> str | None:
    """The version a shard serves now (for following it), or None when it does not answer."""
    try:
        return shard_info(url, VERSION_TIMEOUT_S)["version"]
    except SlsearchError:
        return None


# --- the shard's side: what `slsearch serve --shard-api` answers ------------------------------

def pack_tokens(flat: np.ndarray, counts: np.ndarray) -> bytes:
    counts = np.asarray(counts, "<u4")
    return struct.pack("<I", len(counts)) + counts.tobytes() + np.asarray(flat, "<f2").tobytes()


def unpack_tokens(raw: bytes, n: int, dim: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        (m,) = struct.unpack_from("<I", raw)
        counts = np.frombuffer(raw, "<u4", m, 4).astype(np.int64)
        flat = np.frombuffer(raw, "<f2", offset=4 + 4 * m).astype(np.float32)
        if m != n or flat.size != int(counts.sum()) * dim:
            raise ValueError
    except (struct.error, ValueError):
        raise SlsearchError(f"{where}: the shard's token answer is malformed") from None
    return flat.reshape(-1, dim), counts


def meta_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()
