"""Gloss recognition with the retrieval model's CTC head: prefix beam search against greedy reading and
hand-computed cases, spans from the alignment, `slsearch recognize`, and `slsearch eval --wer`."""

import itertools
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.data.manifest import read_manifest, write_manifest
from slsearch.eval.recognition import word_errors
from slsearch.models.ctc import align, greedy, prefix_beam_search, read_glosses, sequence_log_prob

runner = CliRunner()


def collapse(path):
    return tuple(t for k, t in enumerate(path) if t and (k == 0 or t != path[k - 1]))


def brute_force(probs):
    """P(labels | x) for every label sequence, by summing every frame path."""
    out = {}
    for path in itertools.product(range(probs.shape[1]), repeat=len(probs)):
        p = float(np.prod([probs[t, c] for t, c in enumerate(path)]))
        out[collapse(path)] = out.get(collapse(path), 0.0) + p
    return out


def test_beam_search_finds_the_sequence_greedy_misses():
    # Two frames, blank 0.6 / A 0.4 each: the best path is blank blank (0.36), but "A" has the paths
    # A-, -A and AA: 0.24 + 0.24 + 0.16 = 0.64.
    logp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert greedy(logp) == []
    labels, lp = prefix_beam_search(logp, beam=5)
    assert labels == [1] and np.exp(lp) == pytest.approx(0.64)
    assert np.exp(sequence_log_prob(logp, [1])) == pytest.approx(0.64)
    assert np.exp(sequence_log_prob(logp, [])) == pytest.approx(0.36)
    assert prefix_beam_search(logp, beam=1)[0] == []  # a single beam keeps the best prefix of frame 1


def test_beam_search_matches_brute_force_on_small_cases():
    rng = np.random.default_rng(0)
    for _ in range(20):
        probs = rng.dirichlet(np.ones(3) * 0.7, size=4)
        truth = brute_force(probs)
        best = max(truth, key=truth.get)
        labels, lp = prefix_beam_search(np.log(probs), beam=16)
        assert tuple(labels) == best
        assert np.exp(lp) == pytest.approx(truth[best])
        for seq in list(truth)[:5]:
            assert np.exp(sequence_log_prob(np.log(probs), list(seq))) == pytest.approx(truth[seq])


def test_beam_one_is_greedy_on_peaky_distributions():
    rng = np.random.default_rng(1)
    for _ in range(50):
        T, C = rng.integers(3, 30), rng.integers(2, 8)
        peak = rng.integers(0, C, size=T)
        probs = np.full((T, C), 0.05 / (C - 1))
        probs[np.arange(T), peak] = 0.95
        logp = np.log(probs)
        assert prefix_beam_search(logp, beam=1)[0] == greedy(logp)
        assert prefix_beam_search(logp, beam=5)[0] == greedy(logp)


def test_alignment_gives_each_gloss_its_frames_and_spans():
    probs = np.array([[.1, .9, .0], [.1, .9, .0], [.8, .1, .1], [.1, .8, .1], [.1, .1, .8], [.9, .05, .05]])
    logp = np.log(probs + 1e-9)
    assert align(logp, [1, 1, 2]) == [[0, 1], [3], [4]]
    r = read_glosses(np.log(probs + 1e-9), ["A", "B"], beam=5, stride=4, fps=25.0, frames=22)
    assert r.glosses == ["A", "A", "B"]
    assert r.spans == [(0.0, 0.32), (0.48, 0.64), (0.64, 0.8)]
    assert r.confidences[0] == pytest.approx(0.9, abs=1e-6) and r.confidences[2] == pytest.approx(0.8, abs=1e-6)
    short = read_glosses(np.log(probs + 1e-9), ["A", "B"], frames=18)  # the last span ends with the clip
    assert short.spans[-1] == (0.64, 0.72)


def test_word_errors_by_hand():
    perfect = word_errors(["MORGEN REGEN NORD", "SONNE"], ["MORGEN REGEN NORD", "SONNE"])
    assert perfect["wer"] == 0 and perfect["substitutions"] == perfect["deletions"] == perfect["insertions"] == 0
    # ref A B C D / hyp A X C: B->X substituted, D deleted; ref E / hyp E F: F inserted -> 3 errors / 5 glosses
    wrong = word_errors(["A B C D", "E"], ["A X C", "E F"])
    assert (wrong["substitutions"], wrong["deletions"], wrong["insertions"]) == (1, 1, 1)
    assert wrong["wer"] == pytest.approx(60.0) and wrong["del_rate"] == pytest.approx(20.0)
    assert word_errors(["A B"], [""])["deletions"] == 2


@pytest.fixture(scope="module")
def gloss_run(tiny_corpus, tmp_path_factory):
    """tiny.toml with the gloss head on the generated gloss corpus (as tests/test_lexicon.py)."""
    from slsearch.training.loop import train

    out = tmp_path_factory.mktemp("recognize") / "run"
    train("tiny", *tiny_corpus, out, overrides=["loss.lm_weight=0", "loss.gloss_weight=2.0", "train.epochs=12"],
          progress=False)
    return out


def test_recognize_reads_glosses_with_spans(gloss_run, tiny_corpus, tmp_path):
    vocabulary = {g for c in read_manifest(tiny_corpus[0]) for g in c.gloss.split()}
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a pose file")
    r = runner.invoke(app, ["recognize", str(tiny_corpus[1]), str(bad), "--model", str(gloss_run), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["recognitions"]) == 10 and len(out["failures"]) == 1 and "broken.npz" in out["failures"][0]
    some = 0
    for rec in out["recognitions"]:
        assert rec["reference"] and rec["duration"] > 0
        assert rec["glosses"] == " ".join(i["gloss"] for i in rec["items"])
        some += len(rec["items"])
        for i in rec["items"]:
            assert i["gloss"] in vocabulary
            assert 0 <= i["start"] < i["end"] <= rec["duration"] + 1e-6
            assert 0 < i["confidence"] <= 1
    assert some > 0
    table = runner.invoke(app, ["recognize", str(tiny_corpus[1]), "--model", str(gloss_run), "--beam", "1"])
    assert table.exit_code == 0 and "beam 1" in table.stdout


def test_eval_wer_scores_the_readings(gloss_run, tiny_corpus, tmp_path):
    r = runner.invoke(app, ["eval", "--wer", "--manifest", str(tiny_corpus[1]), "--model", str(gloss_run),
                            "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    m = report["metrics"]
    assert report["count"] == 10 and report["beam"] == 5
    assert m["reference_glosses"] == sum(len(c.gloss.split()) for c in read_manifest(tiny_corpus[1]))
    errors = m["substitutions"] + m["deletions"] + m["insertions"]
    assert m["wer"] == pytest.approx(100 * errors / m["reference_glosses"], abs=0.01)
    text = runner.invoke(app, ["eval", "--wer", "--manifest", str(tiny_corpus[1]), "--model", str(gloss_run)])
    assert text.exit_code == 0 and "WER" in text.stdout and "deletions" in text.stdout
    plain_manifest = tmp_path / "no-glosses.jsonl"
    clips = read_manifest(tiny_corpus[1])
    for c in clips:
        c.gloss = None
    write_manifest(clips, plain_manifest)
    refused = runner.invoke(app, ["eval", "--wer", "--manifest", str(plain_manifest), "--model", str(gloss_run)])
    assert refused.exit_code != 0 and "no clips with glosses" in refused.stderr and "Traceback" not in refused.output


def test_a_model_without_a_gloss_head_is_refused(tiny_checkpoint, tiny_corpus):
    r = runner.invoke(app, ["recognize", str(tiny_corpus[1]), "--model", str(tiny_checkpoint)])
    assert r.exit_code != 0 and "no gloss head" in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1


def test_render_glosses_captions_the_skeleton_with_the_reading(gloss_run, tiny_corpus, tmp_path):
    """`render --glosses`: the reading is printed and drawn; the frames inside a gloss's span differ from the
    same skeleton drawn without captions only in the caption band at the bottom."""
    import av

    clip = read_manifest(tiny_corpus[1])[0]
    r = runner.invoke(app, ["render", str(clip.path), str(tmp_path / "g.mp4"), "--glosses", "--model", str(gloss_run),
                            "--size", "320x240"])
    assert r.exit_code == 0, r.output
    assert "glosses: " in r.output
    r2 = runner.invoke(app, ["render", str(clip.path), str(tmp_path / "plain.mp4"), "--size", "320x240"])
    assert r2.exit_code == 0, r2.output

    def frames(p):
        with av.open(str(p)) as c:
            return np.stack([f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)])

    captioned, plain = frames(tmp_path / "g.mp4"), frames(tmp_path / "plain.mp4")
    assert captioned.shape == plain.shape
    diff = np.abs(captioned - plain).mean(axis=(0, 3))  # (H, W)
    assert diff[-40:].mean() > 5 * max(diff[:-60].mean(), 0.05)  # the text is in the bottom band
    bad = runner.invoke(app, ["render", str(clip.path), str(tmp_path / "x.mp4"), "--glosses", "--model",
                              str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
