"""`slsearch remove`: drop clips from an index without re-embedding anything.

FAISS drops their ids (an HNSW graph is rebuilt from its stored vectors), the metadata loses their
rows, sentences no remaining clip carries leave the text index, and the token store keeps their rows
unreferenced until most of it is unreferenced, when it is rewritten compacted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from slsearch.errors import SlsearchError
from slsearch.index import faiss_index
from slsearch.index.shards import is_shard_set, remove_from_set
from slsearch.index.store import CLIP_SCHEMA, TEXT_SCHEMA, Collection, IndexWriter, StoredIndex

COMPACT_WHEN_UNUSED = 0.5  # rewrite a token store once over half its rows belong to removed items


def _carry_tokens(writer: IndexWriter, collection: str, rows: list[dict[str, Any]], prev: StoredIndex) -> None:
    """Token segments for the rows that stay: hard links to the old segments, or, once most of their
    rows belong to removed items, one compacted segment (the rows' offsets are rewritten)."""
    coll = prev.clips if collection == "clips" else prev.texts
    store = prev.token_store(collection)
    stored = sum(len(seg) for seg in store.segments)
    used = sum(r["token_count"] for r in rows)
    if used >= (1 - COMPACT_WHEN_UNUSED) * stored:
        writer.keep_token_files(collection, coll.token_files)
        return
    segment, seg_writer = writer.new_token_segment(collection, store.dim)
    for start in range(0, len(rows), 4096):  # bounded memory: a block of items at a time
        block = rows[start:start + 4096]
        counts = np.array([r["token_count"] for r in block])
        flat = store.gather_flat(np.array([r["token_segment"] for r in block]),
                                 np.array([r["token_offset"] for r in block]), counts)
        ends = np.cumsum(counts)
        for r, end, n in zip(block, ends.tolist(), counts.tolist()):
            r["token_segment"], r["token_offset"] = segment, seg_writer.append(flat[end - n:end])[0]


def remove_clips(index_dir: str | Path, ids: Sequence[str]) -> dict[str, Any]:
    """Drop clips by id from an index (no re-embedding); sentences no clip carries any more go too."""
    t0 = time.perf_counter()
    if not ids:
        raise SlsearchError("give at least one clip id to remove")
    if is_shard_set(index_dir):  # from whichever shards hold them
        return remove_from_set(index_dir, list(ids))
    with IndexWriter(index_dir) as writer:
        prev = writer.previous
        if prev is None:
            raise SlsearchError(f"{index_dir}: no index here")
        rows = prev.clips.meta.to_pylist()
        present = {r["id"] for r in rows}
        unknown = [i for i in ids if i not in present]
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise SlsearchError(f"{index_dir}: no clip with id {shown}")
        drop = set(ids)
        keep_rows = [r for r in rows if r["id"] not in drop]
        if not keep_rows:
            raise SlsearchError(f"{index_dir}: removing every clip would leave an empty index; delete the folder instead")
        index = faiss_index.remove(prev.clips.index, np.array([r["faiss_id"] for r in rows if r["id"] in drop]))
        _carry_tokens(writer, "clips", keep_rows, prev)
        texts = None
        if prev.texts is not None:
            wanted = {r["text"] for r in keep_rows if r["text"]}
            text_rows = prev.texts.meta.to_pylist()
            gone = np.array([r["faiss_id"] for r in text_rows if r["text"] not in wanted], dtype=np.int64)
            kept = [r for r in text_rows if r["text"] in wanted]
            if kept:
                _carry_tokens(writer, "texts", kept, prev)
                tindex = faiss_index.remove(prev.texts.index, gone) if len(gone) else prev.texts.index
                texts = Collection(tindex, pa.Table.from_pylist(kept, schema=TEXT_SCHEMA),
                                   writer.token_files("texts"), dict(prev.texts.info))
        clips = Collection(index, pa.Table.from_pylist(keep_rows, schema=CLIP_SCHEMA),
                           writer.token_files("clips"), dict(prev.clips.info))
        info = {k: v for k, v in prev.info.items() if k not in ("clips", "texts", "format_version", "updated")}
        info["history"] = info.get("history", []) + [{"action": "remove", "clips": len(drop)}]
        writer.commit(info, clips, texts)
    return {"index": str(index_dir), "removed": len(drop), "clips_total": len(keep_rows),
            "texts_total": len(texts) if texts is not None else 0, "seconds": round(time.perf_counter() - t0, 2)}
