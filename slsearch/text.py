"""Text a user typed, made fit to search with (`normalise_query`) and to show (`printable`).

A query is judged only after it is normalised, so that a string of zero-width or bidi characters is
the empty query it looks like, and the tokenizer only ever sees valid Unicode text.
"""

from __future__ import annotations

import unicodedata

from slsearch.errors import InputError

MAX_QUERY_CHARS = 2000  # after normalisation; the text tower reads 64 tokens at most anyway


def _preview(text: str, n: int = 40) -> str:
    return repr(text[:n]) + ("..." if len(text) > n else "")


def _join_surrogates(text: str, what: str) -> str:
    """A surrogate pair (text from a UTF-16 source) becomes its character; a lone half is an InputError."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if "\ud800" <= ch <= "\udbff" and i + 1 < len(text) and "\udc00" <= text[i + 1] <= "\udfff":
            out.append(chr(0x10000 + ((ord(ch) - 0xD800) << 10) + ord(text[i + 1]) - 0xDC00))
            i += 2
            continue
        if "\ud800" <= ch <= "\udfff":
            raise InputError(f"{what} {_preview(text)}", f"contains an unpaired surrogate (U+{ord(ch):04X} at "
                                                         f"character {i + 1}): not valid Unicode text (invalid "
                                                         "UTF-8 in the input?)")
        out.append(ch)
        i += 1
    return "".join(out)


def normalise_query(text: object, max_chars: int | None = MAX_QUERY_CHARS, what: str = "query") -> str:
    """`text` as searched: NFC; line breaks, tabs and other whitespace as one space; control characters
    (Unicode Cc) and format characters (Cf: zero-width space/joiners, BOM, soft hyphen, bidi controls)
    removed; no space at either end. A valid surrogate pair is joined into its character.

    Raises InputError (naming `what`) for a non-string, an unpaired surrogate, a result longer than
    `max_chars` characters (None: no limit) or an empty result.
    """
    if not isinstance(text, str):
        raise InputError(what, f"a {what} is text (str), not {type(text).__name__}")
    if max_chars is not None and len(text) > 20 * max_chars:  # no work on a megabyte of junk
        raise InputError(f"{what} {_preview(text)}", f"too long ({len(text):,} characters; at most "
                                                     f"{max_chars:,} after normalisation)")
    if text.isascii() and text.isprintable():  # the usual case: nothing to remove or compose
        out = " ".join(text.split())
    else:
        if any("\ud800" <= ch <= "\udfff" for ch in text):
            text = _join_surrogates(text, what)
        kept = "".join(" " if ch.isspace() else ch for ch in text
                       if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))
        out = " ".join(unicodedata.normalize("NFC", kept).split())
    if not out:
        raise InputError(f"{what} {_preview(text)}", f"empty {what} (spaces, control, zero-width and bidi "
                         "characters do not count)" + ("; type some words to search for" if what == "query" else ""))
    if max_chars is not None and len(out) > max_chars:
        raise InputError(f"{what} {_preview(out)}", f"too long ({len(out):,} characters; at most {max_chars:,})")
    return out


_VISIBLE = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def printable(text: object) -> str:
    """`text` safe to write to a terminal: control characters (escape sequences included) and unpaired
    surrogates shown as backslash escapes. Rich markup is a separate matter (`slsearch.console.plain`)."""
    s = str(text)
    if s.isprintable():
        return s
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates -> \udcff
    return "".join(_VISIBLE.get(ord(ch), f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
                   if unicodedata.category(ch) == "Cc" else ch for ch in s)
