"""The live index: the version of the index folder that requests are answered from, replaced without a
restart when `slsearch index --add` or `slsearch remove` commits a new one.

The index folder is a symlink to a version folder (`.NAME.vN`, slsearch.index.store). `LiveIndex.current()`
looks where the link points at most once every `poll_s` seconds (one readlink); when it names another
version, a background thread loads that version into a new `Searcher` (reusing the loaded model when the
checkpoint hash is the same) and then swaps it in with one reference assignment. A request takes the
current `IndexVersion` once, when it starts, and uses only that object, so a request in flight finishes
on the version it started with; an old version is freed when its last request is done (`load_index`
pinned its files, so a writer pruning it meanwhile does no harm). A version that fails to load is
logged and the server keeps answering from the one it has.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from slsearch.errors import SlsearchError
from slsearch.index.search import Searcher, version_name
from slsearch.index.shards import checkpoint_hash, version_key
from slsearch.index.store import TextColumn
from slsearch.rank import RetrievalModel

log = logging.getLogger("slsearch.serve")

RETRY_FAILED_S = 30.0  # a version that failed to load is tried again after this long (if still current)


class RowOfClipId:
    """clip id -> row, by binary search over the ids' sorted order (8 bytes a clip; a dict of the ids
    would hold every id again as a Python string, ~100 bytes a clip)."""

    def __init__(self, ids: TextColumn):
        self.ids = ids
        self.order = pc.sort_indices(ids.values).to_numpy()

    def get(self, clip_id: str) -> int | None:
        i = bisect.bisect_left(self.order, clip_id, key=lambda row: self.ids[int(row)])
        if i < len(self.order) and self.ids[int(self.order[i])] == clip_id:
            return int(self.order[i])
        return None


@dataclass
class IndexVersion:
    """One loaded version (of an index, or of every shard of a set): its Searcher and a clip-id ->
    row lookup."""

    searcher: Searcher
    key: str  # the resolved version folder(s) the link(s) named when it was loaded (shards.version_key)
    name: str  # "v3"; "NAME@v3 NAME@v1" for a shard set
    row_of: "RowOfClipId"

    @classmethod
    def load(cls, index_dir: Path, model: RetrievalModel | str | Path | None, threads: int | None,
             score: str | None = None) -> "IndexVersion":
        searcher = Searcher(index_dir, model=model, threads=threads, score=score)
        return cls(searcher, searcher.version_key, searcher.version, RowOfClipId(searcher.clips.column("id")))

    @property
    def info(self) -> dict[str, Any]:
        return self.searcher.info

    @property
    def clips(self) -> int:
        return self.searcher.clip_count()

    @property
    def sentences(self) -> int:
        return self.searcher.sentence_count()

    def rows(self, ids: list[str]) -> list[dict[str, Any] | None]:
        """The metadata rows of these clip ids (None for an id this version lacks), read in one take."""
        found = [self.row_of.get(i) for i in ids]
        picked = [r for r in found if r is not None]
        table = self.searcher.clips.meta_rows(picked) if picked else []
        rows = iter(table)
        return [next(rows) if r is not None else None for r in found]

    def row(self, clip_id: str) -> dict[str, Any] | None:
        return self.rows([clip_id])[0]


class LiveIndex:
    """The current IndexVersion of an index folder, following its commits (see the module notes)."""

    def __init__(self, index_dir: str | Path, model: RetrievalModel | str | Path | None = None,
                 threads: int | None = 1, poll_s: float = 1.0, score: str | None = None):
        self.index_dir = Path(index_dir)
        self.model_arg = model if not isinstance(model, RetrievalModel) else None  # a path the user gave
        self.threads, self.poll_s, self.score = threads, poll_s, score
        self._current = IndexVersion.load(self.index_dir, model, threads, score)  # a broken index fails here, at start
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None
        self._next_check = time.monotonic() + poll_s
        self._failed: tuple[str, float] | None = None  # (target, when) of the last version that failed
        self.reloads = 0
        self.reload_failures = 0
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return self.index_dir.name

    def current(self) -> IndexVersion:
        """The version to answer from; starts loading a newer one when the link moved (at most every poll_s)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.poll_s
            self.check()
        return self._current

    def check(self, wait: bool = False) -> bool:
        """Start loading the version the link names if it is not the current one; True when one started.
        wait=True loads in this thread and returns once it is swapped in (or failed)."""
        target = version_key(self.index_dir)  # a shard set: every shard's link
        if target is None or target == self._current.key or not all(
                os.path.isdir(t) for t in target.split("|") if not t.startswith(("http://", "https://"))):
            return False
        if self._failed is not None and self._failed[0] == target and \
                time.monotonic() - self._failed[1] < RETRY_FAILED_S:
            return False
        with self._lock:
            if self._loading is not None and self._loading.is_alive():
                if wait:
                    self._loading.join()
                return False
            thread = threading.Thread(target=self._reload, args=(target,), name="slsearch-index-reload", daemon=True)
            self._loading = thread
            thread.start()
        if wait:
            thread.join()
        return True

    def _model_for(self) -> RetrievalModel | str | Path | None:
        """The loaded model when the new version was built with the same checkpoint, else what to load."""
        current = self._current.searcher.model
        wanted = checkpoint_hash(self.index_dir)  # None: unreadable now; Searcher reads and checks it properly
        return current if wanted in (None, current.hash) else self.model_arg

    def _reload(self, target: str) -> None:
        t0 = time.perf_counter()
        try:
            new = IndexVersion.load(self.index_dir, self._model_for(), self.threads, self.score)
        except (SlsearchError, OSError, ValueError, RuntimeError, MemoryError) as e:
            self.reload_failures += 1
            self.last_error = str(e).replace(str(self.index_dir), self.name)
            self._failed = (target, time.monotonic())
            log.warning("index %s: version %s not loaded, still answering from %s: %s", self.name,
                        " ".join(version_name(Path(t)) for t in target.split("|")), self._current.name,
                        self.last_error)
            return
        old = self._current
        if new.key != old.key:
            self._current = new  # the swap: one reference assignment; requests hold the version they took
            self.reloads += 1
            self._failed = None
            log.info("index %s: now answering from %s (%d clips; was %s), loaded in %.2f s", self.name, new.name,
                     new.clips, old.name, time.perf_counter() - t0)
