"""numpy conversion with numpy's own errors (ragged lists, text, None) turned into ours."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepblock_nb.errors import ArgumentError, ArgumentTypeError

__all__ = ["as_array"]


def as_array(values: Any, dtype: type | None, name: str) -> np.ndarray:
    """``np.asarray(values, dtype)``; a value numpy cannot convert raises
    :class:`ArgumentTypeError` / :class:`ArgumentError` naming ``name``."""
    try:
        arr = np.asarray(values, dtype=dtype)
    except TypeError as exc:
        raise ArgumentTypeError(f"{name} must be an array of numbers ({exc})") from exc
    except (ValueError, OverflowError) as exc:  # ragged rows, text that is not a number
        raise ArgumentError(f"{name} must be an array of numbers ({exc})") from exc
    if arr.size and arr.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"{name} must hold numbers, got an array of {arr.dtype}")
    return arr
