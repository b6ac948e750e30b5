"""Checkpoint folders: round trip, hash, and refusal of foreign or incompatible ones."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from gloss_poses import make_clip
from slsearch import encode_texts, encode_videos, load_model, save_model
from slsearch.errors import SlsearchError
from slsearch.models.model import build_model
from slsearch.models.tokenizer import TextTokenizer
from slsearch.training.recipe import load_recipe


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tok = TextTokenizer.from_corpus(["regen und wind", "sonne heute", "schnee morgen im norden"], 100)
    model = build_model(load_recipe("tiny").model, tok).eval()
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    save_model(model, folder, recipe={"train": {"epochs": 1}})
    return model, folder


def test_round_trip_same_outputs_and_hash(saved):
    model, folder = saved
    loaded = load_model(folder)
    assert not loaded.training
    assert len(loaded.checkpoint_hash) == 16 and loaded.checkpoint_hash == model.checkpoint_hash
    assert (loaded.embed_dim, loaded.token_dim, loaded.temporal_stride) == (model.embed_dim, model.token_dim, 4)
    pose = make_clip([1, 2, 3], np.random.default_rng(0))
    a, b = encode_videos(model, [pose]), encode_videos(loaded, [pose])
    assert np.allclose(a.vectors, b.vectors, atol=1e-6) and np.allclose(a.tokens[0], b.tokens[0], atol=1e-6)
    ta, tb = encode_texts(model, ["regen heute"]), encode_texts(loaded, ["regen heute"])
    assert np.allclose(ta.vectors, tb.vectors, atol=1e-6)
    assert loaded.tokenizer.decode(loaded.tokenizer.ids("regen heute")) == "regen heute"
    assert json.loads((folder / "config.json").read_text())["recipe"] == {"train": {"epochs": 1}}


def _copy(folder, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(folder, dst)
    return dst


def test_refuses_foreign_and_incompatible(saved, tmp_path):
    _, folder = saved
    with pytest.raises(SlsearchError, match="checkpoint folder not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlsearchError, match="not an slsearch checkpoint"):
        load_model(tmp_path / "empty")

    ck = _copy(folder, tmp_path)
    cfg = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps({**cfg, "format": "open_clip"}))
    with pytest.raises(SlsearchError, match="not an slsearch checkpoint"):
        load_model(ck)
    (ck / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(SlsearchError, match="format version 99 is not supported"):
        load_model(ck)
    (ck / "config.json").write_text(json.dumps({**cfg, "model": {**cfg["model"], "hologram_dim": 3}}))
    with pytest.raises(SlsearchError, match="incompatible model config.*hologram_dim"):
        load_model(ck)
    (ck / "config.json").write_text(json.dumps({**cfg, "model": {**cfg["model"], "token_dim": 32}}))
    with pytest.raises(SlsearchError, match="weights do not match"):
        load_model(ck)
    (ck / "config.json").write_text(json.dumps(cfg))
    state = load_file(str(ck / "model.safetensors"))
    state.pop("logit_scale_fine")
    save_file(state, str(ck / "model.safetensors"))
    with pytest.raises(SlsearchError, match="weights do not match"):
        load_model(ck)
