"""Fuzzed text queries through the Python API (issue 21): every query gets hits or one of slsearch's own
errors (SlsearchError: InputError for a query it cannot search), never anything else.

    .venv/bin/python benchmarks/fuzz_queries.py [--queries 10000] [--seed 0] [--index DIR] [--json]

Queries mix unpaired surrogates, bidi and zero-width characters, rich markup, control characters,
emoji, CJK, numbers, whitespace, normal German words, 10,000-character strings and random code points.
Without --index it first makes a tiny one (synthetic demo corpus, 40 clips a split; the tiny recipe,
3 epochs; ~1 minute on 2 cores) in a temporary folder. Counts outcomes by exception type; exit code 1
if any exception other than a SlsearchError came out.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import tempfile
import time
from pathlib import Path

WORDS = ("wetter morgen regen sonne süden norden osten westen schnee gewitter wolken wind temperatur grad "
         "nacht tag am im es gibt heute abend frost nebel schauer küste alpen bayern straße größer").split()
MARKUP = ["[/]", "[bold]", "[/bold]", "[link=http://example.org]", "[red on blue]", ":sun:", ":thumbs_up:",
          "\\[", "[", "]", "[/link]", "[@click=app.bell]", "[#ff0000]", "[b]x[/i]"]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e",
        "\u200f", "\u061c"]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]
EMOJI = ["😀", "🌧️", "☀️", "👨‍👩‍👧", "🏳️‍🌈", "🇩🇪", "👍🏽", "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"]
CJK = ["天气", "明天", "雨", "雪", "晴朗", "한국어", "日本語", "ｗｅｔｔｅｒ", "ﾃﾝｷ"]
SPACES = [" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u2029", "\x0b", "\x0c", "\u0085"]


def _control(r: random.Random) -> str:
    return chr(r.choice([*range(0, 32), 127, *range(0x80, 0xA0)]))


def _surrogate(r: random.Random) -> str:
    if r.random() < 0.2:  # a valid pair, as a UTF-16 source gives it
        return chr(r.randint(0xD800, 0xDBFF)) + chr(r.randint(0xDC00, 0xDFFF))
    return chr(r.randint(0xD800, 0xDFFF))


def _number(r: random.Random) -> str:
    return r.choice([str(r.randint(-10**6, 10**6)), f"{r.uniform(-1e3, 1e3):.3f}", f"{r.random():e}", "0x1F",
                     "NaN", "-inf", "1e309", "٣٤"])


def _codepoint(r: random.Random) -> str:
    return chr(r.randint(0, 0x10FFFF))


PIECES = {
    "german": lambda r: r.choice(WORDS), "surrogate": _surrogate, "bidi": lambda r: r.choice(BIDI),
    "zero_width": lambda r: r.choice(ZERO_WIDTH), "markup": lambda r: r.choice(MARKUP), "control": _control,
    "emoji": lambda r: r.choice(EMOJI), "cjk": lambda r: r.choice(CJK), "number": _number,
    "space": lambda r: r.choice(SPACES), "codepoint": _codepoint,
}


def make_query(r: random.Random) -> tuple[str, str]:
    """(kind, query)."""
    x = r.random()
    if x < 0.08:  # looks empty: whitespace, zero-width, bidi and control characters only
        return "blank", "".join(r.choice([*SPACES, *ZERO_WIDTH, *BIDI, _control(r)]) for _ in range(r.randint(0, 12)))
    if x < 0.11:  # 10,000 characters of a few kinds (German words alone, half the time)
        kinds = ["german", "space"] if r.random() < 0.5 else r.sample(list(PIECES), r.randint(1, 4))
        pieces = [PIECES[r.choice(kinds)](r) for _ in range(4000)]
        return "10k", ("".join(pieces) + "x" * 10_000)[:10_000]
    if x < 0.13:  # long but under the cap: the tokenizer truncates
        return "long_ok", " ".join(r.choice(WORDS) for _ in range(300))[:1990]
    if x < 0.30:  # a normal query
        return "german", " ".join(r.choice(WORDS) for _ in range(r.randint(1, 6)))
    kinds = r.sample(list(PIECES), r.randint(1, 4))
    parts = [PIECES[r.choice(kinds)](r) for _ in range(r.randint(1, 10))]
    return "mixed:" + "+".join(sorted(kinds)), r.choice(["", " "]).join(parts)


def tiny_index(work: Path) -> Path:
    """A tiny index made from scratch: the synthetic demo corpus, the tiny recipe."""
    from slsearch.data.synth import synthesize_corpus
    from slsearch.index.build import build_index
    from slsearch.training.loop import train

    corpus = work / "corpus"
    synthesize_corpus("demo", corpus, limit=40, progress=False)
    train("tiny", corpus / "train.jsonl", corpus / "dev.jsonl", work / "model",
          overrides=["loss.lm_weight=0", "train.epochs=3"], progress=None)
    build_index([corpus / "manifest.jsonl"], work / "model", work / "index", progress=None)
    return work / "index"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--index", help="an index folder (default: make a tiny one in a temporary folder)")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    args = ap.parse_args()

    from slsearch.errors import SlsearchError
    from slsearch.index.search import Searcher

    with tempfile.TemporaryDirectory(prefix="slsearch-fuzz-") as tmp:
        t0 = time.perf_counter()
        index = Path(args.index) if args.index else tiny_index(Path(tmp))
        setup_s = time.perf_counter() - t0
        searcher = Searcher(index)
        r = random.Random(args.seed)
        outcomes: collections.Counter[str] = collections.Counter()
        by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        reasons: collections.Counter[str] = collections.Counter()
        examples: dict[str, list[str]] = collections.defaultdict(list)
        times = []
        t0 = time.perf_counter()
        for _ in range(args.queries):
            kind, q = make_query(r)
            t = time.perf_counter()
            try:
                hits = searcher.search_text(q, k=args.k)
                outcome = "hits" if hits else "no hits"
            except SlsearchError as e:
                outcome = type(e).__name__
                reasons[next((w for w in ("empty", "surrogate", "too long") if w in str(e)), str(e)[:60])] += 1
            except Exception as e:  # what must not happen
                outcome = f"{type(e).__module__}.{type(e).__name__}"
                if len(examples[outcome]) < 3:
                    examples[outcome].append(f"{q[:60]!r}: {str(e)[:200]}")
            times.append(time.perf_counter() - t)
            outcomes[outcome] += 1
            by_kind[kind.split(":")[0]][outcome] += 1
        total_s = time.perf_counter() - t0

    own = {"hits", "no hits", *(o for o in outcomes if o in ("InputError", "SlsearchError"))}
    others = sum(n for o, n in outcomes.items() if o not in own)
    times.sort()
    summary = {"queries": args.queries, "seed": args.seed, "outcomes": dict(outcomes.most_common()),
               "input_error_reasons": dict(reasons.most_common()),
               "by_kind": {k: dict(v.most_common()) for k, v in sorted(by_kind.items())},
               "other_exceptions": others, "examples": dict(examples),
               "seconds": round(total_s, 1), "setup_seconds": round(setup_s, 1),
               "p50_ms": round(1000 * times[len(times) // 2], 2), "p99_ms": round(1000 * times[int(len(times) * .99)], 2)}
    print(f"{args.queries} fuzzed queries in {total_s:.1f} s (p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms; "
          f"index made in {setup_s:.0f} s)")
    for o, n in outcomes.most_common():
        print(f"  {o:<28} {n:>6}")
    print("  input errors by reason: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    for kind, c in sorted(by_kind.items()):
        print(f"  {kind:<10} " + ", ".join(f"{o} {n}" for o, n in c.most_common()))
    print(f"exceptions other than slsearch's own errors: {others}")
    for o, ex in examples.items():
        for e in ex:
            print(f"  {o}: {e}")
    if args.json:
        print(json.dumps(summary, ensure_ascii=True))
    raise SystemExit(1 if others else 0)


if __name__ == "__main__":
    main()
