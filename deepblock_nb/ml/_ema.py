"""An exponential moving average of a model's weights, for scoring and prediction.

The weights a trainer ends on are one noisy point of its last steps; their
running average is steadier and usually scores higher, most of all at the peak
learning rate and on small data sets (YOLO, EfficientDet and DETR train this way).
The rule is the usual one, with a half-life given in optimiser steps and a ramp
from a plain copy (the first steps of a model from scratch are not worth keeping).
One update is a single fused ``torch._foreach_lerp_`` over every floating-point
tensor (the tensor lists are gathered once): a few milliseconds for a small model
on a CPU, where ``torch.optim.swa_utils.AveragedModel`` regroups its tensors on
every call.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of ``model``'s parameters and buffers (batch-norm statistics).

    ``update(model)`` after each optimiser step, always with the same model;
    ``module`` is the averaged network (eval mode, no gradients), whose
    ``state_dict()`` has the model's own keys. The decay after ``n`` updates is
    ``0.5 ** (1 / half_life) * (1 - exp(-n / half_life))``; integer buffers (batch
    counters) are copied.
    """

    def __init__(self, model: nn.Module, half_life: float, updates: int = 0) -> None:
        self.half_life = max(1.0, float(half_life))
        self.updates = int(updates)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._pairs: (
            tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None
        )
        self._pairs = None
        self._source: nn.Module | None = None

    def decay(self, updates: int) -> float:
        return 0.5 ** (1.0 / self.half_life) * (1.0 - math.exp(-updates / self.half_life))

    def _gather(self, model: nn.Module) -> tuple[list[torch.Tensor], ...]:
        if self._pairs is None or self._source is not model:
            avg_f, cur_f, avg_i, cur_i = [], [], [], []
            mine = dict(self.module.state_dict(keep_vars=True))
            for name, tensor in model.state_dict(keep_vars=True).items():
                a = mine[name].data
                if tensor.is_floating_point():
                    avg_f.append(a)
                    cur_f.append(tensor.data)
                else:
                    avg_i.append(a)
                    cur_i.append(tensor.data)
            self._pairs, self._source = (avg_f, cur_f, avg_i, cur_i), model
        return self._pairs

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        avg_f, cur_f, avg_i, cur_i = self._gather(model)
        self.updates += 1
        if self.updates == 1:
            torch._foreach_copy_(avg_f, cur_f)
        else:
            torch._foreach_lerp_(avg_f, cur_f, 1.0 - self.decay(self.updates))
        for a, c in zip(avg_i, cur_i):
            a.copy_(c)
