"""Hits that say when: match_span on hand-made token states, its conversion to seconds, and the spans
of a real T2V search on a tiny index (inside each clip), through the Python API and `query --json`."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.index.search import Searcher, span_seconds
from slsearch.rank.span import match_span

runner = CliRunner()
D = 16


def _basis(i: int) -> np.ndarray:
    v = np.zeros(D, np.float32)
    v[i] = 1.0
    return v


def _background(n: int, seed: int = 0) -> np.ndarray:
    """n token states orthogonal to the first 8 axes (which the queries use)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    x[:, :8] = 0.0
    return x


def test_a_query_matching_tokens_5_to_8_gets_a_window_covering_them():
    clip = _background(20)
    for j, axis in zip(range(5, 9), range(4)):
        clip[j] = _basis(axis)
    query = np.stack([_basis(a) for a in range(4)])  # one word per matching clip token
    first, last = match_span(query, clip, temperature=0.07)
    assert first <= 5 and last >= 8
    assert last - first + 1 <= 6  # a window around the match, not the clip


def test_a_single_token_peak_gives_that_token():
    clip = _background(20, seed=1)
    clip[13] = _basis(0)
    query = np.stack([_basis(0), _basis(0) + 0.01])
    assert match_span(query, clip, temperature=0.07) == (13, 13)


def test_uniform_similarity_falls_back_to_the_whole_clip():
    clip = np.tile(_basis(0), (20, 1))
    query = np.stack([_basis(0), _basis(1)])
    assert match_span(query, clip, temperature=0.07) == (0, 19)
    assert match_span(query, clip[:1], temperature=0.07) == (0, 0)  # a one-token clip
    assert match_span(np.zeros((0, D)), clip, temperature=0.07) == (0, 19)  # an empty query


def test_bad_arguments():
    with pytest.raises(ValueError):
        match_span(np.ones((1, D)), np.zeros((0, D)))
    with pytest.raises(ValueError):
        match_span(np.ones((1, D)), np.ones((3, D)), mass=0.0)


def test_token_span_to_seconds():
    # token i covers frames [4i, 4i + 4): tokens 5..8 at 25 fps are frames 20..35, 0.8 s to 1.44 s
    assert span_seconds(5, 8, 25.0, 10.0) == (0.8, 1.44)
    # a cut of a longer file: offset by its start
    assert span_seconds(5, 8, 25.0, 10.0, start=12.5) == (13.3, 13.94)
    assert span_seconds(5, 8, 25.0, 10.0, start=float("nan")) == (0.8, 1.44)  # a whole file's null start
    # the last token may run past the clip's frames: clamped to its duration
    assert span_seconds(0, 9, 25.0, 1.5) == (0.0, 1.5)
    assert span_seconds(0, 9, 25.0, 1.5, start=3.0) == (3.0, 4.5)


@pytest.fixture(scope="module")
def index_dir(tiny_corpus, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("span") / "idx"
    r = runner.invoke(app, ["index", str(tiny_corpus[0]), "--model", str(tiny_checkpoint), "--out", str(out),
                            "--json"])
    assert r.exit_code == 0, r.output
    return out


def test_text_search_hits_carry_spans_inside_their_clips(index_dir):
    searcher = Searcher(index_dir)
    clips = searcher.clips
    duration = dict(zip(clips.column("id").tolist(), clips.column("duration").tolist()))
    texts = clips.column("text").tolist()[:5]
    for hits in searcher.search_text(texts, k=5):
        assert len(hits) == 5
        for h in hits:
            assert h.span is not None, h
            a, b = h.span
            assert 0.0 <= a < b <= duration[h.id] + 1e-6, (h.id, h.span, duration[h.id])
            assert h.to_dict()["span"] == h.span
    v2t = searcher.search_video(clips.column("path").tolist()[0], k=3)
    assert all(h.span is None for h in v2t)  # only text searches say when

    r = runner.invoke(app, ["query", texts[0], "--index", str(index_dir), "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    spans = [h["span"] for h in json.loads(r.stdout)["results"]]
    assert len(spans) == 3 and all(isinstance(s, list) and len(s) == 2 for s in spans)
    r = runner.invoke(app, ["query", texts[0], "--index", str(index_dir), "-k", "3"])
    assert r.exit_code == 0, r.output
    assert "span" in r.stdout and " s" in r.stdout
