"""Text<->gloss retrieval: how well can a scratch text tower match sentences to their *true* glosses?

    .venv/bin/python benchmarks/text_gloss_ceiling.py --data /work/synphoenix [--epochs 8] [--layers 2]

A diagnostic for the retrieval target. The text tower of `train/cpu.toml` (scratch mBART encoder
over a BPE tokenizer) and a small gloss-sequence tower are trained with CiCo + global InfoNCE on the
training sentence/gloss pairs, with no video at all; R@1 between the dev sentences and their gold
gloss sequences is then roughly what a video model could reach if it read every gloss perfectly.
One torch thread; prints (epoch, loss, {cico: (T2V, V2T), glob: ...}, seconds) every 4 epochs.
"""
import argparse
import json
import math
import random
import time

import torch, torch.nn as nn, torch.nn.functional as F
from slsearch.models.text_tower import TextTower, scratch_text_config
from slsearch.models.tokenizer import TextTokenizer
from slsearch.models.similarity import cico_similarity
from slsearch.models.losses import symmetric_infonce
p = argparse.ArgumentParser()
p.add_argument('--epochs', type=int, default=8); p.add_argument('--vocab', type=int, default=2500)
p.add_argument('--dropout', type=float, default=0.1); p.add_argument('--word_drop', type=float, default=0.0)
p.add_argument('--layers', type=int, default=2); p.add_argument('--d', type=int, default=256)
p.add_argument('--wd', type=float, default=0.01); p.add_argument('--lr', type=float, default=8e-4)
p.add_argument('--split', default='dev'); p.add_argument('--bs', type=int, default=64)
p.add_argument('--data', required=True, help='folder with train.jsonl and dev.jsonl (gloss column)')
a = p.parse_args()
torch.manual_seed(0); random.seed(0); torch.set_num_threads(1)
load = lambda s: [json.loads(l) for l in open(f'{a.data}/{s}.jsonl')]
tr, ev = load('train'), load(a.split)
tok = TextTokenizer.from_corpus([r['text'] for r in tr], vocab_size=a.vocab, max_length=64)
gv = sorted({g for r in tr for g in r['gloss'].split()}); gi = {g: i + 1 for i, g in enumerate(gv)}
def gl(rows):
    seqs = [[gi.get(g, 0) for g in r['gloss'].split()] or [0] for r in rows]
    L = max(map(len, seqs)); ids = torch.zeros(len(seqs), L, dtype=torch.long); m = torch.zeros(len(seqs), L, dtype=torch.bool)
    for i, s in enumerate(seqs): ids[i, :len(s)] = torch.tensor(s); m[i, :len(s)] = True
    return ids, m
class GlossTower(nn.Module):
    def __init__(s, n, d):
        super().__init__(); s.emb = nn.Embedding(n + 1, d); s.pos = nn.Embedding(64, d)
        s.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 4, 4 * d, 0.1, batch_first=True), 1)
        s.g = nn.Linear(d, d)
    def forward(s, ids, m):
        h = s.enc(s.emb(ids) + s.pos(torch.arange(ids.shape[1]))[None], src_key_padding_mask=~m)
        mm = m[..., None].float(); return h, F.normalize(s.g((h * mm).sum(1) / mm.sum(1)), dim=-1)
tt = TextTower(scratch_text_config(tok.vocab_size, d=a.d, layers=a.layers, ffn=4 * a.d, dropout=a.dropout), a.d, a.d)
gt = GlossTower(len(gv), a.d)
scale = nn.Parameter(torch.tensor(math.log(1 / 0.07))); scale2 = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
params = list(tt.parameters()) + list(gt.parameters()) + [scale, scale2]
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.wd)
steps = a.epochs * (len(tr) // a.bs); sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=steps, pct_start=0.05)
def drop_words(t):
    if a.word_drop <= 0: return t
    w = t.split(); k = [x for x in w if random.random() > a.word_drop]; return ' '.join(k or w)
def evaluate():
    tt.eval(); gt.eval()
    with torch.no_grad():
        ids, m = tok([r['text'] for r in ev]); o = tt(ids, m)
        gid, gm = gl(ev); h, g = gt(gid, gm)
        s = cico_similarity(h, gm, o['tokens'], m)
        r = {}
        for name, S in (('cico', s), ('glob', g @ o['global'].T)):
            # S: (videos=gloss, texts)
            t2v = (S.T.argmax(1) == torch.arange(len(ev))).float().mean().item() * 100
            v2t = (S.argmax(1) == torch.arange(len(ev))).float().mean().item() * 100
            r[name] = (round(t2v, 1), round(v2t, 1))
    tt.train(); gt.train(); return r
t0 = time.time()
for ep in range(a.epochs):
    idx = list(range(len(tr))); random.shuffle(idx)
    for b in range(len(tr) // a.bs):
        rows = [tr[i] for i in idx[b * a.bs:(b + 1) * a.bs]]
        ids, m = tok([drop_words(r['text']) for r in rows]); o = tt(ids, m)
        gid, gm = gl(rows); h, g = gt(gid, gm)
        S = cico_similarity(h, gm, o['tokens'], m)
        loss = symmetric_infonce(S, scale) + symmetric_infonce(g @ o['global'].T, scale2)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step()
        with torch.no_grad(): scale.clamp_(max=math.log(100)); scale2.clamp_(max=math.log(100))
    if ep % 4 == 3 or ep == a.epochs - 1: print(ep + 1, round(loss.item(), 3), evaluate(), f'{time.time()-t0:.0f}s', flush=True)
