"""Errors that reach the user as one line.

Every error slsearch raises on purpose derives from `SlsearchError`; the CLI prints
its message and exits with code 2 instead of showing a traceback.
"""

from __future__ import annotations

from pathlib import Path


class SlsearchError(Exception):
    """An expected failure with a message meant for the user."""


class InputError(SlsearchError):
    """A file the user gave could not be used: names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
