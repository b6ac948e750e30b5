"""The server's limits, and the worker pools that keep slow work off the event loop.

Text queries, uploads (pose extraction, translation, clip search) and skeleton drawing each run in a
pool of their own: at most `size` at once, the rest wait their turn, and a request that has not been
answered within the pool's time limit gets 503 with one sentence (its thread finishes on its own and
its answer is dropped). So a queue of uploads can never take the threads that text search needs, and
a burst of anything waits rather than starving the rest.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import anyio
from fastapi import HTTPException

T = TypeVar("T")


@dataclass
class ServeSettings:
    """What `slsearch serve` is allowed to do; the defaults suit a small machine."""

    max_upload_mb: float = 200.0  # request bodies over this get 413
    max_k: int = 100  # results per query
    search_timeout_s: float = 30.0  # a text query, waiting for its turn included
    upload_timeout_s: float = 300.0  # extraction + search or translation of an uploaded clip
    render_timeout_s: float = 120.0  # drawing one skeleton preview
    search_workers: int = max(1, min(4, os.cpu_count() or 1))  # text queries at once (1 torch thread each)
    upload_workers: int = 1  # uploads processed at once: more queue (extraction is CPU-bound)
    threads: int | None = 1  # torch/FAISS threads per request (slsearch.index.search.DEFAULT_THREADS)
    score: str | None = None  # what searches rank by (Searcher; None: the best the model has)
    poll_s: float = 1.0  # how often the index link is looked at for a new version
    preview_dir: str | Path | None = None  # skeleton previews (default: $SLSEARCH_CACHE/previews)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))


class Pool:
    """Run blocking calls in threads: at most `size` at once, each answered within `timeout_s`."""

    def __init__(self, name: str, size: int, timeout_s: float):
        self.name, self.size, self.timeout_s = name, max(1, size), timeout_s
        self.limiter = anyio.CapacityLimiter(self.size)  # threads handed out (the queue waits here)
        self.slots = threading.BoundedSemaphore(self.size)  # work running (a timed-out thread keeps its slot)
        self.in_flight = 0  # requests in this pool: waiting for a thread or running
        self.running = 0

    async def run(self, fn: Callable[[], T], what: str) -> T:
        deadline = time.monotonic() + self.timeout_s

        def guarded() -> T:
            if not self.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError  # its request has been answered with 503 already
            self.running += 1
            try:
                return fn()
            finally:
                self.running -= 1
                self.slots.release()

        self.in_flight += 1
        try:
            with anyio.fail_after(self.timeout_s):
                return await anyio.to_thread.run_sync(guarded, limiter=self.limiter, abandon_on_cancel=True)
        except TimeoutError:
            raise HTTPException(503, f"{what} took longer than this server's limit of {self.timeout_s:g} s; "
                                     "try again later.", headers={"Retry-After": "5"}) from None
        finally:
            self.in_flight -= 1
