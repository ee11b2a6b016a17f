"""Choice of the compute device: CUDA, then Apple MPS, else CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from deepblock_nb.errors import DeviceMemoryError, ModelError

__all__ = ["amp_dtype", "out_of_memory_as_error", "place", "resolve_device"]


@contextlib.contextmanager
def out_of_memory_as_error(device: torch.device, batch_size: int, what: str) -> Iterator[None]:
    """Turn the accelerator's out-of-memory error into a :class:`DeviceMemoryError`
    that says so and names the batch size to lower (not one image's failure)."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        raise _memory_error(device, batch_size, what) from exc
    except RuntimeError as exc:  # MPS and older CUDA paths raise a plain RuntimeError
        if "out of memory" not in str(exc).lower():
            raise
        raise _memory_error(device, batch_size, what) from exc


def _memory_error(device: torch.device, batch_size: int, what: str) -> DeviceMemoryError:
    smaller = max(1, batch_size // 2)
    hint = (
        f"lower batch_size (to {smaller}, say)"
        if batch_size > 1
        else "use a smaller tile_size or device='cpu'"
    )
    return DeviceMemoryError(f"{device} ran out of memory while {what} at batch size {batch_size}: {hint}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``device``.

    Args:
        device: ``"auto"`` (CUDA, then MPS, else CPU), or any torch device string
            such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Raises:
        ModelError: the device is unknown or not available on this machine.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ModelError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but CUDA is not available here; use device='auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelError(
            f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError(f"device {device!r} asked for, but MPS is not available here; use device='auto'")
    return dev


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for mixed precision on ``device``, or None where it is not used.

    Mixed precision runs on CUDA only (bfloat16 where supported, else float16).
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def place(module: nn.Module, device: torch.device) -> nn.Module:
    """Move a detector to ``device``, its 4-d weights in channels-last layout.

    Convolutions then run in the layout oneDNN and cuDNN are fastest in: the
    small preset trains about 25 % and predicts about 35 % faster on a CPU, with
    the same outputs. Other tensors keep their layout; checkpoints load either way.
    """
    return module.to(device).to(memory_format=torch.channels_last)
