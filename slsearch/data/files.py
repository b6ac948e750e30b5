"""Which files slsearch opens: regular files only, never a FIFO, a device or a socket.

Reading a FIFO blocks until someone writes to it and `/dev/zero` never ends, so a media file or
manifest that is not a regular file (after following symlinks) is refused with an InputError before
anything opens it. Folder scans (manifest.scan_folder) use `kind` to skip such files with a line.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path

from slsearch.errors import InputError

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def kind(path: str | Path) -> str | None:
    """What a path is when it is not a regular file ("a FIFO", "a character device", ...); None for a regular
    file. Follows symlinks; raises InputError for a missing path or a symlink loop."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except ValueError:  # an embedded NUL character
        raise InputError(repr(str(path)), "not a valid path") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(path, "symlink loop (the link leads back to itself)") from None
        if e.errno == errno.ENAMETOOLONG:
            raise InputError(path, "path too long") from None
        raise
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a plain file")


def check_regular_file(path: str | Path) -> Path:
    """`path` if it is a regular file (symlinks followed), else an InputError naming what it is."""
    what = kind(path)
    if what is not None:
        raise InputError(path, f"not a regular file ({what})")
    return Path(path)


def read_utf8(path: Path, what: str) -> str:
    """A text file users write (a manifest, subtitles) as UTF-8, a leading byte-order mark dropped;
    InputError naming the first line that is not UTF-8 (or what the path is, when not a regular file)."""
    data = check_regular_file(path).read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(path, f"line {line} is not UTF-8 text (byte 0x{data[e.start]:02x}); "
                               f"save the {what} as UTF-8") from None

