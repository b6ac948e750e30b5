"""The synthetic signer: layout, determinism, learnable signs, signer and noise variation, corpora."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slsearch.data import layout as L
from slsearch.data.manifest import read_manifest
from slsearch.data.poses import load_pose
from slsearch.data.synth import (
    Lexicon,
    Signer,
    SynthSigner,
    apply_detection_noise,
    demo_corpus,
    load_corpus,
    phoenix_corpus,
    sign_sentence,
    synthesize_corpus,
)
from slsearch.data.synth.weather import number_word, ordinal_word
from slsearch.errors import InputError

SENTENCE = "MORGEN NORD REGEN STARK TEMPERATUR ZEHN GRAD"


def dominant_hand_features(pose: np.ndarray, left_handed: bool = False) -> np.ndarray:
    """(T, 543, 3) -> (T', 44) dominant-hand trajectory in shoulder widths, frames where it was seen."""
    hand = L.LEFT_HAND if left_handed else L.RIGHT_HAND
    sw = np.nanmedian(np.linalg.norm(pose[:, 11, :2] - pose[:, 12, :2], axis=-1))
    centre = np.nanmedian((pose[:, 11, :2] + pose[:, 12, :2]) / 2, axis=0)
    h = pose[:, hand, :2]
    wrist = (h[:, 0] - centre) / sw
    shape = (h - h[:, :1]) / sw * 3  # finger configuration, weighted like the wrist path
    feats = np.concatenate([wrist * 2, shape.reshape(len(h), -1) * 0.5], axis=1)
    return feats[np.isfinite(feats).all(1)]


def dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Dynamic time warping distance, normalised by the path length bound."""
    cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
    acc = np.full((len(a) + 1, len(b) + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return float(acc[-1, -1] / (len(a) + len(b)))


def test_output_has_the_mediapipe_layout_and_a_plausible_body():
    pose = SynthSigner().sign(SENTENCE, "synth01", "clip-a")
    assert pose.dtype == np.float32 and pose.shape[1:] == (L.N_LANDMARKS, 3)
    seen = np.isfinite(pose[:, 0, 0])
    sw = np.linalg.norm(pose[seen, 11, :2] - pose[seen, 12, :2], axis=-1)
    assert 0.28 < np.median(sw) < 0.42  # a news-video framing, not a close-up
    assert np.all(pose[seen, 11, 0] > pose[seen, 12, 0])  # MediaPipe's LEFT_SHOULDER is on the image right
    assert np.all(pose[seen, 0, 1] < pose[seen, 11, 1])  # nose above the shoulders
    face = pose[seen][:, L.FACE]
    assert 0.3 < np.nanmedian(face[..., 0]) < 0.7 and 0.2 < np.nanmedian(face[..., 1]) < 0.6
    assert np.nanmax(np.abs(face[..., 2])) < 0.1  # face z: small, relative to the head
    hands = pose[:, L.RIGHT_HAND]
    wrist_z = hands[np.isfinite(hands[:, 0, 2]), 0, 2]
    assert len(wrist_z) > 0 and np.allclose(wrist_z, 0, atol=1e-6)  # hand z is relative to the wrist
    assert np.isnan(pose).any()  # realistic by default: some detections are missing


def test_same_seed_same_pose_other_seed_other_pose():
    a = SynthSigner(seed=3).sign(SENTENCE, "synth01", "clip-a", num_frames=90)
    b = SynthSigner(seed=3).sign(SENTENCE, "synth01", "clip-a", num_frames=90)
    c = SynthSigner(seed=4).sign(SENTENCE, "synth01", "clip-a", num_frames=90)
    np.testing.assert_array_equal(a, b)  # NaNs in the same places too
    assert a.shape == c.shape == (90, L.N_LANDMARKS, 3)
    assert not np.allclose(np.nan_to_num(a), np.nan_to_num(c))
    # The lexicon is a function of (gloss, seed) alone.
    assert Lexicon(0)("REGEN") == Lexicon(0)("REGEN")
    assert Lexicon(0)("REGEN") != Lexicon(1)("REGEN")


def test_lexicon_shares_components_across_signs():
    lex = Lexicon(0)
    signs = [lex(g) for g in {g for c in demo_corpus() for g in c.gloss.split()}]
    assert len({s.handshape for s in signs}) >= 15 and len({s.location for s in signs}) >= 12
    combos = {(s.handshape, s.location, s.movement, s.orientation, s.hands) for s in signs}
    assert len(combos) > 0.95 * len(signs)  # glosses differ by their combination ...
    for channel in ("handshape", "location", "movement", "orientation"):  # ... not by any one channel
        values = [getattr(s, channel) for s in signs]
        assert max(values.count(v) for v in set(values)) >= 20
    assert lex("loc-NORD").handshape == lex("NORD").handshape  # PHOENIX morphology keeps the base sign
    assert lex("neg-HABEN").non_manual == "shake"


def test_same_gloss_is_closer_than_another_gloss_with_the_same_handshape():
    lex = Lexicon(0)
    by_shape: dict[str, list[str]] = {}
    for g in sorted({g for c in demo_corpus() for g in c.gloss.split()}):
        if lex(g).hands == "one":
            by_shape.setdefault(lex(g).handshape, []).append(g)
    pairs = [(a, b) for gs in by_shape.values() for a, b in zip(gs[0:8:2], gs[1:8:2])][:10]
    assert len(pairs) == 10
    synth = SynthSigner(seed=0)  # realistic noise and per-occurrence variation
    a_signer, b_signer = Signer.from_name("synth01"), Signer.from_name("synth03")
    assert not a_signer.left_handed and not b_signer.left_handed
    same, other = [], []
    for a, b in pairs:
        a1 = dominant_hand_features(synth.sign(a, "synth01", f"{a}-1"))
        a2 = dominant_hand_features(synth.sign(a, "synth03", f"{a}-2"))  # another person, another day
        b1 = dominant_hand_features(synth.sign(b, "synth01", f"{b}-1"))
        same.append(dtw(a1, a2))
        other.append(dtw(a1, b1))
    wins = sum(s < o for s, o in zip(same, other))
    assert wins >= 9, (same, other)
    assert np.mean(same) < 0.6 * np.mean(other)


def test_signers_differ_and_left_handers_sign_with_the_left_hand():
    lex = Lexicon(0)
    glosses = [g for g in sorted({g for c in demo_corpus() for g in c.gloss.split()}) if lex(g).hands == "one"][:6]
    a = sign_sentence(glosses, Signer.from_name("p1", left_handed=False), lex, np.random.default_rng(0), 80)
    b = sign_sentence(glosses, Signer.from_name("p2", left_handed=False), lex, np.random.default_rng(0), 80)
    width = lambda p: np.linalg.norm(p[:, 11, :2] - p[:, 12, :2], axis=-1).mean()  # noqa: E731
    differs = [abs(width(a) - width(b)) > 0.003, abs(a[:, 0, 0].mean() - b[:, 0, 0].mean()) > 0.003,
               abs(a[:, 0, 1].mean() - b[:, 0, 1].mean()) > 0.003]
    assert sum(differs) >= 2  # size and place in the frame vary per person
    lefty = sign_sentence(glosses, Signer.from_name("p1", left_handed=True), lex, np.random.default_rng(0), 80)
    travel = lambda p, hand: np.nansum(np.linalg.norm(np.diff(p[:, hand.start, :2], axis=0), axis=-1))  # noqa
    assert travel(a, L.RIGHT_HAND) > 1.5 * travel(a, L.LEFT_HAND)
    assert travel(lefty, L.LEFT_HAND) > 1.5 * travel(lefty, L.RIGHT_HAND)
    # Mirrored: the lefty's dominant wrist sits on the other side of the body midline.
    mid = lambda p: (p[:, 11, 0] + p[:, 12, 0]) / 2  # noqa: E731
    assert np.mean(a[:, L.RIGHT_HAND.start, 0] - mid(a)) < 0 < np.mean(lefty[:, L.LEFT_HAND.start, 0] - mid(lefty))


def test_detection_noise_scales_with_difficulty():
    clean = sign_sentence(SENTENCE.split(), Signer.from_name("p1", left_handed=False), Lexicon(0),
                          np.random.default_rng(1), 150)
    assert not np.isnan(clean).any()
    np.testing.assert_array_equal(apply_detection_noise(clean, np.random.default_rng(0), 0.0), clean)

    def measure(d: float) -> tuple[float, float]:
        missing, jitter = [], []
        for s in range(6):
            noisy = apply_detection_noise(clean, np.random.default_rng(s), d)
            missing.append(np.isnan(noisy[:, L.RIGHT_HAND.start, 0]).mean())
            jitter.append(np.nanmedian(np.abs(noisy[:, 11, :2] - clean[:, 11, :2])))
        return float(np.mean(missing)), float(np.mean(jitter))

    (m1, j1), (m2, j2) = measure(1.0), measure(2.0)
    assert 0.02 < m1 < 0.5  # hands go missing in runs, as with MediaPipe, but most frames are seen
    assert m2 > m1 and j2 > 1.5 * j1 > 0
    noisy = apply_detection_noise(clean, np.random.default_rng(0), 1.0)
    lost = np.isnan(noisy[:, L.RIGHT_HAND.start, 0])
    runs = np.diff(np.concatenate([[0], lost.astype(int), [0]]))
    assert (runs == 1).sum() < lost.sum()  # some gaps last more than one frame


def test_clip_length_follows_num_frames():
    synth = SynthSigner()
    for n in (20, 64, 300):
        assert synth.sign(SENTENCE, "s", f"c{n}", num_frames=n).shape[0] == n
    free = synth.sign(SENTENCE, "s", "free")
    assert 7 * 6 < len(free) < 7 * 30  # natural timing: a few frames per sign at 25 fps
    rest = synth.sign("__ON__ REGEN __OFF__", "s", "rest", num_frames=40)
    assert rest.shape[0] == 40


def test_demo_grammar_counts():
    clips = demo_corpus()
    texts = {c.text for c in clips}
    glosses = {g for c in clips for g in c.gloss.split()}
    assert len(texts) >= 2000 and len(glosses) >= 300
    splits = {s: {c.text for c in clips if c.split == s} for s in ("train", "dev", "test")}
    assert all(len(v) > 150 for v in splits.values())
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["dev"])
    signers = {c.signer for c in clips}
    assert len(signers) >= 6
    assert any(Signer.from_name(s).left_handed for s in signers)
    assert len(clips) > len(texts)  # some sentences are signed twice, by different people
    assert {c.signer for c in clips if c.text == next(iter(t for t in texts))} and len({c.id for c in clips}) == len(
        clips)
    # German text and gloss order differ: the time comes first in the glosses.
    c = next(c for c in clips if c.text.startswith("die temperaturen erreichen"))
    assert c.gloss.split()[0] != "TEMPERATUR" and "TEMPERATUR" in c.gloss
    assert number_word(24) == "vierundzwanzig" and ordinal_word(3) == "dritten" and ordinal_word(21) == "einundzwanzigsten"


def test_synthesize_corpus_writes_poses_and_manifests(tmp_path):
    summary = synthesize_corpus("demo", tmp_path / "d", limit=2, workers=1, progress=False)
    assert summary["clips"] == 6 and summary["splits"] == {"dev": 2, "test": 2, "train": 2}
    clips = read_manifest(tmp_path / "d" / "manifest.jsonl")
    assert len(clips) == 6 and all(c.text and c.gloss and c.signer and c.num_frames for c in clips)
    assert len(read_manifest(tmp_path / "d" / "test.jsonl")) == 2
    for c in clips:
        seq = load_pose(c, fps=None)
        assert seq.fps == 25.0 and seq.frames == c.num_frames
    # Workers do not change the result: every clip has its own seed.
    synthesize_corpus("demo", tmp_path / "e", splits=["test"], limit=2, workers=2, progress=False)
    for c in read_manifest(tmp_path / "e" / "test.jsonl"):
        np.testing.assert_array_equal(load_pose(c).data, load_pose(tmp_path / "d" / "poses" / "test" /
                                                                   f"{c.id}.npz").data)


def test_any_manifest_with_glosses_is_a_corpus(tmp_path):
    rows = [{"id": "a", "text": "你们好", "gloss": "你们 好", "signer": 3, "num_frames": 30, "split": "dev"},
            {"id": "b", "text": "no gloss here"}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    clips = load_corpus(path)
    assert [c.id for c in clips] == ["a"] and clips[0].split == "dev"
    summary = synthesize_corpus(path, tmp_path / "out", workers=1, progress=False)
    assert summary["frames"] == 30
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps({"id": "x", "text": "hi"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="gloss"):
        load_corpus(bare)
    with pytest.raises(InputError, match="neither"):
        load_corpus(tmp_path / "missing.jsonl")


def test_synphoenix_keeps_real_sentences_signers_and_lengths(shared_data):
    clips = phoenix_corpus(shared_data / "phoenix14t")
    counts = {s: sum(c.split == s for c in clips) for s in ("train", "dev", "test")}
    assert counts == {"train": 7096, "dev": 519, "test": 642}
    assert len({c.signer for c in clips}) == 9
    first = next(c for c in clips if c.split == "dev")
    pose = SynthSigner().sign(first.gloss, first.signer, first.id, first.num_frames)
    assert pose.shape[0] == first.num_frames


def test_cli_synth_writes_a_corpus_and_reports_bad_input(tmp_path):
    from typer.testing import CliRunner

    from slsearch.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["synth", "--corpus", "demo", "--out", str(tmp_path / "c"), "--split", "dev,test",
                                 "--limit", "1", "--workers", "1", "--difficulty", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["clips"] == 2 and summary["splits"] == {"dev": 1, "test": 1}
    assert sorted(p.name for p in (tmp_path / "c").glob("*.jsonl")) == ["dev.jsonl", "manifest.jsonl", "test.jsonl"]
    bad = runner.invoke(app, ["synth", "--corpus", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "nope.jsonl" in bad.output


def test_a_corpus_folder_of_split_manifests_is_read_split_by_split(shared_data):
    clips = load_corpus(shared_data / "csl_daily", splits=["dev"])
    assert len(clips) == 1077 and {c.split for c in clips} == {"dev"}
    c = clips[0]
    pose = SynthSigner().sign(c.gloss, c.signer, c.id, c.num_frames)  # Chinese glosses sign as well
    assert pose.shape == (c.num_frames, L.N_LANDMARKS, 3)
