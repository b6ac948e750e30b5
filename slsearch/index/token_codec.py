"""Compressed token states: one FAISS codec per collection, trained once, kept in the index folder.

The CiCo re-rank reads the token states of ~100 FAISS candidates per query; stored as float16 they
are d x 2 bytes a token (14.4 GB at 1M clips of the default model). A codec stores each token as a
few bytes of codes instead and decodes only the rows a query reads (ColBERTv2/PLAID serve late
interaction the same way, from a centroid id plus a quantised residual).

    --tokens fp16      float16 rows, exact (the default)
    --tokens pq        ColBERTv2-style: a coarse centroid id (256 centroids, 1 byte) + a product quantiser
                       of the residual, d/4 bytes (2 bits a dimension): 1 + d/4 bytes a token, ~8x smaller
    --tokens pq-small  the same with d/8 bytes of residual codes (1 bit a dimension), ~15x smaller
    --tokens opq       an OPQ rotation + product quantiser, d/4 bytes (slower to train)
    --tokens FACTORY any FAISS factory string whose index has a standalone codec (sa_encode/sa_decode),
                     e.g. "OPQ16,PQ16" or "IVF1024,PQ32"

The codec is trained once, on a sample of the first build's token states, and saved in the index
folder (`tokens.codec.faiss`, `text_tokens.codec.faiss`); `index --add` and `remove` encode new or
compacted rows with it, so every row of a collection is decoded by the same codec. index.json
records its factory string, code size and the file's SHA-256: a codec file that is not the one the
index was built with, or not a codec of the recorded shape, is refused when the index is loaded.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from slsearch.errors import InputError, SlsearchError

FP16 = "fp16"
# named codecs -> FAISS factory string for token dim d (the numbers: benchmarks/RESULTS.md, token store)
NAMED = {
    "pq": lambda d: f"IVF256,PQ{d // 4}",
    "pq-small": lambda d: f"IVF256,PQ{d // 8}",
    "opq": lambda d: f"OPQ{d // 4},PQ{d // 4}",
}
# token states sampled to train a codec: 16k and 50k gave the same reconstruction (cosine 0.987 for
# pq on the demo model), training time grows with it (benchmarks/RESULTS.md, token store)
TRAIN_TOKENS = 16384
# FAISS k-means wants >= 39 points a centroid (256 centroids); a smaller first build is padded with
# jittered copies of its rows so the codec still trains (and FAISS stays quiet)
MIN_TRAIN_TOKENS = 39 * 256
ENCODE_BLOCK = 65536  # rows per sa_encode call when a segment is encoded
MAX_CODEC_BYTES = 256 << 20  # a codec is rotation + centroids: well below this


def codec_file_name(token_base: str) -> str:
    """`tokens` -> `tokens.codec.faiss`."""
    return f"{token_base}.codec.faiss"


def factory_for(spec: str, dim: int) -> str | None:
    """The FAISS factory string for a --tokens value and token dim; None for fp16. Raises SlsearchError
    for a value that names no codec or a factory string FAISS cannot build as a codec for `dim`."""
    if not isinstance(spec, str) or not spec.strip():
        raise SlsearchError(f"--tokens takes fp16, {', '.join(NAMED)} or a FAISS factory string, not {spec!r}")
    spec = spec.strip()
    if spec.lower() == FP16:
        return None
    if spec.lower() in NAMED:
        if dim % 8:
            raise SlsearchError(f"--tokens {spec} needs a token dim divisible by 8, the model's is {dim}; "
                                "pass a FAISS factory string")
        return NAMED[spec.lower()](dim)
    try:
        index = faiss.index_factory(int(dim), spec)
    except RuntimeError as e:
        raise SlsearchError(f"--tokens {spec}: not a FAISS factory string for {dim}-dimensional token states "
                            f"({_faiss_reason(e)}); use fp16, {', '.join(NAMED)} or e.g. "
                            f"PQ{max(1, dim // 8)}") from None
    try:
        index.sa_code_size()
    except RuntimeError:
        raise SlsearchError(f"--tokens {spec}: this FAISS index has no standalone codec (sa_encode); "
                            "use a PQ, OPQ+PQ, IVF+PQ, RQ or SQ factory string") from None
    return spec


def _faiss_reason(e: BaseException) -> str:
    """FAISS's message without its C++ function and source location."""
    return re.sub(r"Error in .*? at \S+:\d+: ", "", " ".join(str(e).split()))[-200:]


class TokenCodec:
    """A trained FAISS codec: (n, d) float32 <-> (n, code_size) uint8. Immutable once trained."""

    def __init__(self, index: faiss.Index, factory: str, data: bytes, trained_on: int):
        self.index, self.factory, self.data, self.trained_on = index, factory, data, trained_on
        self.dim = int(index.d)
        self.code_size = int(index.sa_code_size())
        self.sha256 = hashlib.sha256(data).hexdigest()

    @classmethod
    def train(cls, factory: str, sample: np.ndarray, seed: int = 0) -> "TokenCodec":
        """Train on (n, d) token states (a sample of the collection)."""
        x = np.ascontiguousarray(sample, dtype=np.float32)
        if x.ndim != 2 or not len(x):
            raise SlsearchError(f"a token codec needs token states to train on, got an array of shape {x.shape}")
        n = len(x)
        if n < MIN_TRAIN_TOKENS:  # a tiny first build: jittered copies, so k-means has its points
            rng = np.random.default_rng(seed)
            reps = -(-MIN_TRAIN_TOKENS // n)
            noise = rng.standard_normal((n * reps, x.shape[1])).astype(np.float32)
            x = np.tile(x, (reps, 1)) + 1e-3 * float(x.std() or 1.0) * noise
        index = faiss.index_factory(x.shape[1], factory)
        index.train(x)
        data = faiss.serialize_index(index).tobytes()
        return cls(index, factory, data, n)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, code_size) uint8."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not len(x):
            return np.zeros((0, self.code_size), np.uint8)
        return self.index.sa_encode(x)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(n, code_size) uint8 -> (n, d) float32."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if not len(codes):
            return np.zeros((0, self.dim), np.float32)
        return self.index.sa_decode(codes)

    def describe(self, file: str) -> dict[str, Any]:
        """What index.json records of this codec."""
        return {"factory": self.factory, "file": file, "code_size": self.code_size, "dim": self.dim,
                "sha256": self.sha256, "trained_on": self.trained_on}

    def write(self, path: Path) -> None:
        Path(path).write_bytes(self.data)

    @classmethod
    def load(cls, path: Path, record: dict[str, Any], dim: int, where: str | Path) -> "TokenCodec":
        """The codec file index.json records, checked: its bytes (SHA-256), then its shape. Any mismatch
        is one InputError naming the index and the file."""
        path = Path(path)

        def bad(reason: str) -> InputError:
            return InputError(where, f"token codec {path.name} {reason}; the index is damaged, rebuild it")

        if path.stat().st_size > MAX_CODEC_BYTES:
            raise bad(f"is over {MAX_CODEC_BYTES >> 20} MiB, not a token codec")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise bad(f"is not the codec the index was built with (its SHA-256 differs from index.json's "
                      f"{record['sha256'][:12]}…)")
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8).copy())
            code_size = int(index.sa_code_size())
        except RuntimeError as e:
            raise bad(f"is not a readable FAISS codec ({_faiss_reason(e)})") from None
        if index.d != dim or code_size != record["code_size"] or not index.is_trained:
            raise bad(f"holds a {'trained' if index.is_trained else 'untrained'} codec of {index.d} dimensions and "
                      f"{code_size}-byte codes, index.json says {dim} and {record['code_size']}")
        return cls(index, record["factory"], data, int(record.get("trained_on") or 0))


def sample_rows(arrays: list[np.ndarray], limit: int = TRAIN_TOKENS, seed: int = 0) -> np.ndarray:
    """Up to `limit` rows drawn evenly at random from (rows, d) arrays (memory-mapped segments), float32."""
    sizes = np.array([len(a) for a in arrays], dtype=np.int64)
    total = int(sizes.sum())
    if total <= limit:
        return np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays]) if total else \
            np.zeros((0, arrays[0].shape[1] if arrays else 0), np.float32)
    pick = np.sort(np.random.default_rng(seed).choice(total, limit, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    seg = np.searchsorted(starts, pick, side="right") - 1
    return np.concatenate([np.asarray(arrays[s][pick[seg == s] - starts[s]], dtype=np.float32)
                           for s in np.unique(seg)])
