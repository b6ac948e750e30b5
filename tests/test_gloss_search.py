"""Search by gloss (issue 17): `Searcher.search_glosses` and `slsearch query --gloss` rank clips by their
stored gloss readings with BM25 over gloss tokens and an in-order bonus."""

import json

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.errors import InputError
from slsearch.index.build import build_index
from slsearch.index.search import GlossScorer, Searcher, query_index, split_gloss_query
from slsearch.index.store import TextColumn

runner = CliRunner()


@pytest.fixture(scope="module")
def gloss_index(tiny_corpus, tmp_path_factory):
    """An index of the tiny gloss corpus built with a run that has the gloss head (as in test_lexicon)."""
    from slsearch.training.loop import train

    d = tmp_path_factory.mktemp("gloss-search")
    train("tiny", *tiny_corpus, d / "run", overrides=["loss.lm_weight=0", "loss.gloss_weight=2.0", "train.epochs=12"],
          progress=False)
    build_index([tiny_corpus[0]], d / "run", d / "idx", progress=False)
    return d / "idx"


def test_scorer_ranks_in_order_above_reversed_and_exact_first():
    scorer = GlossScorer(["G1 G2", "G2 G1", "G1 G2 G3", "G4 G5", ""])
    s = scorer.scores(["G1", "G2"])
    assert s[0] > s[2] > s[1] > 0 and s[3] == s[4] == 0  # exact, in order with more, reversed, none
    assert GlossScorer(["", ""]).scores(["G1"]).tolist() == [0, 0]
    assert split_gloss_query(" g1  G9 g1 G9", ["G1", "G2"]) == (["G1", "G1"], ["G9"])
    with pytest.raises(InputError, match="G8 G9"):
        split_gloss_query("g8 g9", ["G1"])


def test_exact_reading_ranks_its_clip_first_and_order_matters(gloss_index):
    s = Searcher(gloss_index)
    readings = s.readings.tolist()
    multi = [i for i, r in enumerate(readings) if len(r.split()) >= 2]
    assert len(multi) >= 10
    for i in multi:
        hits = s.search_glosses(readings[i].lower(), k=5)  # lower case works: glosses are upper-cased
        assert hits[0].glosses == readings[i] and hits[0].rank == 1
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # a reading and its reversal: the clip that has the query's order ranks above the reversed one (by the
    # readings alone, as an index without stored posteriors ranks)
    s._posteriors_memo = False
    s.readings = np.array(readings + [" ".join(readings[multi[0]].split()[::-1])], dtype=object)
    s.clips.labels = [s.clips.labels[i] for i in range(len(readings))] + [("rev", None, None, s.readings[-1])]
    s._gloss_scorer_memo = None
    hits = s.search_glosses(readings[multi[0]], k=len(readings) + 1)
    ids = [h.id for h in hits]
    assert ids.index(s.clips.labels[multi[0]][0]) < ids.index("rev")
    rev = s.search_glosses(s.readings[-1], k=len(readings) + 1)
    assert [h.id for h in rev].index("rev") < [h.id for h in rev].index(s.clips.labels[multi[0]][0])
    # deterministic: the same query gives the same ranking, ties by row
    assert [h.to_dict() for h in s.search_glosses("G0", k=20)] == [h.to_dict() for h in s.search_glosses("G0", k=20)]


def _logits(rows, classes=5):
    """(T, classes) logits: every class -10 but the ones given per token."""
    out = np.full((len(rows), classes), -10.0, np.float32)
    for t, given in enumerate(rows):
        for c, v in given.items():
            out[t, c] = v
    return out


def test_spotting_scores_hand_computed():
    from slsearch.rank.gloss_spotting import Posteriors, pack, unpack

    in_order = _logits([{1: 5}, {0: 5}, {3: 5}])  # reads G1 G3 (class 0 is the blank)
    weak = _logits([{1: 5}, {0: 5, 3: 4}, {0: 5}])  # G3 second-likeliest, a nat below the blank
    reversed_ = _logits([{3: 5}, {0: 5}, {1: 5}])
    short = _logits([{1: 5}])
    ids, r = unpack(pack(in_order))
    assert ids.shape == r.shape == (3, 4) and ids[0, 0] == 1 and r[0, 0] == 0 and r[0, 1] == pytest.approx(-15, abs=0.01)
    p = Posteriors([pack(x) for x in (in_order, weak, short, reversed_)], block=2)  # two padded blocks
    assert p.scores([1, 3]).tolist() == pytest.approx([0, -1, -np.inf, -30], abs=0.01)
    assert p.scores([3]).tolist() == pytest.approx([0, -1, -15, 0], abs=0.01)
    # a gloss in no token's top 4: the token's 4th value less a nat; the best token wins
    assert p.scores([4]).tolist() == pytest.approx([-15, -15, -15, -15], abs=0.01)
    with pytest.raises(ValueError):
        unpack(pack(in_order)[:-1])


def test_gloss_search_spots_queries_in_the_stored_posteriors(gloss_index):
    from slsearch.index.search import BM25_SHARE
    from slsearch.rank.gloss_spotting import unpack

    s = Searcher(gloss_index)
    blobs = s.clips.column("gloss_posteriors")
    counts = s.clips.column("token_count")
    assert all(unpack(b)[0].shape[0] == n for b, n in zip(blobs, counts))
    vocab = s.model.net.config.glosses
    posteriors = s._posteriors()
    for i in range(0, len(s), 7):
        query = s.readings[i] or vocab[0]
        classes = [vocab.index(g) + 1 for g in query.split()]
        spot = posteriors.scores(classes)
        # the greedy path holds its own reading: the clip's spotting score is 0, no clip's is above it
        assert spot[i] == pytest.approx(0, abs=1e-6) and spot.max() <= 1e-6
        mixed = spot + BM25_SHARE * s._gloss_scorer().scores(query.split())
        want = np.lexsort((np.arange(len(mixed)), -mixed))[:10]
        assert [h.id for h in s.search_glosses(query, k=10)] == [s.clips.labels[r][0] for r in want]
    # a gloss the greedy reading lacks but a token holds among its likeliest: found by its posterior
    ids, r = unpack(blobs[0])
    missing = [(float(r[t, j]), int(ids[t, j])) for t in range(len(ids)) for j in range(ids.shape[1])
               if vocab[ids[t, j] - 1] not in (s.readings[0] or "").split()]
    value, g = max(missing)
    assert posteriors.scores([g])[0] == pytest.approx(value, abs=1e-3)
    # stored posteriors that are not a packing: one line naming the index
    s.clips._columns["gloss_posteriors"] = TextColumn(pa.array([b"xx"] * len(s), pa.binary()))
    s._posteriors_memo = None
    with pytest.raises(InputError, match="damaged gloss posteriors"):
        s.search_glosses("G1", k=3)


def test_unknown_glosses_are_noted_and_all_unknown_is_an_error(gloss_index):
    [a] = query_index(gloss_index, glosses="G1 NIXDA G2", k=3)
    assert a["mode"] == "g2v" and a["unknown_glosses"] == ["NIXDA"] and len(a["results"]) == 3
    assert a["results"] == query_index(gloss_index, glosses="g1 g2", k=3)[0]["results"]
    r = runner.invoke(app, ["query", "--index", str(gloss_index), "--gloss", "G1 NIXDA G2", "-k", "3"])
    assert r.exit_code == 0, r.output
    assert "NIXDA" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "g2v: G1 NIXDA G2" in r.stdout and "glosses" in r.stdout
    r = runner.invoke(app, ["query", "--index", str(gloss_index), "--gloss", "NIXDA GARNIX"])
    assert r.exit_code == 2 and "NIXDA GARNIX" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_json_and_exactly_one_query(gloss_index):
    r = runner.invoke(app, ["query", "--index", str(gloss_index), "--gloss", "G3 G4", "-k", "4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["mode"] == "g2v" and out["query"] == "G3 G4" and out["unknown_glosses"] == []
    assert [h["rank"] for h in out["results"]] == [1, 2, 3, 4] and all("glosses" in h for h in out["results"])
    r = runner.invoke(app, ["query", "regen", "--index", str(gloss_index), "--gloss", "G3"])
    assert r.exit_code == 2 and "exactly one" in r.stderr


def test_index_without_readings_says_the_model_reads_no_glosses(tiny_corpus, tiny_checkpoint, tmp_path):
    build_index([tiny_corpus[1]], tiny_checkpoint, tmp_path / "idx", progress=False)
    assert Searcher(tmp_path / "idx").readings is None
    with pytest.raises(InputError, match="reads no glosses"):
        Searcher(tmp_path / "idx").search_glosses("G1")
    r = runner.invoke(app, ["query", "--index", str(tmp_path / "idx"), "--gloss", "G1"])
    assert r.exit_code == 2 and "reads no glosses" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_gloss_search_over_http(gloss_index, tmp_path):
    """GET /api/search/gloss: the same ranking as the library, unknown glosses listed, bad queries a 422."""
    from fastapi.testclient import TestClient

    from slsearch.serve.app import create_app
    from slsearch.serve.limits import ServeSettings

    s = Searcher(gloss_index)
    reading = next(r for r in s.readings.tolist() if len(r.split()) >= 2)
    with TestClient(create_app(gloss_index, settings=ServeSettings(preview_dir=tmp_path / "p"))) as client:
        r = client.get("/api/search/gloss", params={"q": reading.lower() + " NOSUCHSIGN", "k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mode"] == "g2v" and body["unknown_glosses"] == ["NOSUCHSIGN"]
        assert [h["id"] for h in body["results"]] == [h.id for h in s.search_glosses(reading, k=5)]
        assert body["results"][0]["glosses"] == reading
        bad = client.get("/api/search/gloss", params={"q": "NOSUCHSIGN"})
        assert bad.status_code == 422 and "knows none of these glosses: NOSUCHSIGN" in bad.json()["detail"]
        assert "Traceback" not in bad.text


def test_gloss_search_over_http_without_a_gloss_head_is_a_422(tiny_checkpoint, tiny_corpus, tmp_path):
    from fastapi.testclient import TestClient

    from slsearch.serve.app import create_app
    from slsearch.serve.limits import ServeSettings

    build_index([tiny_corpus[1]], tiny_checkpoint, tmp_path / "idx", progress=False)
    with TestClient(create_app(tmp_path / "idx", settings=ServeSettings(preview_dir=tmp_path / "p"))) as client:
        r = client.get("/api/search/gloss", params={"q": "REGEN"})
        assert r.status_code == 422 and "reads no glosses" in r.json()["detail"]


def test_bm25_from_postings_scores_as_rank_bm25():
    """GlossScorer's BM25 is rank_bm25's Okapi (k1 1.5, b 0.75, negative idf floored at 0.25 x the mean idf),
    computed from postings: the same scores, a gloss in most readings and a repeated query gloss included."""
    from rank_bm25 import BM25Okapi

    rng = np.random.default_rng(0)
    vocabulary = [f"G{i}" for i in range(30)]
    readings = [" ".join(rng.choice(vocabulary, size=rng.integers(0, 9), p=np.r_[0.4, np.full(29, 0.6 / 29)]))
                for _ in range(300)]
    scorer, reference = GlossScorer(readings), BM25Okapi([r.split() for r in readings])
    for query in (["G0"], ["G3", "G7"], ["G5", "G5", "G0"], ["G29", "NOPE"]):
        assert scorer.bm25(query) == pytest.approx(reference.get_scores(query), rel=1e-9, abs=1e-12)
        holds = {i for i, r in enumerate(readings) if set(r.split()) & set(query)}
        assert set(np.flatnonzero(scorer.scores(query)).tolist()) <= holds
        some = rng.choice(300, size=50, replace=False)
        assert scorer.scores(query, some) == pytest.approx(scorer.scores(query)[some])


def test_spotting_bounds_and_scoring_some_clips():
    """Posteriors.scores(query, clips) equals the full scoring at those clips, across blocks, and the
    postings' upper bound is never below a clip's score."""
    from slsearch.rank.gloss_spotting import Posteriors, pack

    rng = np.random.default_rng(1)
    blobs = [pack(rng.normal(0, 3, (rng.integers(1, 12), 40)).astype(np.float32)) for _ in range(150)]
    post = Posteriors(blobs, block=16)  # ten blocks of different lengths
    for query in ([3], [5, 9], [7, 7, 2], [12, 30, 1, 4]):
        full = post.scores(query)
        assert np.all(post.upper_bounds(query) >= full - 1e-4)
        some = rng.choice(150, size=40, replace=False)  # any subset, in any order
        assert post.scores(query, some) == pytest.approx(full[some])
    assert post.scores([3], np.zeros(0, np.int64)).shape == (0,)


def test_gloss_search_stops_early_with_the_ranking_of_scoring_every_clip(gloss_index, monkeypatch):
    """Clips scored in the order of their bounds until none can enter the top k: the same hits as scoring
    every clip, for a few of them scored."""
    from slsearch.rank.gloss_spotting import Posteriors

    s = Searcher(gloss_index)
    vocabulary = s.model.net.config.glosses
    classes = {g: i + 1 for i, g in enumerate(vocabulary)}
    post, scorer = s._posteriors(), s._gloss_scorer()
    import slsearch.index.search as search_module

    monkeypatch.setattr(search_module, "GLOSS_SCORE_STEP", 1)  # k clips first, then 2k, 4k, ...
    scored = []
    real = Posteriors.scores
    monkeypatch.setattr(Posteriors, "scores", lambda self, q, clips=None: (scored.append(len(clips)), real(self, q, clips))[1])
    queries = [r for r in s.readings.tolist() if len(r.split()) >= 2][:10] + [vocabulary[0], vocabulary[-1] + " " + vocabulary[0]]
    stopped_early = 0
    for reading in queries:
        query = reading.split()
        dense = real(post, [classes[g] for g in query]) + 0.1 * scorer.scores(query)
        best = np.lexsort((np.arange(len(dense)), -dense))[:5]
        scored.clear()
        hits = s.search_glosses(reading, k=5)
        assert [h.score for h in hits] == pytest.approx(dense[best].tolist(), rel=1e-5)
        assert [h.id for h in hits] == [s.clips.labels[r][0] for r in best]
        stopped_early += sum(scored) < len(s.readings)
    assert stopped_early >= 5, stopped_early
    everything = s.search_glosses(vocabulary[0], k=len(s.readings))
    assert len(everything) == len(s.readings)
