"""A running average of the weights (exponential moving average, Polyak averaging).

With `train.ema_decay` > 0 the dev evaluation, the best-checkpoint choice and the saved checkpoint
use the averaged weights; training itself steps the live ones. Near the end of a run the live
weights wander around a minimum from step to step (dev R@1 moves by a point or two between epochs);
their average sits nearer its centre.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight-average decay must be between 0 and 1, got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the live weights in after an optimiser step. The first steps use a shorter memory
        ((1 + n) / (10 + n)) so the average does not carry the random initialisation for long."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, live in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(live.detach(), 1.0 - decay)
        for avg, live in zip(self.model.buffers(), model.buffers()):  # BatchNorm statistics: the live ones
            avg.copy_(live)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
