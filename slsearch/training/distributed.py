"""Data-parallel training across processes: `torchrun --nproc_per_node N -m slsearch train ...`.

Set up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); without
it (or with WORLD_SIZE=1) `setup` returns None and training is the single process it always was.

How N processes train the model one process would train on the same data:

- every rank draws the same global batches (`training.data.epoch_batches`, same seed) and builds the
  contiguous slice `part` of each; the clips' time stretches are drawn for the whole batch on every
  rank and the frames are padded to the whole batch's longest clip, so a clip's input is the same;
- batch norm reduces its statistics over all ranks (`DistributedBatchNorm1d`, CPU and GPU alike);
- the contrastive losses gather every rank's embeddings and token states (`BatchGroup.gather`, the
  local part keeps its gradient; backward sums the gathered gradient over ranks, as
  torch.distributed.nn.all_gather does), so each rank computes the global batch's InfoNCE;
- the LM and gloss losses divide by the global number of tokens / clips (`BatchGroup.global_mean`);
- DistributedDataParallel averages the gradients. Each rank's loss is scaled so that this average
  is the gradient of the single-process loss.

Only rank 0 evaluates on dev, writes checkpoints, logs and progress; it broadcasts the dev metrics so
every rank takes the same early-stopping and best-epoch decisions. Dropout and the null-clip draws
use a random stream per rank (they cannot match a single process; the tiny recipe has none).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from slsearch.errors import SlsearchError

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class World:
    """This process's place in a distributed run."""

    rank: int
    size: int
    local_rank: int
    device: torch.device
    group: Any  # a second process group for the loss's collectives (apart from DDP's gradient buckets)
    owned: bool = True  # this code joined the process group (and leaves it at the end of training)

    @property
    def main(self) -> bool:
        return self.rank == 0

    # --- the global batch ------------------------------------------------------------------------

    def part(self, n: int) -> slice:
        """This rank's contiguous share of a global batch of n clips (sizes differ by at most one)."""
        bounds = _split_bounds(n, self.size)
        return slice(bounds[self.rank], bounds[self.rank + 1])

    def usable(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Global batches with at least one clip for every rank (a last short batch may have fewer)."""
        return [b for b in batches if len(b) >= self.size]

    # --- collectives -----------------------------------------------------------------------------

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's object on every rank."""
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def all_objects(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise mean over ranks of a detached tensor (the per-step losses for the log)."""
        values = values.detach().float().clone()
        dist.all_reduce(values, group=self.group)
        return values / self.size

    def check_same(self, what: str, payload: bytes) -> None:
        """Refuse a run whose ranks disagree on something that must be identical (the tokenizer)."""
        digest = hashlib.sha256(payload).hexdigest()
        if len(set(self.all_objects(digest))) > 1:
            raise SlsearchError(f"distributed training: the processes built different {what}; "
                                f"train on one machine's files or start from a checkpoint (train.init)")

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def _split_bounds(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    bounds = [0]
    for r in range(parts):
        bounds.append(bounds[-1] + base + (1 if r < extra else 0))
    return bounds


def in_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device) -> World | None:
    """Join the process group torchrun describes, or None for a plain single-process run. `device`
    is the recipe's device: on CUDA each rank takes GPU LOCAL_RANK and NCCL, on the CPU gloo."""
    if not in_torchrun():
        return None
    try:
        size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as e:
        raise SlsearchError(f"distributed training: bad torchrun environment ({e})") from e
    if size <= 1:
        return None
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise SlsearchError(f"distributed training: {', '.join(missing)} not set; start it with torchrun")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise SlsearchError(f"distributed training: process {local_rank} on this machine, but it has "
                                f"{torch.cuda.device_count()} GPU(s); use --nproc_per_node <= the GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    owned = not dist.is_initialized()
    if owned:
        try:
            dist.init_process_group(backend, rank=rank, world_size=size, timeout=datetime.timedelta(minutes=30))
        except (RuntimeError, ValueError) as e:
            raise SlsearchError(f"distributed training: cannot join the process group "
                                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    group = dist.new_group(backend=backend)
    return World(rank, size, local_rank, device, group, owned)


# --- the loss's view of the global batch ------------------------------------------------------------

class _GatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's (n_r, ...) tensor along dim 0 (the ranks' n_r may differ). Backward:
    the gradient of the concatenation summed over ranks, this rank's rows of it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group, sizes: list[int], rank: int) -> torch.Tensor:  # type: ignore[override]
        ctx.group, ctx.sizes, ctx.rank = group, sizes, rank
        padded = _pad_dim(x, 0, max(sizes)).contiguous()
        out = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(out, padded, group=group)
        return torch.cat([o[:n] for o, n in zip(out, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None, None


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; backward sums the gradients over ranks (each rank's loss reads the sum)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:  # type: ignore[override]
        ctx.group = group
        out = x.contiguous().clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def _pad_dim(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    if x.shape[dim] == size:
        return x
    pad = [0, 0] * (x.ndim - dim - 1) + [0, size - x.shape[dim]]
    if x.dtype == torch.bool:
        return F.pad(x.to(torch.uint8), pad).bool()
    return F.pad(x, pad)


class BatchGroup:
    """What C2RLLoss needs of the other ranks (`C2RLLoss.batch_group`).

    Each rank's loss is the global batch's: the contrastive terms are computed identically on every
    rank from gathered tensors; the mean terms are this rank's sum over the global count, times the
    world size. DDP's gradient average then equals the single-process gradient."""

    def __init__(self, world: World):
        self.world = world

    def gather(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """(n_r, L_r, ...) tensors of this rank -> (sum n_r, max L_r, ...) in rank order, dim 1 padded
        (zeros / False); gradients flow back to each rank's own rows."""
        w = self.world
        shape = torch.tensor([tensors[0].shape[0]] + [t.shape[1] for t in tensors if t.ndim >= 2],
                             dtype=torch.long, device=tensors[0].device)
        shapes = [torch.empty_like(shape) for _ in range(w.size)]
        dist.all_gather(shapes, shape, group=w.group)
        shapes_t = torch.stack(shapes).cpu()
        sizes = shapes_t[:, 0].tolist()
        longest = shapes_t[:, 1:].max(0).values.tolist()
        out, k = [], 0
        for t in tensors:
            if t.ndim >= 2:
                t = _pad_dim(t, 1, int(longest[k]))
                k += 1
            if t.dtype == torch.bool:
                out.append(_GatherWithGrad.apply(t.to(torch.uint8), w.group, sizes, w.rank).bool())
            else:
                out.append(_GatherWithGrad.apply(t, w.group, sizes, w.rank))
        return out

    def global_mean(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """This rank's part of a mean over the global batch, scaled for DDP's gradient average:
        total_r / sum(count) * world size (the ranks' values average to the global mean)."""
        n = count.detach().to(torch.float32).reshape(1).clone()
        dist.all_reduce(n, group=self.world.group)
        if float(n) == 0:
            return total * 0.0
        return total * (self.world.size / n[0])


# --- batch norm over all ranks ----------------------------------------------------------------------

class DistributedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch (torch's SyncBatchNorm
    does not run on the CPU). Same parameters and buffers as BatchNorm1d: checkpoints do not change.
    Mean and variance in two passes, as BatchNorm does."""

    group: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.group is None:
            return super().forward(x)
        dims = [0] + list(range(2, x.ndim))  # (B, C) or (B, C, T): statistics per channel C
        shape = [1, -1] + [1] * (x.ndim - 2)
        xf = x.float()
        local_n = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float32, device=x.device)
        dist.all_reduce(local_n, group=self.group)
        n = float(local_n)
        mean = _AllReduceSum.apply(xf.sum(dims), self.group) / n
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims), self.group) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                unbiased = var.detach() * (n / max(n - 1, 1))
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batch_norm(model: nn.Module, world: World) -> int:
    """Make every BatchNorm1d of `model` reduce its statistics over the ranks (in place; the modules
    keep their parameters and buffers). Returns how many were converted."""
    count = 0
    for module in model.modules():
        if type(module) is nn.BatchNorm1d:
            module.__class__ = DistributedBatchNorm1d
            module.group = world.group
            count += 1
    return count


class _Outputs(nn.Module):
    """The model's forward, with parameters it returns as they are (the logit scales) returned as views:
    DDP's search for unused parameters follows the outputs' graph, and a bare parameter has none (it
    would be marked unused, then its gradient would arrive from the loss: "mark a variable ready only once")."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        return {k: v.view_as(v) if isinstance(v, nn.Parameter) else v for k, v in out.items()}


def wrap(model: nn.Module, world: World, find_unused: bool) -> nn.Module:
    """The model behind DistributedDataParallel (gradients averaged over ranks)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(_Outputs(model), device_ids=ids, find_unused_parameters=find_unused)

