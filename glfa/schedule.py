"""What changes from one iteration to the next besides the weights: the learning rate, the seed
of the iteration's random choices (the contrastive anchors), and the weights' moving average."""
import math
import random

import numpy as np
import torch
from torch import Tensor, nn

from glfa.checkpoint import check_weights
from sampler import ITERATION_STREAM, mixed_seed


def learning_rate(base_lr: float, lr_decay: float, iteration: int, schedule: str = "reference",
                  max_iter: int = 1, min_lr: float = 0.0, warmup_iters: int = 0) -> float:
    """The learning rate at ``iteration`` (counted from 0).

    ``reference``: ``lr / (1 + lr_decay · iteration)``, which hardly decays over a short budget.
    ``cosine`` and ``linear`` fall from ``lr`` to ``min_lr`` at ``max_iter``, so a short run ends
    low. ``warmup_iters`` ramps any schedule up linearly from ``lr / warmup_iters`` first (a
    fresh optimiser on warm-started weights takes its first steps gently).
    """
    if schedule == "reference":
        rate = base_lr / (1.0 + lr_decay * iteration)
    else:
        progress = min(iteration / max(max_iter - 1, 1), 1.0)
        fall = (1 + math.cos(math.pi * progress)) / 2 if schedule == "cosine" else 1 - progress
        rate = min_lr + (base_lr - min_lr) * fall
    if iteration < warmup_iters:
        rate *= (iteration + 1) / warmup_iters
    return rate


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def iteration_seed(seed: int, rank: int, iteration: int) -> int:
    """The seed of the global RNG (contrastive anchors) for one iteration on one rank."""
    return mixed_seed(seed, rank, iteration, ITERATION_STREAM)


class WeightAverage:
    """``--ema``: an exponential moving average of the trained modules' weights,
    ``average ← decay·average + (1 − decay)·weights`` after every optimiser step, saved beside
    the raw weights and in the training state."""

    def __init__(self, modules: dict[str, nn.Module], decay: float):
        self.modules, self.decay = modules, decay
        self.average = {name: {k: v.detach().clone().float() for k, v in module.state_dict().items()}
                        for name, module in modules.items()}

    @torch.no_grad()
    def update(self) -> None:
        for name, module in self.modules.items():
            average = self.average[name]
            for key, value in module.state_dict().items():
                average[key].lerp_(value.float(), 1 - self.decay)

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        return {name: {k: v.cpu() for k, v in weights.items()} for name, weights in self.average.items()}

    def load_state_dict(self, state: dict[str, dict[str, Tensor]], path: str) -> None:
        """The average saved in a training state, its shapes and values checked."""
        for name, module in self.modules.items():
            expected, saved = module.state_dict(), state.get(name, {})
            check_weights(expected, saved, path, f"averaged {name}")
            self.average[name] = {k: saved[k].detach().clone().float() for k in expected}
