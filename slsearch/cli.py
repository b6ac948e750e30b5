"""The `slsearch` command line: a thin shell over the library; each command calls one function."""

from __future__ import annotations

import json
from typing import Optional

import typer

from slsearch import __version__
from slsearch.console import console, err_console
from slsearch.errors import SlsearchError

app = typer.Typer(
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
    version: Optional[bool] = typer.Option(None, "--version", callback=_version_callback, is_eager=True,
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

def run() -> None:
    """Entry point that turns SlsearchError into a one-line message (exit 2)."""
    try:
        app()
    except SlsearchError as e:
        fail(str(e))
