"""Gloss-to-text ceiling: the joint checkpoint's decoder architecture and tokenizer, trained on the
ground-truth gloss sequences -> sentences instead of video (issue 6).

    .venv/bin/python benchmarks/gloss2text.py --checkpoint /work/runs/synphoenix_cpu \
        --train /work/synphoenix/train.jsonl --dev /work/synphoenix/dev.jsonl \
        --test /work/synphoenix/test.jsonl --threads 1 --max-minutes 30 --json g2t.json

Best epoch by dev BLEU-4 (greedy); test decoded with beam search. Prints BLEU-1..4, chrF, ROUGE-L
as a table and, with --json, every number, the per-epoch history and the settings.

Gloss-to-text: the translation ceiling of a sign-to-text run whose clips carry only glosses.

The ground-truth gloss sequence replaces the video: gloss embeddings + sinusoidal positions + a
small transformer encoder (width token_dim) feed the SAME decoder architecture and tokenizer as a
joint checkpoint, trained with the same cross-entropy + label smoothing; best epoch by dev BLEU-4
(greedy), test with beam search. A diagnostic, not part of the package: it lives here with its command line.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rich.table import Table
from torch import nn

from slsearch.console import console, err_console
from slsearch.data.manifest import read_manifest
from slsearch.errors import InputError
from slsearch.eval.translation_metrics import translation_metrics
from slsearch.models.decoder import TextDecoder, decoder_config, shift_for_lm
from slsearch.models.translator import beam_search
from slsearch.training.data import epoch_batches

PAD, UNK = 0, 1  # gloss vocabulary ids


@dataclass
class Gloss2TextConfig:
    epochs: int = 30
    batch_size: int = 32  # sentences of similar length per batch (less padding)
    lr: float = 5e-4  # AdamW peak learning rate
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5  # linear warm-up, then cosine down to min_lr_ratio * lr
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0
    label_smoothing: float = 0.2  # as the joint run's LM loss
    encoder_layers: int = 2  # gloss encoder depth (heads/ffn/dropout copied from the checkpoint's decoder)
    beam: int = 4  # test decoding; dev uses greedy (beam 1)
    max_minutes: float = 30.0  # training stops after the epoch that crosses this
    threads: int = 1
    seed: int = 0


def read_pairs(path: str | Path) -> tuple[list[list[str]], list[str]]:
    """Manifest -> (whitespace-split gloss sequences, sentences); every row needs both."""
    glosses, texts = [], []
    for c in read_manifest(path):
        if not c.gloss or not c.gloss.split():
            raise InputError(path, f"clip {c.id!r} has no gloss (gloss-to-text needs the `gloss` column)")
        if not c.text or not c.text.strip():
            raise InputError(path, f"clip {c.id!r} has an empty sentence")
        glosses.append(c.gloss.split())
        texts.append(c.text)
    return glosses, texts


def build_vocab(glosses: Sequence[Sequence[str]]) -> dict[str, int]:
    """Train glosses -> id, after <pad>=0 and <unk>=1, in order of first appearance."""
    vocab = {"<pad>": PAD, "<unk>": UNK}
    for seq in glosses:
        for g in seq:
            vocab.setdefault(g, len(vocab))
    return vocab


def gloss_batch(seqs: Sequence[Sequence[str]], vocab: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gloss sequences -> ids (B, Tg) long, mask (B, Tg) bool; unknown glosses -> <unk>."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor([vocab.get(g, UNK) for g in s])
    return ids, ids != PAD


def sinusoids(length: int, d: int) -> torch.Tensor:
    """(length, d) fixed sinusoidal positions (Vaswani et al.)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    out = torch.zeros(length, d)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return out


class Gloss2Text(nn.Module):
    """Gloss ids -> encoder states (the decoder's memory, in place of video tokens) -> next-token logits."""

    def __init__(self, n_glosses: int, model_config, vocab_size: int, encoder_layers: int = 2,
                 max_glosses: int = 256):
        super().__init__()
        c = model_config
        d = c.token_dim
        self.embed = nn.Embedding(n_glosses, d, padding_idx=PAD)
        self.register_buffer("positions", sinusoids(max_glosses, d), persistent=False)
        layer = nn.TransformerEncoderLayer(d, c.decoder_heads, c.decoder_ffn, c.dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, encoder_layers, norm=nn.LayerNorm(d),
                                             enable_nested_tensor=False)
        self.decoder = TextDecoder(decoder_config(vocab_size, d, c.decoder_layers, c.decoder_heads,
                                                  c.decoder_ffn, c.dropout, max_positions=c.max_text_tokens + 4))

    def encode(self, gloss_ids: torch.Tensor, gloss_mask: torch.Tensor) -> torch.Tensor:
        """(B, Tg) -> (B, Tg, d)."""
        x = self.embed(gloss_ids) * math.sqrt(self.embed.embedding_dim) + self.positions[: gloss_ids.shape[1]]
        return self.encoder(x, src_key_padding_mask=~gloss_mask)

    def forward(self, gloss_ids, gloss_mask, dec_in, dec_mask) -> torch.Tensor:
        """-> logits (B, L, vocab)."""
        return self.decoder(self.encode(gloss_ids, gloss_mask), gloss_mask, dec_in, dec_mask)


@torch.no_grad()
def translate_glosses(model: Gloss2Text, tokenizer, glosses, vocab, beam: int, max_len: int,
                      batch_size: int = 64) -> list[str]:
    """Sentences for gloss sequences, decoded in batches of similar length (a batch runs until its
    longest output ends, so short ones should not wait on long ones)."""
    model.eval()
    order = np.argsort([len(g) for g in glosses], kind="stable")
    hyps = [""] * len(glosses)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        ids, mask = gloss_batch([glosses[i] for i in idx], vocab)
        out = beam_search(model.decoder, model.encode(ids, mask), mask, tokenizer.bos_id, tokenizer.eos_id,
                          beam=beam, max_len=max_len)
        for i, (token_ids, _) in zip(idx, out):
            hyps[i] = tokenizer.decode(token_ids)
    return hyps


def train_gloss2text(checkpoint: str | Path, train: str | Path, dev: str | Path, test: str | Path,
                     cfg: Gloss2TextConfig = Gloss2TextConfig(), log=print) -> dict[str, Any]:
    """Train on `train`, keep the best dev-BLEU-4 epoch, score `test`. Returns test metrics, per-epoch
    history, training minutes and the settings."""
    from slsearch.models.checkpoint import load_model

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    joint = load_model(checkpoint)  # only its tokenizer and decoder shape are used
    tok, mcfg = joint.tokenizer, joint.config
    (tr_g, tr_t), (dv_g, dv_t), (te_g, te_t) = read_pairs(train), read_pairs(dev), read_pairs(test)
    vocab = build_vocab(tr_g)
    model = Gloss2Text(len(vocab), mcfg, tok.vocab_size, cfg.encoder_layers,
                       max_glosses=max(map(len, tr_g + dv_g + te_g)))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    text_lengths = np.array([len(tok.ids(t)) for t in tr_t])
    max_len = min(tok.max_length, int(text_lengths.max()) + 8)  # decoding cap: longest train sentence + 8
    steps = len(epoch_batches(text_lengths, cfg.batch_size, np.random.default_rng(0)))
    total, warm = cfg.epochs * steps, max(1, int(cfg.warmup_epochs * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else cfg.min_lr_ratio + (
        1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm)))))

    history, best, best_state = [], -1.0, None
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        losses = []
        for idx in epoch_batches(text_lengths, cfg.batch_size, rng):
            g_ids, g_mask = gloss_batch([tr_g[i] for i in idx], vocab)
            dec_in, dec_mask, labels = shift_for_lm(*tok([tr_t[i] for i in idx]), tok.bos_id, tok.pad_id)
            logits = model(g_ids, g_mask, dec_in, dec_mask)  # (B, L, V)
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                                   label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            losses.append(loss.item())
        train_min = (time.perf_counter() - t0) / 60
        dev_bleu = translation_metrics(translate_glosses(model, tok, dv_g, vocab, 1, max_len), dv_t)["BLEU-4"]
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "dev_BLEU-4": dev_bleu,
                        "minutes": (time.perf_counter() - t0) / 60})
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {history[-1]['loss']:.3f} dev BLEU-4 {dev_bleu:.2f} "
            f"({history[-1]['minutes']:.1f} min)")
        if dev_bleu > best:
            best, best_state = dev_bleu, copy.deepcopy(model.state_dict())
        if train_min >= cfg.max_minutes:
            log(f"stopping: {train_min:.1f} min >= --max-minutes {cfg.max_minutes}")
            break
    minutes = (time.perf_counter() - t0) / 60
    model.load_state_dict(best_state)
    hyps = translate_glosses(model, tok, te_g, vocab, cfg.beam, max_len)
    return {"test": translation_metrics(hyps, te_t),
            "best_epoch": max(history, key=lambda h: h["dev_BLEU-4"])["epoch"], "best_dev_BLEU-4": best,
            "history": history, "train_minutes_incl_dev_eval": minutes, "n_train": len(tr_g),
            "n_test": len(te_g), "decode_max_len": max_len, "gloss_vocab": len(vocab), "checkpoint": str(checkpoint),
            "checkpoint_hash": joint.checkpoint_hash, "config": asdict(cfg),
            "examples": [{"ref": r, "hyp": h} for r, h in zip(te_t[:5], hyps[:5])]}


def main() -> None:
    d = Gloss2TextConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="joint run whose tokenizer and decoder shape are copied")
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--epochs", type=int, default=d.epochs)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--beam", type=int, default=d.beam)
    ap.add_argument("--max-minutes", type=float, default=d.max_minutes)
    ap.add_argument("--threads", type=int, default=d.threads, help="torch threads (other training shares the CPU)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--json", help="write every number and the settings here")
    a = ap.parse_args()
    cfg = Gloss2TextConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, beam=a.beam,
                           max_minutes=a.max_minutes, threads=a.threads, seed=a.seed)
    result = train_gloss2text(a.checkpoint, a.train, a.dev, a.test, cfg, log=err_console.print)
    result["load_average_at_end"] = os.getloadavg()

    table = Table(title=f"gloss-to-text, test ({result['n_test']} sentences, beam {cfg.beam}, "
                        f"best epoch {result['best_epoch']}/{len(result['history'])})")
    for k in result["test"]:
        table.add_column(k, justify="right")
    table.add_row(*(f"{v:.2f}" for v in result["test"].values()))
    console.print(table)
    console.print(f"training {result['train_minutes_incl_dev_eval']:.1f} min (incl. dev decoding), "
                  f"{cfg.threads} thread(s), load average at end {result['load_average_at_end'][0]:.2f}")
    for ex in result["examples"][:3]:
        console.print(f"  ref: {ex['ref']}\n  hyp: {ex['hyp']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
