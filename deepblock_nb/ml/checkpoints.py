"""Checkpoints: save atomically, load safely (``weights_only=True``), rebuild for inference.

A checkpoint is a dict: ``model_state``, ``preset`` (str), ``preset_options``
(dict), ``category_ids`` (list[int]; label ``i + 1`` is ``category_ids[i]``),
``tile_size`` (int, the model's input side in pixels), ``epoch`` (epochs
completed), ``global_step``, ``best_score``, ``optimizer_state``,
``scheduler_state``, ``config`` (dict) and ``history`` (list of row dicts). When
the run averages its weights (``TrainConfig.ema``), ``model_state`` is the average
(what predicts) and ``train_state`` the trained weights a resume continues from,
with ``average_updates`` the steps averaged so far.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepblock_nb.errors import ModelError
from deepblock_nb.io.atomic import atomic_open

__all__ = ["LoadedModel", "load_checkpoint", "load_for_inference", "save_checkpoint"]

_REQUIRED = ("model_state", "preset", "preset_options", "category_ids", "tile_size")


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``checkpoint`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, even if the process dies mid-write.
    """
    dest = Path(path)
    with atomic_open(dest) as fh:
        torch.save(checkpoint, fh)
    return dest


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no code runs from the file).

    Raises:
        ModelError: missing, unreadable, or not a deepblock_nb checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"checkpoint {p} cannot be read ({exc}); it may be truncated or from another tool"
        ) from exc
    missing = [k for k in _REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ModelError(f"checkpoint {p} is not a deepblock_nb checkpoint (missing {', '.join(missing)})")
    return ckpt  # type: ignore[no-any-return]


@dataclass
class LoadedModel:
    """A trained detector ready to predict.

    ``model`` is in eval mode on ``device``; its forward takes a list of ``(3, H, W)``
    float tensors in [0, 1] and returns dicts of ``boxes`` (xyxy, input pixels),
    ``labels`` (1..K, label ``i + 1`` is ``category_ids[i]``) and ``scores``.
    """

    model: nn.Module
    category_ids: list[int]
    tile_size: int
    preset: str
    device: torch.device
    #: 95th percentile of the longer side of the training boxes (image pixels), or
    #: None (older checkpoints): sets prediction's context margin.
    box_size: float | None = None
    #: model pixels per image pixel (``preset_options["input_scale"]``), or None for
    #: models that resize every input to ``tile_size`` (older checkpoints, custom modules)
    input_scale: float | None = None


def build_from_checkpoint(ckpt: dict[str, Any], model: nn.Module | None = None) -> nn.Module:
    """The checkpoint's network with its weights, on the CPU, in train mode.

    Args:
        model: the module for a checkpoint of a custom (user-given) model.
    """
    from deepblock_nb.ml.models import CUSTOM, build_model

    if ckpt["preset"] == CUSTOM:
        if model is None:
            raise ModelError("this checkpoint holds a custom model; pass the same module as model=")
        module = model
    else:
        module = build_model(
            ckpt["preset"],
            len(ckpt["category_ids"]),
            tile_size=int(ckpt["tile_size"]),
            options=dict(ckpt["preset_options"]),
            load_weights=False,
        ).module
    try:
        module.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        raise ModelError(f"checkpoint weights do not fit the {ckpt['preset']} network: {exc}") from exc
    return module


def load_for_inference(
    path: str | os.PathLike[str], device: str | torch.device = "auto", model: nn.Module | None = None
) -> LoadedModel:
    """Load ``best.pt`` / ``last.pt`` for prediction.

    Args:
        device: ``"auto"`` or a torch device (see :func:`~deepblock_nb.ml.device.resolve_device`).
        model: the module, for checkpoints of a custom model.

    Raises:
        ModelError: the file is missing, unreadable or does not fit its preset.
    """
    from deepblock_nb.ml.device import place, resolve_device

    dev = resolve_device(device)
    ckpt = load_checkpoint(path)
    module = build_from_checkpoint(ckpt, model)
    place(module, dev).eval()
    box_size = ckpt.get("box_size")
    return LoadedModel(
        module,
        [int(c) for c in ckpt["category_ids"]],
        int(ckpt["tile_size"]),
        str(ckpt["preset"]),
        dev,
        box_size=None if box_size is None else float(box_size),
        input_scale=_input_scale(ckpt),
    )


def _input_scale(ckpt: dict[str, Any]) -> float | None:
    scale = dict(ckpt.get("preset_options") or {}).get("input_scale")
    return None if scale is None else float(scale)
