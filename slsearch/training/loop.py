"""The C²RL training loop behind `slsearch train`.

    manifests checked -> tokenizer learned (or pretrained, trimmed) -> model built -> features cached
    -> epochs of (contrastive + LM) steps -> dev retrieval each epoch -> best checkpoint in OUT/
    -> OUT/last/ holds the latest state for resuming after an interruption.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from slsearch.data.pseudo_glosses import use_pseudo_glosses, vocabulary as pseudo_gloss_vocabulary
from slsearch.errors import SlsearchError
from slsearch.models.checkpoint import load_model, read_config, save_model
from slsearch.models.losses import C2RLLoss
from slsearch.models.model import SignTextModel, build_model
from slsearch.models.tokenizer import TextTokenizer
from slsearch.progress import Progress, track
from slsearch.training import distributed
from slsearch.training.data import (FeatureSet, collate, epoch_batches, gloss_vocabulary, load_features,
                                    read_training_manifest, text_neighbours, with_neighbour_batches)
from slsearch.training.dev_eval import evaluate_retrieval, evaluate_translation
from slsearch.training.calibration import calibrate_stages, hubness_bank, learn_lexicon, with_own_readings
from slsearch.training.recipe import DERIVED_MODEL_KEYS, Recipe, load_recipe, recipe_from_dict

LAST = "last"  # sub-folder with the resumable state
STATE_FILE = "trainer_state.pt"
LOG_FILE = "train_log.jsonl"
RESUMABLE_CHANGES = {"max_minutes", "threads", "device", "eval_batch_size", "log_every", "features"}  # train.* keys


@dataclass
class TrainResult:
    out: Path
    best_epoch: int
    best_dev: dict[str, float]
    epochs_run: int
    train_minutes: float
    stopped: str  # "epochs" | "early_stopping" | "time_limit"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_threads(threads: int) -> int:
    """train.threads, or for 0 (auto) what measured fastest for the demo on 2 cores, quiet and beside a
    busy process (benchmarks/RESULTS.md, "Demo training under load"): torch's default (one thread per
    core) where OpenMP threads wait passively (the CLI sets OMP_WAIT_POLICY=PASSIVE), else one thread:
    two spinning threads ran 250 clips/s alone but 8 beside one busy process, one thread ~150 both ways."""
    if threads > 0:
        return threads
    return torch.get_num_threads() if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" else 1


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SlsearchError("recipe asks for train.device=cuda but no CUDA GPU is available")
    return torch.device(name)


def make_tokenizer(recipe: Recipe, texts: Sequence[str]) -> tuple[TextTokenizer, Any]:
    """Scratch BPE, or a pretrained mBART's tokenizer trimmed to `texts` (+ that mBART's encoder)."""
    tc = recipe.tokenizer
    if tc.pretrained is None:
        return TextTokenizer.from_corpus(texts, tc.vocab_size, tc.max_length), None
    from transformers import MBartModel

    folder = Path(tc.pretrained)
    if not folder.is_dir():
        raise SlsearchError(f"{folder}: pretrained text model folder not found")
    tok = TextTokenizer.from_pretrained_trimmed(folder, texts, tc.max_length)
    try:
        pre = MBartModel.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # transformers raises many types here
        raise SlsearchError(f"{folder}: cannot load an mBART model ({type(e).__name__}: {e})") from e
    return tok, pre


def build_for_recipe(recipe: Recipe, texts: Sequence[str]) -> SignTextModel:
    tokenizer, pretrained = make_tokenizer(recipe, texts)
    if pretrained is not None:
        cfg = pretrained.config.to_dict()
        for k in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
            cfg.pop(k, None)
        recipe.model.text_mbart = cfg
        recipe.model.text_model_source = str(recipe.tokenizer.pretrained)
    model = build_model(recipe.model, tokenizer)
    if pretrained is not None:
        model.text.load_pretrained_encoder(pretrained.get_encoder(), tokenizer.kept_ids)
    return model


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    o = recipe.optim
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas))


def make_scheduler(opt: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int):
    """Linear warm-up, then cosine decay to min_lr_ratio over train.epochs.

    The schedule follows the epoch budget only, so a recipe trains the same model on a busy or a
    slow machine; train.max_minutes is a guard that stops a run, not part of the schedule.
    """
    total = max(1, recipe.train.epochs * steps_per_epoch)
    warm = int(recipe.optim.warmup_epochs * steps_per_epoch)
    floor = recipe.optim.min_lr_ratio

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _run_eta(t0: float, first: int, epoch: int, epochs: int) -> str:
    """", eta 1m40s" for the epochs left (this one included), from the epochs (with dev) done so far."""
    if epoch <= first:
        return ""
    left = (time.perf_counter() - t0) / (epoch - first) * (epochs - epoch + 1)
    return f", eta {int(left // 60)}m{int(left % 60):02d}s" if left >= 60 else f", eta {left:.0f}s"


def _save_state(model, opt, sched, out: Path, recipe: Recipe, state: dict[str, Any],
                extra: dict[str, Any] | None = None) -> None:
    last = out / LAST
    tmp = out / (LAST + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model, tmp, recipe=recipe.to_dict())
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                **state, **(extra or {})}, tmp / STATE_FILE)
    if last.exists():
        shutil.rmtree(last)
    tmp.rename(last)


Notify = Callable[[str, Any], None]  # (kind, payload): "note" with a line of text, "epoch" with the log row


@dataclass
class _Run:
    """One training run in progress: what every epoch step, evaluation and checkpoint works on."""

    recipe: Recipe
    out: Path
    model: SignTextModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    loss_fn: C2RLLoss
    train_set: FeatureSet
    dev_set: FeatureSet
    train_clips: list
    steps_per_epoch: int
    # epoch, best_score, best_epoch, best_dev, bad_epochs, train_seconds: saved with OUT/last for resuming
    state: dict[str, Any]
    best: tuple | None = None  # (hash, weights, encoded dev) of this process's best epoch, for the stages
    encoded: tuple | None = None  # the dev set as the latest evaluation encoded it (joint runs)
    world: distributed.World | None = None  # under torchrun: this process's rank (training.distributed)
    ddp: torch.nn.Module | None = None  # the model behind DistributedDataParallel, for the training steps
    neighbours: np.ndarray | None = None  # each training clip's nearest sentences, for train.neighbour_batches


def train(recipe_path: str | Path | None, manifest: str | Path, dev: str | Path, out: str | Path,
          overrides: Sequence[str] = (), resume: bool = True, progress: Progress | None = None,
          notify: Notify | None = None) -> TrainResult:
    """Train towers + decoder on `manifest`, select on `dev`, write the best checkpoint to `out`; for a
    joint run, then learn the gloss lexicon and fit the ranking stages on the best epoch. `notify`
    hears what happens (slsearch.console.show_training_event draws it); `progress` the steps."""
    notify = notify or _silent
    if distributed.in_torchrun() and os.environ.get("RANK", "0") != "0":
        notify, progress = _silent, None  # rank 0 reports for all
    run = _start(recipe_path, manifest, dev, Path(out), overrides, resume, progress, notify)
    try:
        result = _train(run, progress, notify)
        if run.recipe.train.stage == "translate" and result.best_epoch:
            notify("note", f"to let it re-read V2T candidates too: slsearch calibrate --model {run.recipe.train.init} "
                           f"--dev {dev} --reader {run.out}")
        return result
    finally:
        if run.world is not None and run.world.owned:
            run.world.shutdown()


def _silent(kind: str, payload: Any) -> None:
    pass


def _train(run: _Run, progress: Progress | None, notify: Notify) -> TrainResult:
    tc = run.recipe.train
    stopped = "epochs"
    run_t0, first_epoch = time.perf_counter(), run.state["epoch"] + 1  # for the whole run's ETA
    for epoch in range(first_epoch, tc.epochs + 1):
        eta = _run_eta(run_t0, first_epoch, epoch, tc.epochs)
        row, cut = _train_epoch(run, epoch, track(progress, f"epoch {epoch}/{tc.epochs}{eta}", run.steps_per_epoch),
                                notify)
        row.update(_evaluate(run))
        notify("epoch", row)
        _checkpoint(run, epoch, row)
        if cut:
            stopped = "time_limit"
            break
        if tc.patience and run.state["bad_epochs"] >= tc.patience:
            stopped = "early_stopping"
            break
    state = run.state
    if tc.stage == "joint" and state["best_epoch"] and (run.world is None or run.world.main):
        _fit_stages(run, notify)
    best = state["best_dev"]
    what = (f"BLEU-4 {best.get('BLEU-4', 0):.2f}" if tc.stage == "translate" else
            f"CiCo R@1 T2V {best.get('cico_t2v_R@1', 0):.1f} V2T {best.get('cico_v2t_R@1', 0):.1f}")
    notify("note", f"best dev epoch {state['best_epoch']}: {what}; checkpoint in {run.out}")
    return TrainResult(run.out, state["best_epoch"], best, state["epoch"], state["train_seconds"] / 60, stopped)


def _start(recipe_path, manifest, dev, out: Path, overrides, resume: bool, progress: Progress | None,
           notify: Notify) -> _Run:
    """Check the manifests, then resume the run in `out`, start from `train.init` or build a new model;
    load the features once; the optimizer and schedule (restored when resuming)."""
    recipe = load_recipe(recipe_path, overrides)
    tc = recipe.train
    train_clips = read_training_manifest(manifest)
    dev_clips = read_training_manifest(dev)
    if len(train_clips) < 2:
        raise SlsearchError(f"{manifest}: training needs at least 2 clips, found {len(train_clips)}")
    if recipe.loss.pseudo_glosses and recipe.loss.gloss_weight:
        glosser = use_pseudo_glosses(train_clips, dev_clips, method=recipe.loss.pseudo_gloss_method,
                                     language=recipe.loss.pseudo_gloss_language)
        notify("note", f"{manifest}: the gloss head learns pseudo-glosses, {glosser.describe()}: "
                       f"{len(pseudo_gloss_vocabulary(train_clips))} of them")
    if recipe.loss.gloss_weight and not gloss_vocabulary(train_clips):
        # the recipe's gloss loss applies where there are glosses
        notify("note", f"{manifest}: no clip has glosses (a 'gloss' column): training without the gloss head "
                       "(loss.gloss_weight=0)")
        recipe.loss.gloss_weight = 0.0
    device = pick_device(tc.device)
    world = distributed.setup(device)  # under torchrun: this process's rank; None for a single process
    if world is not None:
        device = world.device
        if tc.batch_size < world.size:
            raise SlsearchError(f"train.batch_size {tc.batch_size} is smaller than the {world.size} processes: "
                                f"each needs clips of every batch; use fewer processes or a larger batch")
    last = out / LAST
    resuming = resume and (last / STATE_FILE).exists()
    wipe = False
    if resuming:
        saved = recipe_from_dict(read_config(last)["recipe"]).to_dict()
        if _comparable(saved) != _comparable(recipe.to_dict()):
            raise SlsearchError(f"{out}: holds a run with a different recipe; use another --out or --no-resume")
    elif out.exists() and any(out.iterdir()):
        if not resume:
            wipe = True
        elif (out / LOG_FILE).exists():
            raise SlsearchError(f"{out}: holds a finished or foreign run without resumable state; "
                                f"use another --out or --no-resume to overwrite")
    if world is not None:
        world.barrier()  # every rank has looked at OUT before rank 0 changes it
    if world is None or world.main:
        if wipe:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    if world is not None:
        world.barrier()
    torch.set_num_threads(pick_threads(tc.threads))
    seed_everything(tc.seed)  # every rank builds the same model

    if resuming:
        model = load_model(last, device=device)
        asked, recipe = recipe, recipe_from_dict(read_config(last)["recipe"])
        for key in RESUMABLE_CHANGES:  # the guards and machine settings of this invocation
            setattr(recipe.train, key, getattr(asked.train, key))
        notify("note", f"resuming from {last}")
    elif tc.init:
        model = load_model(tc.init, device=device)  # e.g. the translate stage on top of a joint run
        recipe.model = model.config  # the checkpoint's architecture, not the recipe's, is what trains
        notify("note", f"starting from {tc.init} ({model.checkpoint_hash})")
    else:
        if recipe.loss.gloss_weight:
            recipe.model.glosses = gloss_vocabulary(train_clips)
        model = build_for_recipe(recipe, [c.text for c in train_clips]).to(device)
    if recipe.loss.gloss_weight and model.video.gloss_head is None:
        raise SlsearchError(f"{tc.init}: this checkpoint was trained without a gloss head; "
                            f"set loss.gloss_weight=0 or start from a run trained with glosses")
    model.train()
    ddp = None
    if world is not None:
        world.check_same("tokenizers", json.dumps([model.tokenizer.ids(c.text) for c in train_clips]).encode())
        distributed.sync_batch_norm(model, world)
        ddp = distributed.wrap(model, world, find_unused=not _uses_every_parameter(recipe, model))
        if world.rank:  # dropout and null-clip draws: a stream per rank
            torch.manual_seed(tc.seed + 100_003 * world.rank)
    stride = model.temporal_stride
    spill = out if _features_on_disk(tc.features, model.video.front_end) else None
    train_set = load_features(train_clips, model.video.front_end, stride, manifest, progress,
                              glosses=model.config.glosses if recipe.loss.gloss_weight else None, spill_dir=spill)
    dev_set = load_features(dev_clips, model.video.front_end, stride, dev, progress, spill_dir=spill)
    for name, part in (("training", train_set), ("dev", dev_set)):
        if part.without_hands:
            notify("note", f"{part.without_hands} of {len(part)} {name} clips show no hand in any frame: they get "
                           "vectors from body and face alone (check their framing or extraction)")
        if part.without_video:
            notify("note", f"{part.without_video} of {len(part)} {name} clips have no video (pose files): their RGB "
                           "stream is masked")
    loss_fn = C2RLLoss(recipe.loss.cico_weight, recipe.loss.global_weight, recipe.loss.lm_weight,
                       recipe.loss.label_smoothing, recipe.model.cico_temperature, recipe.loss.gloss_weight,
                       recipe.loss.stream_weight, recipe.loss.inter_weight, recipe.loss.gloss_objective)
    if world is not None:
        loss_fn.batch_group = distributed.BatchGroup(world)
    opt = make_optimizer(model, recipe)
    batches = epoch_batches(train_set.lengths, tc.batch_size, np.random.default_rng(0))
    steps_per_epoch = len(batches if world is None else world.usable(batches))
    if not steps_per_epoch:
        raise SlsearchError(f"{manifest}: no batch of {tc.batch_size} clips has one for each of the "
                            f"{world.size if world else 1} processes")
    sched = make_scheduler(opt, recipe, steps_per_epoch)
    state = {"epoch": 0, "best_score": -1.0, "best_epoch": 0, "best_dev": {}, "bad_epochs": 0, "train_seconds": 0.0}
    if resuming:
        saved = torch.load(last / STATE_FILE, weights_only=False)
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        size = world.size if world is not None else 1
        rng_states = saved.get("torch_rng_ranks") or [saved["torch_rng"]]
        if len(rng_states) == size:
            torch.set_rng_state(rng_states[world.rank if world is not None else 0])
        else:  # the batches do not depend on the number of processes; the dropout noise does
            if world is None or world.main:
                torch.set_rng_state(saved["torch_rng"])
            notify("note", f"resuming a run of {len(rng_states)} process(es) with {size}: the same batches, "
                           f"other dropout noise")
        state = {k: saved[k] for k in state}
    neighbours = None
    if tc.neighbour_batches:
        neighbours = text_neighbours([model.tokenizer.ids(t) for t in train_set.texts])
    return _Run(recipe, out, model, opt, sched, loss_fn, train_set, dev_set, train_clips, steps_per_epoch, state,
                world=world, ddp=ddp, neighbours=neighbours)


def _uses_every_parameter(recipe: Recipe, model: SignTextModel) -> bool:
    """Whether a training step reaches every parameter (else DDP must look for the unused ones)."""
    with_gloss = model.video.gloss_head is None or recipe.loss.gloss_weight > 0
    one_stream = len(getattr(model.config, "streams", None) or [None]) == 1  # several: DDP looks for itself
    return (recipe.loss.cico_weight > 0 and recipe.loss.global_weight > 0 and recipe.loss.lm_weight > 0
            and with_gloss and one_stream)


def _train_epoch(run: _Run, epoch: int, advance, notify: Notify) -> tuple[dict[str, Any], bool]:
    """One epoch of steps -> (its log row, whether the train.max_minutes guard cut it)."""
    recipe, model, tc = run.recipe, run.model, run.recipe.train
    rng = np.random.default_rng([tc.seed, epoch])  # per-epoch stream: resuming replays the same batches
    batches = epoch_batches(run.train_set.lengths, tc.batch_size, rng)
    if run.neighbours is not None:
        batches = with_neighbour_batches(batches, run.neighbours, tc.neighbour_batches, rng)
    world, forward = run.world, run.ddp or model
    if world is not None:
        batches = world.usable(batches)  # each rank builds its part of every global batch
    with_lm = recipe.loss.lm_weight > 0
    with_text = recipe.loss.cico_weight + recipe.loss.global_weight > 0
    device = model.device
    sums: dict[str, float] = {}
    clips, reported, cut, t0 = 0, 0, False, time.perf_counter()
    for step, idx in enumerate(batches):
        part = world.part(len(idx)) if world is not None else None
        batch = {k: v.to(device) for k, v in collate(run.train_set, idx, model.tokenizer, rng, tc.max_frames,
                                                     tc.time_stretch, part=part).items()}
        targets = {k: batch.pop(k) for k in ("gloss_targets", "gloss_target_lengths", "text_keys") if k in batch}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16"):
            losses = run.loss_fn(**forward(**batch, with_lm=with_lm, with_text=with_text), **targets)
        total = sum(losses.values())
        run.opt.zero_grad(set_to_none=True)
        total.backward()
        if recipe.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.optim.grad_clip)
        run.opt.step()
        run.sched.step()
        if world is None:
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
        else:  # the ranks' losses average to the global batch's
            means = world.mean(torch.stack([v.detach().float() for v in losses.values()] + [total.detach().float()]))
            for k, v in zip([*losses, "loss"], means.tolist()):
                sums[k] = sums.get(k, 0.0) + v
        clips += len(idx)
        elapsed = time.perf_counter() - t0
        if step % tc.log_every == 0 or step == len(batches) - 1:
            advance(step + 1 - reported, f"loss {sums['loss'] / (step + 1):.3f} {clips / elapsed:.1f} clips/s")
            reported = step + 1
        over = bool(tc.max_minutes) and (run.state["train_seconds"] + elapsed) / 60 >= tc.max_minutes
        if world is not None and tc.max_minutes:
            over = world.broadcast(over)  # rank 0's clock decides for all
        if over:
            # a guard, not a budget: the schedule is not annealed, so the model is not the recipe's
            notify("note", f"stopped by the train.max_minutes guard ({tc.max_minutes:g} min) in epoch {epoch}/"
                           f"{tc.epochs}, step {step + 1}/{len(batches)}: the learning rate had not annealed")
            cut = True
            break
    seconds = time.perf_counter() - t0
    run.state["train_seconds"] += seconds
    return {"epoch": epoch, "step": epoch * run.steps_per_epoch, "lr": run.sched.get_last_lr()[0],
            **{k: v / (step + 1) for k, v in sums.items()}, "clips_per_s": clips / seconds,
            "epoch_seconds": seconds, "train_minutes": run.state["train_seconds"] / 60,
            "logit_scale_fine": float(model.logit_scale_fine.detach().exp())}, cut


def _evaluate(run: _Run) -> dict[str, float]:
    """Dev metrics of the model as it is now: retrieval R@K (joint) or BLEU (translate). The encoded dev
    set of a joint run is kept as `run.encoded` for the checkpoint."""
    tc, model, dev = run.recipe.train, run.model, run.dev_set
    if run.world is not None and not run.world.main:
        return run.world.broadcast(None)  # rank 0 evaluates; every rank takes the same decisions
    if tc.stage == "translate":
        # dev translations decode as the saved checkpoint will, at the dev beam
        metrics = evaluate_translation(model, dev.features, dev.texts, run.recipe.decode.with_overrides(beam=tc.dev_beam),
                                       tc.eval_batch_size)
        run.encoded = None
    else:
        metrics, run.encoded = evaluate_retrieval(model, dev.features, dev.texts, tc.eval_batch_size)
    model.train()
    if run.world is not None:
        run.world.broadcast(metrics)
    return metrics


def _checkpoint(run: _Run, epoch: int, row: dict[str, Any]) -> None:
    """Log the epoch, keep the model in OUT when dev improved (and, for a joint run, its weights and dev
    encoding in memory for the ranking stages), and the resumable state in OUT/last. In a distributed
    run every rank keeps the state; rank 0 alone writes."""
    world = run.world
    writes = world is None or world.main
    if writes:
        with open(run.out / LOG_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")
    state, model = run.state, run.model
    state["epoch"] = epoch
    dev_metrics = {k: row[k] for k in row if k.startswith(("cico_", "global_", "BLEU", "chrF", "ROUGE")) or k == "score"}
    if row["score"] > state["best_score"]:
        state.update(best_score=row["score"], best_epoch=epoch, best_dev=dev_metrics, bad_epochs=0)
        if writes:
            save_model(model, run.out, recipe=run.recipe.to_dict(), extra={"best_epoch": epoch, "dev": dev_metrics})
        if writes and run.recipe.train.stage == "joint":
            run.best = (model.checkpoint_hash, {k: v.detach().clone() for k, v in model.state_dict().items()},
                        run.encoded)
    else:
        state["bad_epochs"] += 1
    if world is None:
        _save_state(model, run.opt, run.sched, run.out, run.recipe, state)
        return
    rng_states = world.all_objects(torch.get_rng_state())  # each rank's dropout stream, for resuming
    if writes:
        _save_state(model, run.opt, run.sched, run.out, run.recipe, state,
                    extra={"world_size": world.size, "torch_rng_ranks": rng_states})
    world.barrier()  # OUT/last is complete before any rank goes on


def _fit_stages(run: _Run, notify: Notify) -> None:
    """Learn the gloss lexicon and fit the lexicon and likelihood stages on the best epoch's weights and
    dev encoding: kept in memory when this process saw that epoch, read back once from OUT otherwise
    (a run resumed after its best epoch)."""
    from slsearch.rank import RetrievalModel
    from slsearch.training.dev_eval import encode_dev

    recipe, model = run.recipe, run.model
    with_lexicon = recipe.lexicon.enabled and model.video.gloss_head is not None
    depth = recipe.likelihood.depth if recipe.likelihood.enabled and recipe.loss.lm_weight else None
    if not with_lexicon and not depth:
        return
    t0 = time.perf_counter()
    if run.best is not None:
        weights_hash, weights, dev = run.best
        model.load_state_dict(weights)
        model.checkpoint_hash = weights_hash
        model.eval()
    else:
        model = load_model(run.out, device=model.device)
        dev = encode_dev(model, run.dev_set.features, run.dev_set.texts, recipe.train.eval_batch_size)
    lexicon = None
    if with_lexicon:
        clips = run.train_clips
        if recipe.lexicon.from_readings:
            clips = with_own_readings(model, clips, run.train_set.features)
        lexicon = learn_lexicon(clips, recipe.lexicon)
    retrieval = RetrievalModel(model, decode=recipe.decode, path=run.out, recipe=recipe.to_dict())
    bank = hubness_bank(model, run.train_set.features, recipe.hubness.bank, recipe.train.seed)
    calibrate_stages(retrieval, dev, lexicon, depth, bank)
    seconds = time.perf_counter() - t0
    best_dev = run.state["best_dev"]
    if retrieval.lexicon is not None:
        f = retrieval.lexicon.fusion
        notify("note", f"gloss lexicon: {len(lexicon.units)} word units x {len(lexicon.glosses)} glosses; dev R@1 "
                       f"with CiCo + lexicon T2V {f['t2v']['dev_R@1']:.1f} V2T {f['v2t']['dev_R@1']:.1f} (CiCo alone "
                       f"{best_dev.get('cico_t2v_R@1', 0):.1f} / {best_dev.get('cico_v2t_R@1', 0):.1f}; weights "
                       f"{f['t2v']['weight']:g} / {f['v2t']['weight']:g})")
    if retrieval.hubness is not None:
        f = retrieval.hubness.fusion["v2t"]
        notify("note", f"hubness (bank of {len(retrieval.hubness.bank_tokens)} training clips): dev V2T R@1 "
                       f"{f['dev_R@1_before']:.1f} -> {f['dev_R@1']:.1f} (share {f['share']:g})")
    if retrieval.likelihood is not None:
        stage = retrieval.likelihood
        parts = [f"{d.upper()} {f['dev_R@1_before']:.1f} -> {f['dev_R@1']:.1f} (weight {f['weight']:g})"
                 for d, f in stage.fusion.items()]
        notify("note", f"decoder-likelihood re-ranking of the first {stage.depth}; dev R@1 " + ", ".join(parts)
               + ("" if "v2t" in stage.fusion else "; V2T not re-ranked (no sentence prior: model.lm_prior_rate = 0)"))
    notify("note", f"ranking stages fitted on the best epoch in {seconds:.1f}s")


def _features_on_disk(where: str, front_end) -> bool:
    return where == "disk" or (where == "auto" and front_end.needs_crops)


def _comparable(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe without the values filled in by the code (they differ before/after building), the
    after-training lexicon and likelihood settings, and the run's guards and machine settings: none of
    them changes what the steps learn, so a run may resume with them changed (a longer max_minutes)."""
    model = {k: v for k, v in recipe["model"].items() if k not in DERIVED_MODEL_KEYS}
    train = {k: v for k, v in recipe["train"].items() if k not in RESUMABLE_CHANGES}
    return {**{k: v for k, v in recipe.items() if k not in ("lexicon", "likelihood", "hubness")}, "model": model,
            "train": train}
