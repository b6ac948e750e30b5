"""Fault battery, part one (issue 21): hostile queries through the Python API and the CLI, the CLI's one
error boundary (exit codes 2 / 1 / 3 / 130, one line, --debug shows the traceback), and user or data text
that is printed as text, never read as rich markup."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
import traceback

import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.errors import InputError, SlsearchError
from slsearch.text import MAX_QUERY_CHARS, normalise_query, printable

runner = CliRunner()

# --- queries: normalised, then judged ----------------------------------------------------------------

GOOD = [  # (typed, searched)
    ("wetter  morgen", "wetter morgen"),
    ("\tregen\n\nsonne\r\n", "regen sonne"),
    ("s\u00fcden", "s\u00fcden"), ("su\u0308den", "s\u00fcden"),  # NFD -> NFC
    ("re\u200bgen\u200c \u200dsonne\ufeff", "regen sonne"),  # ZWSP, ZWNJ, ZWJ, BOM
    ("\u202eregen\u202c \u2067sonne\u2069 \u200f", "regen sonne"),  # bidi override / isolate / RLM
    ("reg\x00en\x1b[31m\x7f", "regen[31m"),  # control characters, an escape sequence's ESC
    ("regen\u00a0\u3000\u2028sonne", "regen sonne"),  # NBSP, ideographic space, line separator
    ("x\ud83d\ude00y", "x\U0001F600y"),  # a valid surrogate pair (UTF-16 source) is one character
    ("[/] [bold]regen :sun:", "[/] [bold]regen :sun:"),  # markup is text: kept as typed
    ("天气 🌧️ 123", "天气 🌧️ 123"),
]
BAD = [  # (typed, words of the InputError)
    ("", "empty query"), ("   \t\n", "empty query"),
    ("\u200b\u200c\u200d\ufeff", "empty query"), ("\u202e\u2066\u200f", "empty query"),
    ("\x00\x01\x1b", "empty query"),
    ("regen\ud800", "unpaired surrogate (U+D800"), ("\udcff", "unpaired surrogate (U+DCFF"),
    ("\ude00\ud83d", "unpaired surrogate"),  # the halves in the wrong order
    ("x" * (MAX_QUERY_CHARS + 1), f"at most {MAX_QUERY_CHARS:,}"), ("regen " * 2000, "too long"),
    ("x" * 10**6, "too long"),
]


@pytest.mark.parametrize("typed, searched", GOOD)
def test_normalise_query_keeps_the_words(typed, searched):
    assert normalise_query(typed) == searched
    assert normalise_query(searched) == searched  # idempotent


@pytest.mark.parametrize("typed, words", BAD)
def test_normalise_query_refuses_with_an_input_error(typed, words):
    with pytest.raises(InputError, match=words.replace("(", r"\(").replace("+", r"\+")) as e:
        normalise_query(typed)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300  # one short line, whatever was typed


def test_normalise_query_refuses_what_is_not_text():
    for value in (None, 3, b"regen", ["regen"]):
        with pytest.raises(InputError, match="is text"):
            normalise_query(value)


def test_printable_escapes_control_characters_and_lone_surrogates():
    assert printable("a\x1b[31mb\nc\udcff") == "a\\x1b[31mb\\nc\\udcff"
    assert printable("[/] schön") == "[/] schön"


# --- a small index whose clip ids and sentences are themselves hostile --------------------------------

HOSTILE_IDS = ["[/]", "[bold]b0", "c:sun:", "[link=http://x]d"]


@pytest.fixture(scope="module")
def hostile_index(tiny_corpus, tiny_checkpoint, tmp_path_factory):
    from slsearch.data.manifest import read_manifest, write_manifest
    from slsearch.index.build import build_index

    clips = read_manifest(tiny_corpus[1])
    for i, cid in enumerate(HOSTILE_IDS):
        clips[i] = dataclasses.replace(clips[i], id=cid, text=f"[/]{clips[i].text} [bold]")
    d = tmp_path_factory.mktemp("hostile")
    manifest = d / "hostile.jsonl"
    write_manifest(clips, manifest)
    build_index([manifest], tiny_checkpoint, d / "idx", progress=None)
    return d / "idx", clips


@pytest.fixture(scope="module")
def searcher(hostile_index):
    from slsearch.index.search import Searcher

    return Searcher(hostile_index[0])


@pytest.mark.parametrize("typed, searched", GOOD)
def test_api_searches_hostile_queries(searcher, typed, searched):
    hits = searcher.search_text(typed, k=3)
    assert len(hits) == 3 and hits[0].rank == 1
    assert [h.id for h in hits] == [h.id for h in searcher.search_text(searched, k=3)]  # the same search


@pytest.mark.parametrize("typed, words", BAD)
def test_api_refuses_hostile_queries_with_input_error(searcher, typed, words):
    with pytest.raises(InputError, match="empty query|unpaired surrogate|too long"):
        searcher.search_text(typed, k=3)
    with pytest.raises(InputError):  # in a batch too
        searcher.search_text(["regen", typed], k=3)


def test_encode_texts_refuses_surrogates_and_empty_sentences(searcher):
    from slsearch import encode_texts

    with pytest.raises(InputError, match="unpaired surrogate"):
        encode_texts(searcher.model.net, ["regen", "sonne\ud800"])
    with pytest.raises(InputError, match="empty sentence"):
        encode_texts(searcher.model.net, ["\u200b\u200b"])
    long = encode_texts(searcher.model.net, ["regen " * 3000])  # corpus sentences have no length cap
    assert long.vectors.shape[0] == 1


CLI_QUERIES = ["[/]", "[bold]regen", "regen [/bold] sonne", ":sun: wind", "[link=file:///etc/passwd]x[/link]",
               "\u202eregen\u202c", "re\u200bgen", "regen\x1b[2J\x07", "天气 🌧️", "[red]"]


@pytest.fixture
def wide_console(monkeypatch):
    """Results tables as wide as they need to be, so that a cell is never folded across lines."""
    from slsearch.console import console

    monkeypatch.setattr(console, "width", 400)


@pytest.mark.parametrize("query", CLI_QUERIES)
def test_cli_table_prints_queries_ids_and_sentences_as_typed(query, hostile_index, wide_console):
    idx, clips = hostile_index
    r = runner.invoke(app, ["query", query, "--index", str(idx), "-k", "10"])
    assert r.exit_code == 0, r.output
    title = next(line for line in r.stdout.splitlines() if line.strip().startswith("t2v:"))
    assert title.strip() == f"t2v: {normalise_query(query)}"  # literally: no markup, no emoji, no ESC
    for cid in HOSTILE_IDS:
        assert cid in r.stdout
    assert "[/]" in r.stdout and "[bold]" in r.stdout and "\x1b" not in r.stdout
    assert "Traceback" not in r.output


def test_cli_queries_file_skips_zero_width_lines_and_names_the_bad_line(hostile_index, tmp_path, wide_console):
    idx, _ = hostile_index
    good = tmp_path / "q.txt"
    good.write_text("regen\n\u200b\u200d\n# a comment\n[/]sonne\n", encoding="utf-8")
    r = runner.invoke(app, ["query", "--queries", str(good), "--index", str(idx), "--json"])
    assert r.exit_code == 0, r.output
    assert [a["query"] for a in json.loads(r.stdout)] == ["regen", "[/]sonne"]
    bad = tmp_path / "[bold]long.txt"
    bad.write_text("regen\n" + "x" * 3000 + "\n", encoding="utf-8")
    r = runner.invoke(app, ["query", "--queries", str(bad), "--index", str(idx)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert f"error: {bad}: line 2: too long" in r.stderr


@pytest.mark.parametrize("typed, words", BAD[:-1] + [("\udcff\udcfe", "unpaired surrogate")])
def test_cli_hostile_queries_are_one_line_and_exit_2(typed, words, hostile_index):
    r = runner.invoke(app, ["query", typed, "--index", str(hostile_index[0])])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and words in r.stderr
    assert "Traceback" not in r.output and r.stdout == ""


# --- the error boundary --------------------------------------------------------------------------------

def _raise(exc: BaseException):
    def fake(*args, **kwargs):
        raise exc
    return fake


@pytest.mark.parametrize("code, name", [(errno.ENOSPC, "ENOSPC"), (errno.EROFS, "EROFS"),
                                        (errno.EACCES, "EACCES"), (errno.EPERM, "EPERM"), (errno.EIO, "EIO")])
def test_os_errors_are_one_line_with_the_path_and_exit_1(code, name, monkeypatch, tmp_path):
    import slsearch.index.remove

    path = tmp_path / "idx" / ".[/]v3" / "vectors.faiss"
    monkeypatch.setattr(slsearch.index.remove, "remove_clips", _raise(OSError(code, os.strerror(code), str(path))))
    r = runner.invoke(app, ["remove", "a", "--index", str(tmp_path / "idx")])
    assert r.exit_code == 1, r.output
    assert r.stderr == f"error: {path}: {os.strerror(code)} ({name})\n"


def test_os_error_without_a_file_and_out_of_memory_exit_1(monkeypatch, tmp_path):
    import slsearch.index.remove

    for exc, line in [(OSError("the device went away"), "error: the device went away\n"),
                      (PermissionError(errno.EACCES, "Permission denied", "/x", None, "/y"),
                       "error: /x -> /y: Permission denied (EACCES)\n"),
                      (MemoryError(), "error: out of memory\n")]:
        monkeypatch.setattr(slsearch.index.remove, "remove_clips", _raise(exc))
        r = runner.invoke(app, ["remove", "a", "--index", str(tmp_path)])
        assert (r.exit_code, r.stderr) == (1, line)


@pytest.mark.parametrize("exc", [RuntimeError("boom [/] [bold]"), KeyError("token_files"),
                                 AssertionError(), ZeroDivisionError("division by zero"),
                                 ValueError("line one\nline two")])
def test_unexpected_exception_is_one_line_internal_error_exit_3(exc, monkeypatch, tmp_path):
    import slsearch.index.remove

    monkeypatch.setattr(slsearch.index.remove, "remove_clips", _raise(exc))
    r = runner.invoke(app, ["remove", "a", "--index", str(tmp_path)])
    assert r.exit_code == 3, r.output
    assert r.stderr.startswith(f"internal error: {type(exc).__name__}: ") and r.stderr.count("\n") == 1
    assert "run with --debug for the traceback; please report it" in r.stderr
    assert str(exc).split("\n")[0] in r.stderr and "Traceback" not in r.output


def test_debug_lets_the_original_exception_through(monkeypatch, tmp_path):
    import slsearch.index.remove

    for exc in (RuntimeError("boom"), OSError(errno.ENOSPC, "No space left on device", "/x"),
                SlsearchError("bad input")):
        monkeypatch.setattr(slsearch.index.remove, "remove_clips", _raise(exc))
        for args, env in ((["--debug"], {}), ([], {"SLSEARCH_DEBUG": "1"})):
            r = runner.invoke(app, [*args, "remove", "a", "--index", str(tmp_path)], env=env)
            assert r.exception is exc and r.exit_code == 1
            assert "in fake" in "".join(traceback.format_exception(*r.exc_info))
            assert "error:" not in r.stderr


def test_keyboard_interrupt_is_one_line_and_exit_130(monkeypatch, tmp_path):
    import slsearch.index.remove

    monkeypatch.setattr(slsearch.index.remove, "remove_clips", _raise(KeyboardInterrupt()))
    r = runner.invoke(app, ["remove", "a", "--index", str(tmp_path)])
    assert (r.exit_code, r.stderr) == (130, "interrupted (Ctrl-C)\n")


def test_error_messages_with_markup_are_printed_as_text(monkeypatch, tmp_path):
    import slsearch.index.remove

    monkeypatch.setattr(slsearch.index.remove, "remove_clips",
                        _raise(InputError("runs/[/]x[bold]:sun:\x1b[2J", "no clip with id [red]a")))
    r = runner.invoke(app, ["remove", "a", "--index", str(tmp_path)])
    assert (r.exit_code, r.stderr) == (2, "error: runs/[/]x[bold]:sun:\\x1b[2J: no clip with id [red]a\n")


def test_usage_errors_stay_clicks_exit_2():
    r = runner.invoke(app, ["query", "regen", "--top-k", "many", "--index", "x"])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_real_process_one_line_and_traceback_with_debug(tmp_path):
    """The console script's own process: what a user sees on the terminal."""
    cmd = [sys.executable, "-m", "slsearch", "eval", "--recall", "[/]x", "--index", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr == "error: --recall takes comma-separated integers, got '[/]x'\n"
    r = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr
    assert r.stderr.rstrip().splitlines()[-1].startswith("slsearch.errors.SlsearchError: --recall takes")
