"""Beam search with a key/value cache (issue 15): the same hypotheses and scores as recomputing the
whole prefix every step, and transformers' n-gram blocking the same as the old `_block_repeats`."""

from __future__ import annotations

import pytest
import torch
from transformers import NoRepeatNGramLogitsProcessor

from slsearch.models.model import ModelConfig, build_model
from slsearch.models.tokenizer import TextTokenizer
from slsearch.models.translator import beam_search

SENTENCES = ["regen und wind im norden", "sonne heute im sueden", "schnee morgen im norden und osten",
             "am abend kommt gewitter auf", "die temperaturen steigen auf zwanzig grad",
             "nachts frost im bergland"]
MAX_LEN = 20


# --- the implementation before the cache, kept here as the reference -----------------------------

@torch.no_grad()
def reference_beam_search(decoder, memory, memory_mask, bos_id, eos_id, beam=4, max_len=64, length_penalty=1.0,
                          no_repeat_ngram=0):
    B, Tv, d = memory.shape
    K = max(1, beam)
    device = memory.device
    mem = memory.repeat_interleave(K, 0)
    mmask = memory_mask.repeat_interleave(K, 0)
    seqs = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0
    finished = torch.zeros(B * K, dtype=torch.bool, device=device)
    lengths = torch.zeros(B * K, device=device)
    for _ in range(max_len):
        logits = decoder(mem, mmask, seqs, torch.ones_like(seqs, dtype=torch.bool))[:, -1]
        logp = torch.log_softmax(logits.float(), -1)
        V = logp.shape[-1]
        if no_repeat_ngram > 0:
            reference_block_repeats(logp, seqs[:, 1:], no_repeat_ngram)
        logp[finished] = float("-inf")
        logp[finished, eos_id] = 0.0
        cand = (scores.view(-1, 1) + logp).view(B, K * V)
        top, flat = cand.topk(K, dim=1)
        src = (flat // V) + torch.arange(B, device=device)[:, None] * K
        tok = (flat % V).view(-1)
        src = src.view(-1)
        was_finished = finished[src]
        seqs = torch.cat([seqs[src], tok[:, None]], 1)
        lengths = lengths[src] + (~was_finished).float()
        finished = was_finished | (tok == eos_id)
        scores = top
        if finished.all():
            break
    norm = scores.view(-1) / lengths.clamp(min=1) ** length_penalty
    best = norm.view(B, K).argmax(1)
    out = []
    for b in range(B):
        row = b * K + int(best[b])
        ids = [int(i) for i in seqs[row, 1:].tolist()]
        if eos_id in ids:
            ids = ids[: ids.index(eos_id)]
        out.append((ids, float(norm[row])))
    return out


def reference_block_repeats(logp, seqs, n):
    L = seqs.shape[1]
    if L < n - 1 or L == 0:
        return
    rows = seqs.tolist()
    for r, toks in enumerate(rows):
        prefix = tuple(toks[L - n + 1:]) if n > 1 else ()
        banned = [toks[k + n - 1] for k in range(L - n + 1) if tuple(toks[k:k + n - 1]) == prefix]
        if banned:
            logp[r, banned] = float("-inf")


# --- a small random model whose hypotheses vary by clip and sometimes end early ------------------

@pytest.fixture(scope="module")
def setup():
    tok = TextTokenizer.from_corpus(SENTENCES, 120, max_length=24)
    torch.manual_seed(0)
    cfg = ModelConfig(video_dim=32, video_layers=1, video_heads=2, video_ffn=64, token_dim=32, embed_dim=32,
                      text_dim=32, text_layers=1, text_heads=2, text_ffn=64, decoder_layers=2, decoder_heads=2,
                      decoder_ffn=64)
    model = build_model(cfg, tok).eval()
    lm = model.decoder.lm
    with torch.no_grad():  # the default init (std 0.02, tied output) only ever repeats one token
        for p in model.decoder.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
        lm.lm_head.weight = torch.nn.Parameter(torch.randn(tok.vocab_size, 32) * 0.3)
        lm.lm_head.weight[tok.eos_id] *= 3.0  # so that some hypotheses end before MAX_LEN
    g = torch.Generator().manual_seed(1)
    lens = [7, 3, 12, 5, 9, 1]
    memory = torch.randn(len(lens), max(lens), 32, generator=g)  # padding holds noise too: the mask must hide it
    mask = torch.arange(max(lens))[None] < torch.tensor(lens)[:, None]
    return model, tok, memory, mask


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("no_repeat_ngram,length_penalty", [(0, 1.0), (2, 1.0), (3, 1.4)])
def test_cached_beam_search_equals_uncached(setup, beam, no_repeat_ngram, length_penalty):
    model, tok, memory, mask = setup
    args = dict(beam=beam, max_len=MAX_LEN, length_penalty=length_penalty, no_repeat_ngram=no_repeat_ngram)
    want = reference_beam_search(model.decoder, memory, mask, tok.bos_id, tok.eos_id, **args)
    got = beam_search(model.decoder, memory, mask, tok.bos_id, tok.eos_id, **args)
    assert [ids for ids, _ in got] == [ids for ids, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4)
    assert len({tuple(ids) for ids, _ in want}) == len(want)  # the clips' memories do matter
    assert any(len(ids) < MAX_LEN for ids, _ in want)  # some hypotheses end with eos


def test_a_clip_decodes_the_same_alone_and_in_a_padded_batch(setup):
    model, tok, memory, mask = setup
    batch = beam_search(model.decoder, memory, mask, tok.bos_id, tok.eos_id, beam=4, max_len=MAX_LEN)
    for i in (1, 2):
        n = int(mask[i].sum())
        (alone,) = beam_search(model.decoder, memory[i:i + 1, :n], mask[i:i + 1, :n], tok.bos_id, tok.eos_id,
                               beam=4, max_len=MAX_LEN)
        assert alone[0] == batch[i][0] and alone[1] == pytest.approx(batch[i][1], abs=1e-4)


def test_step_after_reorder_equals_the_full_forward(setup):
    """The cache reordered by beam source rows (some repeated, some dropped) serves the next step
    exactly as recomputing the reordered prefixes; repeated rows do not share storage."""
    model, tok, memory, mask = setup
    dec = model.decoder
    mem, mmask = memory.repeat_interleave(2, 0), mask.repeat_interleave(2, 0)  # 2 "beams" a clip
    g = torch.Generator().manual_seed(2)
    R = mem.shape[0]
    seqs = torch.cat([torch.full((R, 1), tok.bos_id), torch.randint(3, 100, (R, 4), generator=g)], 1)
    cache = dec.new_cache()
    with torch.no_grad():
        dec.step(mem, mmask, seqs, cache)
        src = torch.arange(R).view(-1, 2)[:, [1, 1]].reshape(-1)  # each clip keeps its 2nd row twice
        dec.reorder_cache(cache, src)
        nxt = torch.randint(3, 100, (R, 1), generator=g)
        got = dec.step(mem, mmask, nxt, cache)
        full = torch.cat([seqs[src], nxt], 1)
        want = dec(mem, mmask, full, torch.ones_like(full, dtype=torch.bool))[:, -1]
    assert torch.allclose(got, want, atol=1e-4)
    layer = cache.self_attention_cache.layers[0]
    assert layer.keys.shape[2] == 6 and layer.keys[0].data_ptr() != layer.keys[1].data_ptr()


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_transformers_ngram_processor_on_generated_tokens_equals_block_repeats(n):
    """NoRepeatNGramLogitsProcessor given the tokens after bos bans exactly what `_block_repeats` banned
    (on rows with bos in front it would also ban bos itself for n = 1, or tokens after a bos n-gram)."""
    g = torch.Generator().manual_seed(n)
    V = 6  # a small vocabulary, so that n-grams repeat; ids 0 (bos) and 2 (eos) occur as well
    block = NoRepeatNGramLogitsProcessor(n)
    for L in range(0, 13):
        seqs = torch.randint(0, V, (32, L), generator=g)
        logp = torch.log_softmax(torch.randn(32, V, generator=g), -1)
        want = logp.clone()
        reference_block_repeats(want, seqs, n)
        assert torch.equal(block(seqs, logp.clone()), want)
    if n == 1:  # why bos stays out: fed `bos 3 4`, the processor bans bos as a next token, ours does not
        assert block(torch.tensor([[0, 3, 4]]), torch.zeros(1, V))[0, 0] == float("-inf")
