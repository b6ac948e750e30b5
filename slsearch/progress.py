"""How library functions report progress without drawing anything.

A `Progress` is a callback `start(task, total) -> advance`, and `advance(n, status="")` says that n more
of the task's `total` items are done (`status`: a short note such as a loss or a rate). Library
functions take `progress: Progress | None` (None: silent); the CLI passes
`slsearch.console.drawn_progress()`, which draws bars on stderr, and tests or servers pass their own.
"""

from __future__ import annotations

from typing import Callable, Protocol


class Advance(Protocol):
    def __call__(self, n: int, status: str = "") -> None: ...


Progress = Callable[[str, int], Advance]


def _nothing(n: int, status: str = "") -> None:
    return None


def track(progress: Progress | None, task: str, total: int) -> Advance:
    """The `advance` of one task, or a no-op without a progress callback."""
    return progress(task, total) if progress else _nothing
