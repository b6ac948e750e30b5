"""The `slsearch` command line: a thin shell over the library; each command calls one function."""

from __future__ import annotations

import json
from typing import Optional

import typer
import typer.core

from slsearch import __version__
from slsearch.console import console, err_console
from slsearch.errors import SlsearchError



class _Group(typer.core.TyperGroup):
    """Turns SlsearchError from any command into a one-line message and exit code 2.

    Done here rather than around `app()` so that tests through typer's CliRunner see the same.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SlsearchError as e:
            err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    help="slsearch: search sign-language video with text, and text with video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit; never a traceback for expected failures."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"slsearch {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """slsearch: search sign-language video with text, and text with video."""


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show versions of torch/faiss/mediapipe, GPU availability and thread counts."""
    from rich.table import Table

    from slsearch.info import system_info

    data = system_info()
    if as_json:
        print(json.dumps(data))
        return
    table = Table(title="slsearch info", show_header=False)
    for k, v in data.items():
        table.add_row(k, str(v))
    console.print(table)


# --- commands ---------------------------------------------------------------------------------

def print_batch_summary(summary, title: str) -> None:
    """A batch's counts as a table, then every failure on its own line."""
    from rich.table import Table

    d = summary.as_dict()
    table = Table(title=title, show_header=False)
    for k in ("total", "ok", "cached", "failed", "frames", "seconds", "frames_per_second"):
        table.add_row(k, str(d[k]))
    for k, v in summary.extra.items():
        table.add_row(k, str(v))
    console.print(table)
    for line in summary.failures:
        console.print(f"[red]failed[/red] {line}", highlight=False, soft_wrap=True)


@app.command()
def extract(
    paths: list[str] = typer.Argument(..., help="Videos, frame folders, pose files, folders or manifests."),
    out: str = typer.Option(..., "--out", help="Folder for one .npz pose per clip and manifest.jsonl."),
    workers: Optional[int] = typer.Option(None, help="Worker processes for MediaPipe (default: all cores)."),
    fps: float = typer.Option(25.0, help="Resample every clip to this frame rate (0 keeps the source rate)."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any clip fails."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Extract MediaPipe Holistic poses (cached) from videos into .npz files and a manifest."""
    from slsearch.data.extract_corpus import extract_corpus

    summary = extract_corpus(paths, out, workers=workers, fps=fps or None, progress=not as_json)
    if as_json:
        print(json.dumps(summary.as_dict()))
    else:
        print_batch_summary(summary, "slsearch extract")
    if summary.ok == 0 or (strict and summary.failures):
        raise typer.Exit(1)


def run() -> None:
    """Console-script entry point."""
    app()
