"""--text-model DIR: a local pretrained mBART (a tiny one saved by the test) with a trimmed vocabulary."""

import numpy as np
import pytest
import torch
from transformers import MBartConfig, MBartForConditionalGeneration

from gloss_poses import WORDS, make_corpus
from slsearch import encode_texts, load_model
from slsearch.models.tokenizer import train_bpe
from slsearch.training.loop import build_for_recipe, train
from slsearch.training.recipe import load_recipe

GENERAL_TEXT = [
    "the quick brown fox jumps over the lazy dog", "ein kleines haus am see", "guten abend meine damen und herren",
    "das wetter wird morgen besser", "im norden regen im sueden sonne", "wind aus west und nebel am morgen",
    "schnee in den alpen und gewitter im osten", "heute abend klar und kalt", "zahlen von eins bis zehn",
] + [" ".join(WORDS)]


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-mbart")
    tok = train_bpe(GENERAL_TEXT, vocab_size=400)
    cfg = MBartConfig(vocab_size=len(tok), d_model=48, encoder_layers=1, decoder_layers=1,
                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=96,
                      decoder_ffn_dim=96, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    MBartForConditionalGeneration(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def test_trimmed_vocabulary_and_copied_encoder(pretrained_dir):
    recipe = load_recipe("tiny", [f'tokenizer.pretrained="{pretrained_dir}"'])
    texts = ["regen sonne", "wind schnee nebel"]
    model = build_for_recipe(recipe, texts)
    pre = MBartForConditionalGeneration.from_pretrained(str(pretrained_dir)).get_encoder()
    kept = model.tokenizer.kept_ids
    assert model.tokenizer.vocab_size == len(kept) < pre.embed_tokens.num_embeddings
    assert torch.equal(model.text.encoder.embed_tokens.weight, pre.embed_tokens.weight[kept])
    assert torch.equal(model.text.encoder.layers[0].fc1.weight, pre.layers[0].fc1.weight)
    assert model.config.text_mbart["d_model"] == 48 and model.token_dim == 64
    # the trimmed ids spell the same sentence back
    assert model.tokenizer.decode(model.tokenizer.ids("regen sonne")) == "regen sonne"


def test_train_with_pretrained_text_model_round_trip(pretrained_dir, tmp_path):
    train_m = make_corpus(tmp_path / "data", 16, seed=0, name="train")
    dev_m = make_corpus(tmp_path / "data", 6, seed=1, name="dev")
    out = tmp_path / "run"
    train("tiny", train_m, dev_m, out, overrides=[f'tokenizer.pretrained="{pretrained_dir}"',
                                                              "train.epochs=1"], progress=False)
    model = load_model(out)  # needs nothing but the checkpoint folder
    assert model.config.text_model_source == str(pretrained_dir)
    enc = encode_texts(model, ["regen und wind"])
    assert enc.vectors.shape == (1, 64) and np.isfinite(enc.vectors).all()
