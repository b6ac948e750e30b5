"""Two visual streams (DVE-SLT, issue 18): the windowed pose stream, fusion, the per-stream and inter-stream
losses, a single-stream model unchanged, and a dual-stream model trained, indexed and searched end to end."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slsearch.cli import app
from slsearch.errors import SlsearchError
from slsearch.models.losses import C2RLLoss, symmetric_infonce
from slsearch.models.video_tower import FUSIONS, PoseFrontEnd, VideoTower, WindowedPoseFrontEnd

runner = CliRunner()
F_IN, D = 12, 16


def _tower(streams: int, fusion: str = "concat") -> VideoTower:
    torch.manual_seed(0)
    more = [WindowedPoseFrontEnd(D, F_IN, 0.0)] if streams > 1 else None
    tower = VideoTower(PoseFrontEnd(D, F_IN, 0.0), D, 3, 1, 2, 32, 0.0, D, D, gloss_classes=3,
                       more_streams=more, fusion=fusion)
    return tower.eval()


def test_windowed_stream_gives_each_frame_its_nearest_window():
    fe = WindowedPoseFrontEnd(D, F_IN, 0.0, window=4, stride=2).eval()
    x = torch.randn(1, 9, F_IN)
    out = fe(x, torch.tensor([9]))
    assert out.shape == (1, 9, D)
    # windows start at 0, 2, 4, 6 (the last padded); frames 0-2 share window 0 ((t - 1.5) / 2 rounds to 0)
    assert torch.equal(out[0, 0], out[0, 1]) and torch.equal(out[0, 1], out[0, 2])
    assert not torch.equal(out[0, 2], out[0, 3])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_clip_gets_the_same_tokens_alone_or_in_a_padded_batch(fusion):
    tower = _tower(2, fusion)
    short, long = torch.randn(1, 20, F_IN), torch.randn(1, 37, F_IN)
    batch = torch.zeros(2, 37, F_IN)
    batch[0, :20], batch[1] = short[0], long[0]
    with torch.no_grad():
        alone = tower(short, torch.tensor([20]))
        both = tower(batch, torch.tensor([20, 37]))
    n = alone["tokens"].shape[1]
    torch.testing.assert_close(both["tokens"][0, :n], alone["tokens"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both["global"][0], alone["global"][0], atol=1e-5, rtol=1e-5)
    assert len(both["streams"]) == 2 and both["streams"][1]["tokens"].shape == both["tokens"].shape
    assert both["gloss_logits"].shape[:2] == both["tokens"].shape[:2]


def test_one_stream_keeps_the_single_stream_weights_and_outputs():
    tower = _tower(1)
    names = set(tower.state_dict())
    assert not any(n.startswith(("more_streams", "fusion")) for n in names)  # old checkpoints load as they are
    out = tower(torch.randn(2, 16, F_IN), torch.tensor([16, 10]))
    assert "streams" not in out


def test_the_stream_losses_reward_agreeing_streams():
    torch.manual_seed(0)
    B, L = 6, 5
    g = torch.nn.functional.normalize(torch.randn(B, D), dim=-1)
    tokens, mask = torch.randn(B, L, D), torch.ones(B, L, dtype=torch.bool)
    scale = torch.tensor(np.log(100.0))
    loss = C2RLLoss(cico_weight=0, global_weight=0, lm_weight=0, stream_weight=1.0, inter_weight=1.0)
    args = dict(video_tokens=tokens, video_mask=mask, video_global=g, text_tokens=tokens, text_mask=mask,
                text_global=g, logit_scale_fine=scale, logit_scale_global=scale)
    same = loss(**args, stream_tokens=[tokens, tokens], stream_globals=[g, g])
    shuffled = loss(**args, stream_tokens=[tokens, tokens], stream_globals=[g, g[torch.arange(B).roll(1)]])
    assert set(same) == {"stream_loss", "inter_loss"}
    assert same["inter_loss"] == pytest.approx(float(symmetric_infonce(g @ g.T, scale)), rel=1e-6)
    assert same["inter_loss"] < 0.05 < shuffled["inter_loss"]  # streams that disagree on which clip is which pay


def test_a_recipe_naming_a_stream_that_does_not_exist_is_refused_before_training(tiny_corpus, tmp_path):
    from slsearch.training.loop import train

    with pytest.raises(SlsearchError, match=r"model.streams \['pose', 'rgb'\].*available are pose, pose_windows, "
                                            r"rgb_crops"):
        train("tiny", *tiny_corpus, tmp_path / "run", overrides=['model.streams=["pose", "rgb"]'], progress=False)


def test_a_dual_stream_model_trains_indexes_and_searches(tiny_corpus, tmp_path):
    train_m, dev_m = tiny_corpus
    run = tmp_path / "dual"
    r = runner.invoke(app, ["train", "--recipe", "tiny", "--manifest", str(train_m), "--dev", str(dev_m), "--out",
                            str(run), "--set", 'model.streams=["pose", "pose_windows"]', "--set", "train.epochs=4",
                            "--set", "loss.lm_weight=0"])
    assert r.exit_code == 0, r.output
    epochs = [e for e in map(json.loads, (run / "train_log.jsonl").read_text().splitlines()) if "stream_loss" in e]
    assert len(epochs) == 4 and all(np.isfinite(e["inter_loss"]) for e in epochs)
    assert epochs[-1]["stream_loss"] < epochs[0]["stream_loss"]  # each stream learns to align with the text
    from slsearch.models.checkpoint import load_model

    model = load_model(run)
    assert model.config.streams == ["pose", "pose_windows"] and model.video.fusion is not None
    r = runner.invoke(app, ["index", str(train_m), "--model", str(run), "--out", str(tmp_path / "idx"), "--json"])
    assert r.exit_code == 0, r.output
    texts = [json.loads(line)["text"] for line in train_m.read_text().splitlines()]
    r = runner.invoke(app, ["query", texts[0], "--index", str(tmp_path / "idx"), "-k", "5", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["results"]
    assert len(hits) == 5


# --- pseudo-glosses: a gloss column for corpora without one ----------------------------------------------

def test_pseudo_glosses_keep_the_content_words_in_order():
    from slsearch.data.pseudo_glosses import function_words, pseudo_gloss

    texts = ["in der nacht regnet es in bayern .", "es schneit in der eifel", "am morgen ist es in köln kalt",
             "the rain in spain", "morgen 12 grad"] * 4
    skip = function_words(texts)
    assert {"in", "es", "der", "am", "ist", "the"} <= skip and "12" not in skip and "köln" not in skip
    assert pseudo_gloss("In der Nacht regnet es in Bayern.", skip) == "NACHT REGNET BAYERN"
    assert pseudo_gloss("morgen 12 grad", skip) == "MORGEN 12 GRAD"


def test_pseudo_glosses_are_lemmas_of_content_words_in_the_sentences_language():
    """German and English by the tagger (content parts of speech, base forms), another language by its
    lemmas without the frequent short words, an unknown one by frequency; models from before lemmas
    existed keep theirs (the method is in the saved recipe)."""
    from slsearch.data.pseudo_glosses import fit_pseudo_glosser

    de = ["in der nacht regnet es in bayern .", "es schneit in der eifel", "morgen wird es nicht wärmer",
          "am sonntag scheint die sonne"] * 3
    g = fit_pseudo_glosser(de)
    assert (g.method, g.language) == ("lemmas", "de")
    assert [g(t) for t in de[:4]] == ["NACHT REGNEN BAYERN", "SCHNEIEN EIFEL", "MORGEN NICHT WARM",
                                      "SONNTAG SCHEINEN SONNE"]
    en = ["the rain in spain falls mainly on the plain", "tomorrow it will not be sunny"] * 3
    g = fit_pseudo_glosser(en)
    assert (g.method, g.language) == ("lemmas", "en") and g(en[0]) == "RAIN SPAIN FALL MAINLY PLAIN"
    fr = ["il pleut beaucoup dans le nord de la france demain", "les enfants mangent des pommes rouges",
          "la neige tombe sur les montagnes"] * 3
    g = fit_pseudo_glosser(fr)
    assert (g.method, g.language) == ("lemmas", "fr") and {"le", "de"} <= g.skip  # la, les: le
    assert g(fr[1]) == "ENFANT MANGER POMME ROUGE"
    assert fit_pseudo_glosser(["xq zzv kkr", "zzv qqw"] * 3).method == "frequency"  # no language found
    g = fit_pseudo_glosser(de, method="frequency")
    assert g.method == "frequency" and g(de[0]) == "NACHT REGNET BAYERN"
    with pytest.raises(SlsearchError, match="pseudo_gloss_method"):
        fit_pseudo_glosser(de, method="tagger")
    with pytest.raises(SlsearchError, match="no lemmatiser"):
        fit_pseudo_glosser(de, language="tlh")


def test_pseudo_gloss_manifest_through_the_cli(tmp_path):
    src = tmp_path / "train.jsonl"
    rows = [{"id": f"c{i}", "path": f"c{i}.npz", "text": t, "gloss": "TRUE GLOSS"}
            for i, t in enumerate(["in der nacht regnet es", "es schneit in der eifel", "sonne in köln"] * 3)]
    rows.append({"id": "blank", "path": "x.npz"})
    src.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    r = runner.invoke(app, ["manifest", str(src), "--pseudo-glosses", "--out", str(tmp_path / "pg.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["rows"] == 10 and s["with_pseudo_glosses"] == 9 and s["replaced_glosses"] == 9
    out = [json.loads(line) for line in (tmp_path / "pg.jsonl").read_text().splitlines()]
    assert out[0]["gloss"] == "NACHT REGNEN" and out[2]["gloss"] == "SONNE KÖLN" and "gloss" not in out[-1]
    assert (s["method"], s["language"]) == ("lemmas", "de")
    r = runner.invoke(app, ["manifest", str(src), "--pseudo-glosses", "--method", "frequency", "--out",
                            str(tmp_path / "pg.jsonl"), "--json"])
    assert json.loads(r.stdout)["method"] == "frequency"
    assert json.loads((tmp_path / "pg.jsonl").read_text().splitlines()[0])["gloss"] == "NACHT REGNET"
    r = runner.invoke(app, ["manifest", str(tmp_path / "none.jsonl"), "--pseudo-glosses", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "none.jsonl" in r.output


def test_clips_without_hands_are_indexed_and_counted(tiny_corpus, tiny_checkpoint, tmp_path):
    """A clip whose hands are never detected still gets a vector; index and train say how many there are."""
    from slsearch.data import layout as L
    from slsearch.data.manifest import read_manifest
    from slsearch.data.pose_files import hands_seen, read_npz, save_pose_npz
    from slsearch.training.loop import train

    folder = tmp_path / "clips"
    folder.mkdir()
    for i, c in enumerate(read_manifest(tiny_corpus[0])[:3]):
        seq = read_npz(c.path)
        data = seq.data.copy()
        if i == 0:
            data[:, L.LEFT_HAND.start:L.RIGHT_HAND.stop] = np.nan
        assert hands_seen(data) == (i != 0)
        save_pose_npz(folder / f"c{i}.npz", data, seq.fps)
    r = runner.invoke(app, ["index", str(folder), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "idx"),
                            "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["clips_added"] == 3 and s["clips_without_hands"] == 1
    assert any("1 of 3 clips show no hand in any frame (e.g. c0)" in n for n in s["notes"])
    heard = []
    manifest = tmp_path / "train.jsonl"
    clips = read_manifest(tiny_corpus[0])
    clips[0].path = folder / "c0.npz"
    from slsearch.data.manifest import write_manifest

    write_manifest(clips, manifest)
    train("tiny", manifest, tiny_corpus[1], tmp_path / "run", overrides=["train.epochs=1", "loss.lm_weight=0"],
          progress=False, notify=lambda kind, message: heard.append(message))
    assert any(f"1 of {len(clips)} training clips show no hand" in m for m in heard), heard
