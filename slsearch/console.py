"""Shared terminal output: one rich Console (stderr for progress and errors) and progress bars."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import contextlib
import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from slsearch.text import printable

console = Console()  # results (tables)
err_console = Console(stderr=True)  # progress, warnings, errors


def plain(text: object) -> Text:
    """Text a user typed or a file held (a query, a path, a sentence, a clip id), ready for rich: shown as
    it is, never read as markup ("[/]", "[bold]") or emoji codes (":sun:"); control characters escaped."""
    return Text(printable(text))


def labelled(label: str, style: str, message: object) -> Text:
    """Our own styled label, then user or data text as plain text: `labelled("error:", "red", e)`."""
    return Text.assemble((label, style), " ", printable(message))


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Inside the block, whatever would go to stdout (the results console's tables included) goes to
    stderr, so a command's `--json` output can be the only thing on stdout."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def progress_bar(transient: bool = False) -> Progress:
    """A bar with count, rate and ETA; draws on stderr so `--json` output on stdout stays clean."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}", markup=False),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


@contextmanager
def drawn_progress(transient: bool = True) -> Iterator[Callable]:
    """A `slsearch.progress.Progress` that draws bars on stderr. A finished task leaves the live display;
    unless `transient`, it leaves one line behind (what, how many, how long). Where stderr is not a
    terminal (a log file), each task prints a line at most once a minute instead of a bar."""
    bar = progress_bar(transient=True)
    live = err_console.is_terminal
    with bar:
        def start(task: str, total: int) -> Callable[..., None]:
            task_id = bar.add_task(escape(printable(task)), total=total, rate="", visible=live)  # may name a file
            t0 = last_line = time.perf_counter()
            done = 0

            def advance(n: int, status: str = "") -> None:
                nonlocal done, last_line
                done += n
                bar.update(task_id, advance=n, **({"rate": status} if status else {}))
                now = time.perf_counter()
                if not live and now - last_line > 60 and done < total:
                    eta = (now - t0) / max(done, 1) * (total - done)
                    err_console.print(plain(f"{task}: {done}/{total} {status} eta {eta:.0f}s"))
                    last_line = now
                if done >= total:
                    bar.remove_task(task_id)
                    if not transient:
                        err_console.print(plain(f"{task}: {done}/{total} in {now - t0:.1f}s {status}".rstrip()))

            return advance

        yield start


def progress_if(draw: bool, transient: bool = True):
    """`drawn_progress()` when `draw`, else a context that gives None (silent: JSON output, tests)."""
    return drawn_progress(transient) if draw else contextlib.nullcontext(None)


def show_training_event(kind: str, payload) -> None:
    """Draw what `slsearch.training.loop.train` reports: an epoch's dev row as a table, notes as lines."""
    if kind != "epoch":
        err_console.print(plain(payload))
        return
    from rich.table import Table

    if "BLEU-4" in payload:  # translate stage
        cols = {"loss": "loss", "BLEU-1": "BLEU-1", "BLEU-4": "BLEU-4", "chrF": "chrF", "ROUGE-L": "ROUGE-L",
                "clips_per_s": "clips/s", "train_minutes": "min"}
    else:
        cols = {"loss": "loss", "cico_t2v_R@1": "T2V R@1", "cico_v2t_R@1": "V2T R@1",
                "global_t2v_R@1": "T2V R@1 glob", "global_v2t_R@1": "V2T R@1 glob",
                "clips_per_s": "clips/s", "train_minutes": "min"}
    table = Table(title=f"dev, epoch {payload['epoch']}", title_justify="left")
    for header in cols.values():
        table.add_column(header, justify="right")
    table.add_row(*[f"{payload[c]:.3f}" if c == "loss" else f"{payload[c]:.1f}" for c in cols])
    console.print(table)
