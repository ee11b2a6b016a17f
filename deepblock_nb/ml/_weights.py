"""Pretrained weights found on this machine: never downloaded, only looked up.

torchvision keeps downloaded weights in the torch hub cache,
``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``. A file there
(or a file the user names) is used; when none is there the caller trains from
scratch after a clear warning. Nothing here touches the network.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepblock_nb.errors import ModelError

__all__ = [
    "hub_checkpoints_dir",
    "hub_file",
    "load_matching",
    "read_state_dict",
    "warn_no_weights",
]


def hub_checkpoints_dir() -> Path:
    """The folder torchvision reads cached weights from (follows ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hub_file(weights_enum: Any) -> Path | None:
    """The cached file of a torchvision weights enum member, or None when it is absent."""
    if weights_enum is None:
        return None
    path = hub_checkpoints_dir() / os.path.basename(weights_enum.url)
    return path if path.is_file() else None


def warn_no_weights(what: str, wanted: list[Any], fallback: str) -> None:
    """Warn that none of the ``wanted`` weights enums is cached; ``fallback`` says what happens instead."""
    names = " or ".join(os.path.basename(w.url) for w in wanted)
    warnings.warn(
        f"no pretrained weights for {what} found in {hub_checkpoints_dir()}; {fallback}. "
        f"To use them, place {names} there, or pass weights='path/to/file.pth'.",
        UserWarning,
        stacklevel=4,
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: a plain state dict or one of our checkpoints.

    Raises:
        ModelError: the file is missing or holds no tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"weights file {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"weights file {p} cannot be read as torch weights: {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model_state"), dict):
        obj = obj["model_state"]
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, dict) else {}
    if not state:
        raise ModelError(f"weights file {p} holds no tensors (expected a state dict)")
    return state


# (prefix in the model, prefix in the file): a detector file, then classification
# backbones under torchvision's FPN and IntermediateLayerGetter wrappers.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("", ""),
    ("backbone.body.", ""),
    ("backbone.body.", "features."),
    ("backbone.", ""),
)


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> int:
    """Copy every tensor of ``state`` whose name and shape fit ``module``; returns how many.

    Heads sized for another number of classes are skipped, so COCO detector files
    and ImageNet backbone files both load into a detector for our categories.

    Raises:
        ModelError: nothing in ``state`` fits the module.
    """
    own = module.state_dict()
    best: dict[str, torch.Tensor] = {}
    for mine, theirs in _PREFIXES:
        found = {}
        for key, value in state.items():
            if not key.startswith(theirs):
                continue
            target = mine + key[len(theirs) :]
            if target in own and own[target].shape == value.shape:
                found[target] = value
        if len(found) > len(best):
            best = found
    if not best:
        raise ModelError(f"no tensor of {source} fits this model; is it the weights of another architecture?")
    module.load_state_dict(best, strict=False)
    return len(best)
