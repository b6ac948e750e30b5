"""Errors that reach the user as one line.

Every error slsearch raises on purpose derives from `SlsearchError`; the CLI prints
its message and exits with code 2 instead of showing a traceback. An `OSError` (disk full, read-only
file system, permissions) is the environment's failure: one line (`describe_os_error`) and exit code 1.
"""

from __future__ import annotations

import errno as _errno
import os
from pathlib import Path

# Exit codes of the `slsearch` command (README, "Errors and exit codes").
EXIT_ENVIRONMENT = 1  # the machine said no (OSError: disk full, read-only, permissions; out of memory)
EXIT_INPUT = 2  # usage and bad input: SlsearchError (InputError included), click's usage errors
EXIT_INTERNAL = 3  # an exception slsearch did not expect: a bug
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class SlsearchError(Exception):
    """An expected failure with a message meant for the user."""


class InputError(SlsearchError):
    """A file the user gave could not be used: names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def describe_os_error(e: OSError) -> str:
    """'PATH: reason (ERRNO)' for an OSError, e.g. 'indexes/news/.tmp: No space left on device (ENOSPC)';
    both paths of a failed rename or link; just the reason when the error names no file."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno in _errno.errorcode:
        reason += f" ({_errno.errorcode[e.errno]})"
    paths = [os.fsdecode(f) if isinstance(f, bytes) else str(f) for f in (e.filename, e.filename2) if f is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason
