"""Pixel arrays handed to the project (a webcam frame, a drawn image) as image files."""

from __future__ import annotations

import io

import numpy as np

from deepblock_nb.errors import ImageReadError

__all__ = ["encode_png"]


def encode_png(frame: np.ndarray, name: str) -> bytes:
    """PNG bytes of an ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 array; ``name`` is
    the frame's name in the error raised for any other array."""
    from PIL import Image

    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageReadError(
            f"frame {name!r}: expected a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4), "
            f"got {arr.dtype} {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"frame {name!r}: the array is empty ({arr.shape})")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
