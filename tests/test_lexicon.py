"""The gloss lexicon: units, IBM Model 1 and diagonal-alignment tables, query-likelihood scores,
dev-picked fusion with CiCo, and its use end to end: learnt by `train`, saved with the checkpoint,
ranked by in eval and search."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data.manifest import read_manifest
from slsearch.errors import SlsearchError
from slsearch.index.search import Searcher
from slsearch.models.lexicon import LEXICON_FILE, Lexicon, text_units
from slsearch.rank import ClipSide, RankingPipeline, TextSide, load_retrieval_model
from slsearch.rank.lexicon_stage import LexiconStage

runner = CliRunner()

# A toy language: each content word is signed by one gloss; function words by none; word order and
# inflection differ from the glosses'.
CONTENT = {"regen": "REGEN", "sonne": "SONNE", "wind": "WIND", "schnee": "SCHNEE", "nebel": "NEBEL",
           "morgen": "MORGEN", "heute": "HEUTE", "norden": "NORD", "süden": "SUED", "gewitter": "GEWITTER"}
FUNCTION = ["im", "es", "gibt", "der", "und", "auch"]


def toy_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    words = list(CONTENT)
    texts, glosses = [], []
    for _ in range(n):
        picked = [words[i] for i in rng.choice(len(words), size=rng.integers(2, 4), replace=False)]
        sentence = picked + list(rng.choice(FUNCTION, size=rng.integers(1, 4)))
        rng.shuffle(sentence)
        texts.append(" ".join(sentence) + " .")
        glosses.append(" ".join(CONTENT[w] for w in sorted(picked)))  # gloss order != word order
    return texts, glosses


def test_text_units_cut_words_and_split_cjk():
    assert text_units("Im Norden regnet es, morgen Regen!", prefix=5) == ["im", "norde", "regne", "es", "morge", "regen"]
    assert text_units("im norden regnet", prefix=0) == ["im", "norden", "regnet"]
    assert text_units("明天 下雨 .", prefix=5) == ["明", "天", "下", "雨"]
    assert text_units(" . ! ") == []


def ordered_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    """A toy language signed in the spoken order: the glosses follow the content words, function words
    fall in between. The same words in another order make another sentence."""
    rng = np.random.default_rng(seed)
    words = list(CONTENT)
    texts, glosses = [], []
    for _ in range(n):
        picked = [words[i] for i in rng.choice(len(words), size=rng.integers(2, 5), replace=False)]
        sentence = []
        for w in picked:
            sentence += list(rng.choice(FUNCTION, size=rng.integers(0, 2))) + [w]
        texts.append(" ".join(sentence) + " .")
        glosses.append(" ".join(CONTENT[w] for w in picked))
    return texts, glosses


def test_lexicon_learns_which_gloss_signs_which_word():
    """IBM Model 1 on a language whose gloss order has nothing to do with its word order."""
    texts, glosses = toy_pairs(300, seed=0)
    lex = Lexicon.train(texts, glosses, prefix=0, alignment="ibm1")
    for word, gloss in CONTENT.items():
        row = lex.gloss_given_unit[1 + lex.units.index(word)]
        assert lex.glosses[int(row.argmax())] == gloss
    # held-out sentences: each finds its own gloss sequence first, and the other way round
    test_texts, test_glosses = toy_pairs(40, seed=1)
    keep = [i for i, g in enumerate(test_glosses) if test_glosses.index(g) == i]  # distinct gloss sequences
    test_texts, test_glosses = [test_texts[i] for i in keep], [test_glosses[i] for i in keep]
    t2v = lex.text_given_readings(test_texts, test_glosses)  # (texts, readings)
    v2t = lex.readings_given_texts(test_glosses, test_texts)  # (readings, texts)
    assert (t2v.argmax(1) == np.arange(len(keep))).mean() >= 0.95
    assert (v2t.argmax(1) == np.arange(len(keep))).mean() >= 0.95
    assert np.allclose(lex.lexical_matrix(test_glosses, test_texts, "t2v"), t2v.T)
    # a query with no known word carries no lexical information: equal scores, not an error
    assert np.ptp(lex.text_given_readings(["völlig unbekannt"], test_glosses)) == 0


def test_ibm1_scores_equal_the_dense_formula():
    """The IBM-1 channel, computed from sparse counts on the query's own units only, equals the textbook
    formula written out densely: mean over target units of log((1 - s) * mean(NULL row, source rows) + s * prior),
    repeats counted, unknown units left out, a target without known units 0."""
    texts, glosses = toy_pairs(200, seed=3)
    lex = Lexicon.train(texts, glosses, prefix=0, alignment="ibm1")
    queries = ["regen regen im norden", "völlig unbekannt", "sonne morgen und wind ."] + texts[:5]
    readings = ["REGEN NORD REGEN", "", "SONNE UNBEKANNT", "MORGEN"] + glosses[5:10]

    def dense(targets, sources, table, prior):
        out = np.zeros((len(targets), len(sources)))
        for i, t in enumerate(targets):
            for j, src in enumerate(sources):
                if len(t):
                    p = (table[0] + table[src + 1].sum(0)) / (1 + len(src))
                    out[i, j] = np.log((1 - lex.smoothing) * p[t] + lex.smoothing * prior[t]).mean()
        return out

    unit_ids, gloss_ids = [lex._unit_ids(t) for t in queries], [lex._gloss_ids(r) for r in readings]
    assert len(unit_ids[1]) == 0 and len(gloss_ids[1]) == 0 and len(gloss_ids[2]) == 1
    np.testing.assert_allclose(lex.text_given_readings(queries, readings),
                               dense(unit_ids, gloss_ids, lex.unit_given_gloss, lex.unit_prior), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lex.readings_given_texts(readings, queries),
                               dense(gloss_ids, unit_ids, lex.gloss_given_unit, lex.gloss_prior), rtol=1e-5, atol=1e-5)
    # one query against many readings (a search) reads as its row of the whole matrix
    np.testing.assert_allclose(lex.text_given_readings(queries[:1], readings), lex.text_given_readings(queries, readings)[:1])


def test_diagonal_alignment_tells_apart_sentences_that_differ_in_order():
    texts, glosses = ordered_pairs(400, seed=0)
    test_texts, test_glosses = ordered_pairs(60, seed=1)
    # each held-out sentence also in reverse order: the same words, another gloss sequence
    test_texts += [" ".join(t.rstrip(" .").split()[::-1]) + " ." for t in test_texts]
    test_glosses += [" ".join(g.split()[::-1]) for g in test_glosses]
    keep = [i for i, g in enumerate(test_glosses) if test_glosses.index(g) == i]
    test_texts, test_glosses = [test_texts[i] for i in keep], [test_glosses[i] for i in keep]
    target = np.arange(len(keep))
    r1 = {}
    for alignment in ("ibm1", "diagonal"):
        lex = Lexicon.train(texts, glosses, prefix=0, alignment=alignment)
        for word, gloss in CONTENT.items():
            assert lex.glosses[int(lex.gloss_given_unit[1 + lex.units.index(word)].argmax())] == gloss
        t2v = lex.text_given_readings(test_texts, test_glosses)
        v2t = lex.readings_given_texts(test_glosses, test_texts)
        r1[alignment] = ((t2v.argmax(1) == target).mean(), (v2t.argmax(1) == target).mean())
        # few candidates are scored candidate by candidate: the same numbers (an empty one included)
        few = test_texts[:2] + [""]
        assert np.allclose(lex.readings_given_texts(test_glosses, few),
                           lex.readings_given_texts(test_glosses, few + test_texts)[:, :3], atol=1e-6)
    # Model 1 scores a sentence and its reversal alike, so it can get at most about half of them right
    assert max(r1["ibm1"]) <= 0.6
    assert min(r1["diagonal"]) >= 0.9


def test_calibration_picks_a_weight_on_dev_and_fusion_is_per_query_stable(tmp_path):
    texts, glosses = toy_pairs(300, seed=0)
    lex = Lexicon.train(texts, glosses)
    dev_texts, dev_glosses = toy_pairs(30, seed=2)
    keep = [i for i, g in enumerate(dev_glosses) if dev_glosses.index(g) == i and dev_texts.index(dev_texts[i]) == i]
    dev_texts, dev_glosses = [dev_texts[i] for i in keep], [dev_glosses[i] for i in keep]
    n = len(keep)
    rng = np.random.default_rng(0)
    cico = (0.3 * np.eye(n) + rng.normal(0, 0.3, (n, n))).astype(np.float32)  # a weak CiCo model
    stage = LexiconStage(lex)
    fusion = stage.fit(cico, dev_glosses, dev_texts)
    assert fusion is lex.fusion and stage.calibrated
    cico_r1 = (cico.argmax(0) == np.arange(n)).mean() * 100
    for direction in ("t2v", "v2t"):
        assert fusion[direction]["weight"] > 0 and fusion[direction]["dev_R@1"] > cico_r1
    lexical = stage.scores(dev_glosses, dev_texts, "t2v")
    assert np.allclose(lexical, lex.lexical_matrix(dev_glosses, dev_texts, "t2v"))
    fused = stage.combine(cico, lexical, "t2v")
    # one query against a subset of candidates gets the same numbers as the whole matrix (fixed statistics)
    one = stage.combine(cico[[3, 1, 4], 2:3], stage.scores([dev_glosses[i] for i in (3, 1, 4)], [dev_texts[2]], "t2v"),
                        "t2v")
    assert one.shape == (3, 1) and np.allclose(one[:, 0], fused[[3, 1, 4], 2], atol=1e-5)
    # searches read the clips' stored reading priors exactly when T2V takes a share of the reverse channel
    assert stage.uses_reading_priors == bool(fusion["t2v"].get("reverse_weight"))
    # the T2V score is the direct channel plus the calibrated share of the reverse one
    assert "reverse_weight" in fusion["t2v"] and "reverse_weight" not in fusion["v2t"]
    direct = lex.text_given_readings(dev_texts, dev_glosses)
    assert np.allclose(lex.clip_scores(dev_texts, dev_glosses, reverse_weight=0.0), direct)
    priors = lex.reading_priors(dev_glosses)
    reverse = lex.readings_given_texts(dev_glosses, dev_texts).T - priors[None, :]
    assert np.allclose(lex.clip_scores(dev_texts, dev_glosses, priors, 0.5), direct + 0.5 * reverse, atol=1e-5)
    lex.save(tmp_path)
    again = Lexicon.load(tmp_path)
    assert again.fusion == lex.fusion and again.units == lex.units and again.alignment == "diagonal"
    assert again.fingerprint == lex.fingerprint and np.allclose(again.reading_priors(dev_glosses), priors)
    assert again.fitted_on is None  # fitted outside a checkpoint: no weights to name
    again_stage = LexiconStage(again)
    assert np.allclose(again_stage.combine(cico, again_stage.scores(dev_glosses, dev_texts, "t2v"), "t2v"), fused,
                       atol=1e-5)
    # a lexicon saved before the diagonal model (no 'alignment' in its metadata) is read as Model 1's
    with np.load(tmp_path / LEXICON_FILE) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    for key in ("alignment", "tension", "null_probability"):
        del meta[key]
    np.savez_compressed(tmp_path / LEXICON_FILE, **{**arrays, "meta": np.array(json.dumps(meta))})
    assert Lexicon.load(tmp_path).alignment == "ibm1"
    assert Lexicon.load(tmp_path / "nowhere") is None
    (tmp_path / LEXICON_FILE).write_bytes(b"not a zip")
    with pytest.raises(Exception, match="unreadable gloss lexicon"):
        Lexicon.load(tmp_path)


@pytest.fixture(scope="module")
def gloss_run(tiny_corpus, tmp_path_factory):
    """tiny.toml with the gloss head on the generated gloss corpus: the run learns a lexicon."""
    from slsearch.training.loop import train

    out = tmp_path_factory.mktemp("lexicon") / "run"
    train("tiny", *tiny_corpus, out, overrides=["loss.lm_weight=0", "loss.gloss_weight=2.0", "train.epochs=12"],
          progress=False)
    return out


def test_training_saves_a_calibrated_lexicon(gloss_run, tiny_corpus):
    model = load_retrieval_model(gloss_run)
    assert (gloss_run / LEXICON_FILE).exists() and model.lexicon is not None
    assert set(model.lexicon.fusion) == {"t2v", "v2t"} and model.lexicon.fitted_on == model.hash
    assert model.likelihood is None  # the decoder did not train (loss.lm_weight=0)
    assert RankingPipeline(model).resolve_score(None, True, "run") == "fused"
    train_glosses = {g for c in read_manifest(tiny_corpus[0]) for g in c.gloss.split()}
    assert set(model.lexicon.glosses) == train_glosses


def test_new_weights_leave_out_a_stale_lexicon(gloss_run, tmp_path):
    """A lexicon's fusion is calibrated on one set of weights: with others saved over them it is left out."""
    import shutil

    import torch

    from slsearch.models.checkpoint import load_model, save_model

    run = tmp_path / "run"
    shutil.copytree(gloss_run, run)
    net = load_model(run)
    with torch.no_grad():
        next(net.parameters()).add_(0.01)
    save_model(net, run)
    assert (run / LEXICON_FILE).exists() and Lexicon.load(run).fitted_on != net.checkpoint_hash
    model = load_retrieval_model(run)
    assert model.hash == net.checkpoint_hash and model.lexicon is None
    assert RankingPipeline(model).lexicon is None


def test_eval_ranks_by_the_fused_score_and_can_ablate_it(gloss_run, tiny_corpus, tiny_checkpoint):
    def run(*args):
        r = runner.invoke(app, ["eval", "--model", str(gloss_run), "--manifest", str(tiny_corpus[0]), "--json",
                                *args])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout.strip().splitlines()[-1])

    fused, cico, lexical = run(), run("--score", "cico"), run("--score", "lexical")
    assert fused["score"] == "fused" and cico["score"] == "cico" and lexical["score"] == "lexical"
    # the toy sentences are their glosses' words: the lexicon alone finds nearly every clip
    assert lexical["metrics"]["paper/t2v_R@1"] >= 80 and lexical["metrics"]["paper/v2t_R@1"] >= 80
    assert fused["metrics"]["paper/t2v_R@1"] >= 80
    # a model without a gloss head has no lexicon: asking for it is refused with the reason
    r = runner.invoke(app, ["eval", "--model", str(tiny_checkpoint), "--manifest", str(tiny_corpus[0]),
                            "--score", "fused"])
    assert r.exit_code == 2 and "no gloss lexicon" in r.stderr


def test_index_stores_gloss_readings_and_search_agrees_with_eval(gloss_run, tiny_corpus, tmp_path):
    from slsearch.eval.retrieval import evaluate_index

    out = tmp_path / "idx"
    r = runner.invoke(app, ["index", str(tiny_corpus[0]), "--model", str(gloss_run), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    clips = read_manifest(tiny_corpus[0])
    meta = pq.read_table(out / "meta.parquet").to_pylist()
    assert sum(m["gloss_reading"] == c.gloss for m, c in zip(meta, clips)) >= 0.8 * len(clips)
    searcher = Searcher(out)
    assert searcher.pipeline.lexicon is not None and searcher.readings is not None and searcher.score == "fused"
    lexicon = searcher.model.lexicon
    assert searcher.pipeline.lexicon.lexicon is lexicon
    # the index stores each clip's log p(reading) for the reverse channel, and whose lexicon they are
    info = json.loads((out / "index.json").read_text())
    assert info["lexicon"] == lexicon.fingerprint and all(m["reading_prior"] is not None for m in meta)
    assert np.allclose(searcher.reading_priors, lexicon.reading_priors([m["gloss_reading"] for m in meta]))
    lexicon.fusion["t2v"]["reverse_weight"] = 0.5  # whatever dev picked for the toy, use the channel
    assert searcher.pipeline.lexicon.uses_reading_priors
    # search over every clip ranks exactly as the fused evaluation matrix does
    net = searcher.model.net
    from slsearch.encode import encode_texts, encode_videos
    from slsearch.rank.cico import cico_matrix

    videos = encode_videos(net, clips)
    queries = [clips[i].text for i in (0, 5, 17)]
    query_tokens = encode_texts(net, queries).tokens
    cico = cico_matrix(videos.tokens, query_tokens, searcher.model.temperature)
    stage = searcher.pipeline.lexicon
    fused = stage.combine(cico, stage.scores(videos.readings, queries, "t2v"), "t2v")
    matrix = searcher.pipeline.score_matrix(ClipSide(videos.tokens, videos.readings), TextSide(queries, query_tokens),
                                            "fused")
    assert np.allclose(matrix["t2v"], fused, atol=1e-5)
    hits = searcher.search_text(queries, k=5, n_candidates=len(clips))
    for q, h in enumerate(hits):
        assert [x.id for x in h] == [clips[i].id for i in np.argsort(-fused[:, q], kind="stable")[:5]]
        assert np.allclose([x.score for x in h], np.sort(fused[:, q])[::-1][:5], atol=0.02)  # float16 tokens
    # stored priors of another lexicon are not used: they are computed per candidate, to the same ranking
    searcher.reading_priors = None
    assert [[x.id for x in h] for h in searcher.search_text(queries, k=5, n_candidates=len(clips))] == \
        [[x.id for x in h] for h in hits]
    reading = {m["id"]: m["gloss_reading"] for m in meta}
    assert all(x.glosses == reading[x.id] for x in hits[0])  # clip results show what was read in them
    v2t = searcher.search_video(clips[3].path, k=1)
    assert v2t[0].text == clips[3].text and v2t[0].glosses is None
    report = evaluate_index(out, progress=False)
    assert report["score"] == "fused" and report["metrics"]["paper/t2v_R@1"] >= 80


def test_an_index_without_gloss_readings_is_refused(gloss_run, tiny_corpus, tmp_path):
    """Indexes written before the gloss_reading column are no longer read: refused, saying to rebuild."""
    out = tmp_path / "idx"
    assert runner.invoke(app, ["index", str(tiny_corpus[1]), "--model", str(gloss_run), "--out",
                               str(out)]).exit_code == 0
    meta_path = (out / "meta.parquet").resolve()
    table = pq.read_table(meta_path)
    pq.write_table(table.drop(["gloss_reading"]), meta_path)
    with pytest.raises(SlsearchError, match="lacks the columns gloss_reading; rebuild"):
        Searcher(out)
    for args in (["query", "regen sonne", "--index", str(out)], ["eval", "--index", str(out), "--score", "lexical"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "lacks the columns gloss_reading; rebuild" in r.stderr, r.output
        assert "Traceback" not in r.output


def test_cli_lexicon_relearns_an_existing_checkpoints_lexicon(gloss_run, tiny_corpus, tiny_checkpoint, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(gloss_run, run)
    before = load_retrieval_model(run)
    r = runner.invoke(app, ["lexicon", "--model", str(run), "--manifest", str(tiny_corpus[0]), "--dev",
                            str(tiny_corpus[1]), "--prefix", "0", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["prefix"] == 0 and set(summary["fusion"]) == {"t2v", "v2t"}
    after = load_retrieval_model(run)
    assert after.lexicon.prefix == 0 and before.lexicon.prefix == 5
    assert after.hash == before.hash  # weights untouched: indexes stay valid
    assert after.lexicon.fitted_on == after.hash and after.lexicon.fusion == summary["fusion"]
    r = runner.invoke(app, ["lexicon", "--model", str(tiny_checkpoint), "--manifest", str(tiny_corpus[0]), "--dev",
                            str(tiny_corpus[1])])
    assert r.exit_code == 2 and "no gloss head" in r.stderr
