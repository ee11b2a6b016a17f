"""An exponential moving average of a model's weights, for scoring and prediction.

The weights a trainer ends on are one noisy point of its last steps; their
running average is steadier and usually scores higher, most of all at the peak
learning rate and on small data sets (YOLO, EfficientDet and DETR train this way).
The average is torch's own :class:`torch.optim.swa_utils.AveragedModel` with an
exponential rule whose half-life is given in optimiser steps and which ramps up
from a plain copy (the first steps of a model from scratch are not worth keeping).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of ``model``'s parameters and buffers (batch-norm statistics).

    ``update(model)`` after each optimiser step; ``module`` is the averaged network
    (eval mode, no gradients), whose ``state_dict()`` has the model's own keys.
    The decay after ``n`` updates is ``0.5 ** (1 / half_life) * (1 - exp(-n / half_life))``.
    """

    def __init__(self, model: nn.Module, half_life: float, updates: int = 0) -> None:
        self.half_life = max(1.0, float(half_life))
        self._avg = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)
        self._avg.n_averaged.fill_(int(updates))
        for p in self._avg.parameters():
            p.requires_grad_(False)
        self._avg.eval()

    @property
    def module(self) -> nn.Module:
        return self._avg.module  # type: ignore[no-any-return]

    @property
    def updates(self) -> int:
        return int(self._avg.n_averaged.item())

    def decay(self, updates: int) -> float:
        return 0.5 ** (1.0 / self.half_life) * (1.0 - math.exp(-updates / self.half_life))

    def _lerp(
        self,
        averaged: tuple[torch.Tensor, ...] | list[torch.Tensor],
        current: tuple[torch.Tensor, ...] | list[torch.Tensor],
        n: torch.Tensor | int,
    ) -> None:
        if not averaged[0].is_floating_point():  # counters such as num_batches_tracked
            for a, c in zip(averaged, current):
                a.copy_(c)
            return
        weight = 1.0 - self.decay(int(n.item()) if isinstance(n, torch.Tensor) else int(n))
        torch._foreach_lerp_(list(averaged), list(current), weight)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self._avg.update_parameters(model)
        self._avg.eval()  # update_parameters keeps the mode; the average never trains

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Start from given averaged weights (a resumed run's ``model_state``)."""
        self.module.load_state_dict(state)
