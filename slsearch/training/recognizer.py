"""Training the CVT-SLR gloss recogniser (`slsearch train --recipe recognizer`, train.kind = "recognizer").

    manifests checked (every training clip needs glosses) -> step 1: the gloss VAE pretrained on the
    training glosses (OUT/vae/, skipped when a VAE for the same glosses and settings is already there)
    -> step 2: visual module (from scratch or --init RUN's video tower) + adapter + VAE encoder, trained on
    CTC (textual and visual, shared classifier) + contrastive alignment -> dev WER each epoch -> the best
    epoch in OUT (config.json, recognizer.safetensors), the gloss bigram LM in OUT/lm.json.

Step 2 always starts over (there is no mid-run resume); the VAE of step 1 is reused.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from slsearch.data.manifest import Clip, read_manifest
from slsearch.errors import InputError, SlsearchError
from slsearch.models.ctc import BigramLM, greedy, log_softmax, prefix_beam_search
from slsearch.models.cvt_slr import (CONFIG_FILE, LM_FILE, TOWER_KEYS, VAE_DIR, CVTSLR, GlossVAE,
                                     RecognizerModelConfig, VAEShape, alignment_loss, ctc_loss, is_recognizer_folder,
                                     load_vae, pad_ids, reconstruction_accuracy, save_recognizer, save_vae, vae_loss)
from slsearch.models.padding import pad
from slsearch.progress import Progress, track
from slsearch.training.recipe import Recipe

LOG_FILE = "train_log.jsonl"
Notify = Callable[[str, Any], None]


def read_gloss_manifest(path: str | Path) -> list[Clip]:
    """Clips of a manifest for recogniser training: every file there; clips without glosses left out; a
    manifest with no glosses at all refused (one line naming the file)."""
    path = Path(path)
    clips = read_manifest(path)
    with_glosses = [c for c in clips if c.gloss and str(c.gloss).strip()]
    if not with_glosses:
        raise InputError(path, "no clip has glosses (a 'gloss' column): the recogniser trains and is "
                               "evaluated on gloss sequences")
    for c in with_glosses:
        if c.path is None:
            raise InputError(path, f"clip {c.id!r} has no file path")
        if not Path(c.path).exists():
            raise InputError(c.path, f"file of clip {c.id!r} not found (listed in {path})")
    return with_glosses


def _ids(gloss: str, vocabulary: dict[str, int]) -> list[int]:
    return [vocabulary[g] for g in gloss.split() if g in vocabulary]


# --- step 1 ---------------------------------------------------------------------------------------

def vae_shape(recipe: Recipe, glosses: int, dim: int) -> VAEShape:
    v = recipe.vae
    return VAEShape(glosses, dim, v.layers, v.heads, v.ffn, v.lstm_hidden, v.lstm_layers, recipe.model.dropout)


def pretrain_vae(recipe: Recipe, sequences: list[list[int]], dev_sequences: list[list[int]], shape: VAEShape,
                 device: torch.device, advance=None, notify: Notify | None = None) -> tuple[GlossVAE, list[dict]]:
    """Gloss2Gloss: each training gloss sequence is its own target; KL + reconstruction."""
    v = recipe.vae
    vae = GlossVAE(shape).to(device).train()
    opt = torch.optim.Adam(vae.parameters(), lr=v.lr)
    rng = np.random.default_rng(recipe.train.seed)
    log = []
    for epoch in range(1, v.epochs + 1):
        order = rng.permutation(len(sequences))
        sums = {"reconstruction": 0.0, "kl": 0.0}
        steps = 0
        for s in range(0, len(order), v.batch_size):
            ids = pad_ids([sequences[i] for i in order[s:s + v.batch_size]], device)
            losses = vae_loss(vae(ids, sample=True, word_dropout=v.word_dropout), ids, v.kl_weight)
            total = losses["reconstruction"] + losses["kl"]
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
            for k in sums:
                sums[k] += float(losses[k].detach())
            steps += 1
        row = {"epoch": epoch, **{k: x / max(1, steps) for k, x in sums.items()}}
        if epoch == v.epochs or epoch % 10 == 0:
            row["train_accuracy"] = reconstruction_accuracy(vae, sequences)
            if dev_sequences:
                row["dev_accuracy"] = reconstruction_accuracy(vae, dev_sequences)
            if notify:
                notify("note", f"VAE epoch {epoch}/{v.epochs}: reconstruction {row['reconstruction']:.3f} KL "
                               f"{row['kl']:.3f}, glosses given back: train {100 * row['train_accuracy']:.1f} %"
                               + (f", dev {100 * row['dev_accuracy']:.1f} %" if dev_sequences else ""))
        log.append(row)
        if advance:
            advance(1, f"reconstruction {row['reconstruction']:.3f}")
    return vae.eval(), log


def _vae_settings(recipe: Recipe) -> dict[str, Any]:
    return {**asdict(recipe.vae), "seed": recipe.train.seed}


def step_vae(recipe: Recipe, out: Path, glosses: list[str], sequences, dev_sequences, dim: int,
             device: torch.device, progress: Progress | None, notify: Notify) -> GlossVAE:
    """The run's VAE: OUT/vae when it was pretrained on the same glosses with the same settings, else
    pretrained now and saved there."""
    folder = out / VAE_DIR
    shape = vae_shape(recipe, len(glosses), dim)
    if (folder / CONFIG_FILE).is_file():
        try:
            vae, cfg = load_vae(folder)
        except SlsearchError:
            cfg = None
        if cfg and cfg.get("glosses") == glosses and cfg.get("shape") == asdict(shape) and \
                cfg.get("settings") == _vae_settings(recipe):
            notify("note", f"step 1: the gloss VAE in {folder} is already pretrained on these glosses (skipped)")
            return vae.to(device)
    t0 = time.perf_counter()
    notify("note", f"step 1: pretraining the gloss VAE on {len(sequences)} training gloss sequences "
                   f"({len(glosses)} glosses, {recipe.vae.epochs} epochs)")
    vae, log = pretrain_vae(recipe, sequences, dev_sequences, shape, device,
                            track(progress, "gloss VAE (Gloss2Gloss)", recipe.vae.epochs), notify)
    save_vae(vae, folder, glosses, {"settings": _vae_settings(recipe), "log": log,
                                    "seconds": round(time.perf_counter() - t0, 1)})
    return vae


# --- step 2 ---------------------------------------------------------------------------------------

def _batch(features, idx, rng, tc) -> tuple[torch.Tensor, torch.Tensor]:
    from slsearch.training.data import _stretch

    feats = []
    for i in idx:
        f = features[i].astype(np.float32)
        factor = 1.0 + rng.uniform(-tc.time_stretch, tc.time_stretch) if (rng is not None and tc.time_stretch) else 1.0
        feats.append(_stretch(f, factor, tc.max_frames, 4))
    return pad(feats)


@torch.no_grad()
def branch_readings(model: CVTSLR, features, vocabulary: list[str], batch_size: int = 64, beam: int = 1,
                    keys: tuple[str, ...] = ("gloss_logits",)) -> dict[str, list[str]]:
    """The readings of every clip from each of the model's outputs `keys`, one forward pass per batch."""
    was = model.training
    model.eval()
    out: dict[str, list[str]] = {k: [] for k in keys}
    for s in range(0, len(features), batch_size):
        x, lengths = pad([f.astype(np.float32) for f in features[s:s + batch_size]])
        r = model.encode_video(x.to(model.device), lengths.to(model.device))
        mask = r["mask"].cpu().numpy()
        for key in keys:
            logits = r[key].float().cpu().numpy()
            for row in range(len(logits)):
                logp = log_softmax(logits[row, mask[row]])
                labels = greedy(logp) if beam == 1 else prefix_beam_search(logp, beam)[0]
                out[key].append(" ".join(vocabulary[c - 1] for c in labels))
    model.train(was)
    return out


def dev_readings(model: CVTSLR, features, vocabulary: list[str], batch_size: int = 64, beam: int = 1,
                 key: str = "gloss_logits") -> list[str]:
    return branch_readings(model, features, vocabulary, batch_size, beam, (key,))[key]


def train_recognizer(recipe: Recipe, manifest: str | Path, dev: str | Path, out: str | Path,
                     progress: Progress | None = None, notify: Notify | None = None):
    """Both CVT-SLR steps; returns slsearch.training.loop.TrainResult (best_dev holds the dev WER)."""
    from slsearch.eval.recognition import word_errors
    from slsearch.training.data import epoch_batches, gloss_vocabulary, load_features
    from slsearch.training.loop import (TrainResult, make_optimizer, make_scheduler, pick_device, pick_threads,
                                       seed_everything)

    notify = notify or (lambda kind, payload: None)
    tc, rc = recipe.train, recipe.recognizer
    out = Path(out)
    train_clips = read_gloss_manifest(manifest)
    dev_clips = read_gloss_manifest(dev)
    if len(train_clips) < 2:
        raise InputError(manifest, f"recogniser training needs at least 2 clips with glosses, found {len(train_clips)}")
    if out.exists() and (out / "model.safetensors").exists() and not is_recognizer_folder(out):
        raise SlsearchError(f"{out}: holds a retrieval checkpoint; give the recogniser another --out")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(pick_threads(tc.threads))
    device = pick_device(tc.device)
    seed_everything(tc.seed)

    glosses = gloss_vocabulary(train_clips)
    vocab = {g: i + 1 for i, g in enumerate(glosses)}
    sequences = [_ids(c.gloss, vocab) for c in train_clips]
    dev_sequences = [s for s in ([vocab.get(g, 0) for g in c.gloss.split()] for c in dev_clips) if 0 not in s]

    retrieval = None
    if tc.init:
        from slsearch.models.checkpoint import load_model

        retrieval = load_model(tc.init)
        mc = retrieval.config
        if rc.visual == "conv" and mc.streams[0] != "pose":
            raise SlsearchError(f"{tc.init}: its first stream is {mc.streams[0]}; a conv visual module starts from "
                                f"a pose stream (recognizer.visual = tower takes the whole video tower)")
        tower = {k: getattr(mc, k) for k in TOWER_KEYS} if rc.visual == "tower" else None
        config = RecognizerModelConfig(glosses, mc.input_dim, mc.video_dim, mc.conv_kernel, recipe.model.dropout,
                                       rc.adapter_hidden, tower=tower)
    else:
        m = recipe.model
        config = RecognizerModelConfig(glosses, m.input_dim, m.video_dim, m.conv_kernel, m.dropout, rc.adapter_hidden)
    shape = vae_shape(recipe, len(glosses), config.dim)
    config.vae = {k: v for k, v in asdict(shape).items() if k not in ("glosses", "dim")}

    seed_everything(tc.seed)  # the same VAE whether or not --init loaded a model first
    vae = step_vae(recipe, out, glosses, sequences, dev_sequences, config.dim, device, progress, notify) \
        if rc.pretrained_vae else None
    if vae is None:
        notify("note", "step 1 skipped: recognizer.pretrained_vae = false (the textual module starts untrained)")
    seed_everything(tc.seed)
    model = CVTSLR(config)
    if vae is not None:
        model.load_vae(vae.cpu())
    if retrieval is not None:
        rows = model.load_visual(retrieval.video, mc.glosses)
        notify("note", f"visual module from {tc.init} ({retrieval.checkpoint_hash})"
               + (f"; the classifier from its gloss head ({rows} of {len(glosses)} glosses)" if rows else ""))
        del retrieval
    model = model.to(device).train()

    train_set = load_features(train_clips, model.front_end, model.temporal_stride, manifest, progress)
    dev_set = load_features(dev_clips, model.front_end, model.temporal_stride, dev, progress)
    dev_refs = [" ".join(c.gloss.split()) for c in dev_clips]

    opt = make_optimizer(model, recipe)
    steps_per_epoch = len(epoch_batches(train_set.lengths, tc.batch_size, np.random.default_rng(0)))
    sched = make_scheduler(opt, recipe, steps_per_epoch)
    lm = BigramLM.from_sequences(sequences, len(glosses), rc.lm_k)
    (out / LM_FILE).write_text(json.dumps(lm.to_dict()))
    log_path = out / LOG_FILE
    log_path.write_text("")
    what = ", ".join([("pretrained VAE" if vae is not None else "untrained VAE"),
                      (f"alignment x{rc.align_weight:g}" if rc.align_weight else "no alignment loss"),
                      f"visual CTC x{rc.visual_ctc_weight:g}"])
    notify("note", f"step 2: recogniser ({what}) on {len(train_clips)} clips, {tc.epochs} epochs")

    # which branch recognition reads: the recipe's, or (auto) the better on dev at the kept epoch
    branches = ("textual", "visual") if rc.read == "auto" else (rc.read,)
    best = {"wer": float("inf"), "epoch": 0, "metrics": {}}
    bad, stopped, train_seconds = 0, "epochs", 0.0
    epoch = 0
    for epoch in range(1, tc.epochs + 1):
        rng = np.random.default_rng([tc.seed, epoch])
        batches = epoch_batches(train_set.lengths, tc.batch_size, rng)
        advance = track(progress, f"epoch {epoch}/{tc.epochs}", len(batches))
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        cut = False
        for step, idx in enumerate(batches):
            x, lengths = _batch(train_set.features, idx, rng, tc)
            targets = [sequences[i] for i in idx]
            r = model.encode_video(x.to(device), lengths.to(device))
            losses = {"ctc": ctc_loss(r["textual_logits"], r["mask"], targets)}
            if rc.visual_ctc_weight:
                losses["visual_ctc"] = rc.visual_ctc_weight * ctc_loss(r["visual_logits"], r["mask"], targets)
            if rc.align_weight:
                losses["align"] = rc.align_weight * alignment_loss(r["visual"], r["textual"], r["mask"],
                                                                   rc.align_temperature)
            total = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            total.backward()
            if recipe.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.optim.grad_clip)
            opt.step()
            sched.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            advance(1, f"ctc {sums['ctc'] / (step + 1):.2f}")
            if tc.max_minutes and (train_seconds + time.perf_counter() - t0) / 60 >= tc.max_minutes:
                notify("note", f"stopped by the train.max_minutes guard ({tc.max_minutes:g} min) in epoch {epoch}")
                cut = True
                break
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        readings = branch_readings(model, dev_set.features, glosses, tc.eval_batch_size, rc.dev_beam,
                                   tuple(f"{b}_logits" for b in branches))
        by_branch = {b: word_errors(dev_refs, readings[f"{b}_logits"]) for b in branches}
        branch = min(branches, key=lambda b: by_branch[b]["wer"])  # ties: the textual branch, the paper's
        dev_m = by_branch[branch]
        row = {"epoch": epoch, "lr": sched.get_last_lr()[0], **{k: v / (step + 1) for k, v in sums.items()},
               "epoch_seconds": round(seconds, 2), "clips_per_s": round(sum(len(i) for i in batches) / seconds, 1),
               "dev_wer": dev_m["wer"], "dev_del": dev_m["del_rate"], "dev_ins": dev_m["ins_rate"], "reads": branch,
               **{f"dev_wer_{b}": by_branch[b]["wer"] for b in branches}}
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        better = dev_m["wer"] < best["wer"]
        notify("note", f"epoch {epoch}/{tc.epochs}: " + " ".join(f"{k} {sums[k] / (step + 1):.3f}" for k in sums)
               + f"; dev WER {dev_m['wer']:.2f} (DEL {dev_m['del_rate']:.2f} INS {dev_m['ins_rate']:.2f}"
               + (f"; textual {by_branch['textual']['wer']:.2f}, visual {by_branch['visual']['wer']:.2f}"
                  if len(branches) > 1 else "") + ")"
               + (" *" if better else "") + f" [{seconds:.0f}s, {row['clips_per_s']:.0f} clips/s]")
        if better:
            best = {"wer": dev_m["wer"], "epoch": epoch, "metrics": dev_m}
            bad = 0
            model.config.reads = branch
            save_recognizer(model, out, recipe.to_dict(), {
                "best_epoch": epoch, "dev": {"wer": dev_m["wer"], "del_rate": dev_m["del_rate"],
                                             "ins_rate": dev_m["ins_rate"], "beam": rc.dev_beam},
                "pretrained_vae": vae is not None, "init": tc.init or None})
        else:
            bad += 1
        if cut:
            stopped = "time_limit"
            break
        if tc.patience and bad >= tc.patience:
            stopped = "early_stopping"
            break
    notify("note", f"best dev epoch {best['epoch']}: WER {best['wer']:.2f}, reading the {model.config.reads} "
           f"branch; recogniser in {out}")
    dev_best = {"dev_wer": best["wer"], "dev_del": best["metrics"].get("del_rate"),
                "dev_ins": best["metrics"].get("ins_rate")}
    return TrainResult(out, best["epoch"], dev_best, epoch, train_seconds / 60, stopped)
