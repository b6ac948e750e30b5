"""The one embedding path: shapes, normalisation, input order, batch independence, bad input."""

import math

import numpy as np
import pytest

from gloss_poses import make_clip, make_corpus
from slsearch import encode_texts, encode_videos
from slsearch.data.features import pose_to_features
from slsearch.data.manifest import read_manifest
from slsearch.errors import SlsearchError
from slsearch.models.model import ModelConfig, build_model
from slsearch.models.tokenizer import TextTokenizer
from slsearch.training.recipe import load_recipe


@pytest.fixture(scope="module")
def model():
    cfg: ModelConfig = load_recipe("tiny").model
    tok = TextTokenizer.from_corpus(["regen und wind", "sonne heute", "schnee morgen im norden"], 100)
    return build_model(cfg, tok).eval()


def test_encode_videos_shapes_order_and_batch_independence(model):
    rng = np.random.default_rng(0)
    poses = [make_clip(g, rng) for g in ([0, 1], [2, 3, 4], [5, 6])]
    poses.append(poses[0][:5])  # 5 frames -> ceil(ceil(5/2)/2) = 2 tokens
    one = encode_videos(model, poses, batch_size=1)
    many = encode_videos(model, poses, batch_size=3)
    assert one.vectors.shape == (4, model.embed_dim) and one.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(one.vectors, axis=1), 1.0, atol=1e-5)
    ceil_quarter = lambda n: math.ceil(math.ceil(n / 2) / 2)  # two max-pools with ceil_mode
    assert [t.shape for t in one.tokens] == [(ceil_quarter(len(p)), model.token_dim) for p in poses]
    assert one.tokens[3].shape[0] == 2
    for a, b in zip(one.tokens, many.tokens):
        assert np.allclose(a, b, atol=1e-4)
    assert np.allclose(one.vectors, many.vectors, atol=1e-5)
    # precomputed features and the pose give the same embedding
    feats = encode_videos(model, [pose_to_features(poses[1])])
    assert np.allclose(feats.vectors[0], one.vectors[1], atol=1e-5)


def test_encode_videos_reads_files_and_clips(model, tmp_path):
    manifest = make_corpus(tmp_path, 3)
    clips = read_manifest(manifest)
    from_clips = encode_videos(model, clips)
    from_paths = encode_videos(model, [str(c.path) for c in clips])
    from_arrays = encode_videos(model, [np.load(c.path)["pose"] for c in clips])
    assert np.allclose(from_clips.vectors, from_paths.vectors, atol=1e-6)
    assert np.allclose(from_clips.vectors, from_arrays.vectors, atol=1e-6)


def test_encode_texts(model):
    enc = encode_texts(model, ["regen und wind", "sonne", "schnee morgen im norden"], batch_size=2)
    assert enc.vectors.shape == (3, model.embed_dim)
    assert np.allclose(np.linalg.norm(enc.vectors, axis=1), 1.0, atol=1e-5)
    ids = [model.tokenizer.ids(t) for t in ["regen und wind", "sonne", "schnee morgen im norden"]]
    assert [t.shape[0] for t in enc.tokens] == [len(i) for i in ids]
    again = encode_texts(model, ["sonne"])
    assert np.allclose(again.vectors[0], enc.vectors[1], atol=1e-5)


def test_encode_bad_input(model):
    with pytest.raises(SlsearchError, match="fewer than the temporal stride"):
        encode_videos(model, [np.zeros((3, 543, 3), np.float32)])
    with pytest.raises(SlsearchError, match="empty sentence"):
        encode_texts(model, ["regen", "  "])
    with pytest.raises(SlsearchError, match="list of sentences"):
        encode_texts(model, "regen")
    assert encode_texts(model, []).vectors.shape == (0, model.embed_dim)
