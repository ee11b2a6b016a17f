"""``Detections``: the one box container used everywhere.

A dataclass of parallel arrays, in pixels of the original full-resolution image,
``xyxy`` with the origin top-left and y down. No object per box.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.core._arrays import as_array
from deepblock_nb.errors import ArgumentError, ArgumentTypeError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Detections"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(eq=False)
class Detections:
    """Boxes of one image.

    Attributes:
        xyxy: ``(N, 4)`` float64, ``x1, y1, x2, y2`` in image pixels.
        class_id: ``(N,)`` int64 category ids (the project's ids, >= 1).
        confidence: ``(N,)`` float64 scores in [0, 1], or ``None`` for ground truth.
        ids: ``(N,)`` int64 record ids (annotation or prediction ids), or ``None``.
    """

    xyxy: FloatArray
    class_id: IntArray
    confidence: FloatArray | None = None
    ids: IntArray | None = None

    def __post_init__(self) -> None:
        xyxy = as_array(self.xyxy, np.float64, "xyxy")
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ArgumentError(f"xyxy must have shape (N, 4), got {xyxy.shape}")
        n = len(xyxy)
        self.xyxy = xyxy
        self.class_id = _column(self.class_id, n, np.int64, "class_id")
        if self.confidence is not None:
            self.confidence = _column(self.confidence, n, np.float64, "confidence")
        if self.ids is not None:
            self.ids = _column(self.ids, n, np.int64, "ids")

    @classmethod
    def empty(cls, with_confidence: bool = False) -> Detections:
        """No boxes; ``with_confidence`` gives an empty confidence column."""
        return cls(
            np.zeros((0, 4)),
            np.zeros(0, np.int64),
            np.zeros(0) if with_confidence else None,
        )

    @classmethod
    def merge(cls, parts: Iterable[Detections]) -> Detections:
        """Concatenate several containers; optional columns survive only if all have them."""
        parts = [p for p in parts]
        if not parts:
            return cls.empty()
        conf = (
            np.concatenate([p.confidence for p in parts])  # type: ignore[misc]
            if all(p.confidence is not None for p in parts)
            else None
        )
        ids = (
            np.concatenate([p.ids for p in parts])  # type: ignore[misc]
            if all(p.ids is not None for p in parts)
            else None
        )
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            conf,
            ids,
        )

    @classmethod
    def from_xywh(
        cls,
        xywh: npt.ArrayLike,
        class_id: npt.ArrayLike,
        confidence: npt.ArrayLike | None = None,
    ) -> Detections:
        """Build from COCO-style ``x, y, width, height`` boxes."""
        b = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
        return cls(xyxy, np.asarray(class_id), None if confidence is None else np.asarray(confidence))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        """Index with a boolean mask, an integer array, a slice or an int."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index],
            self.class_id[index],
            None if self.confidence is None else self.confidence[index],
            None if self.ids is None else self.ids[index],
        )

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise ArgumentTypeError("iterate over Detections through its arrays (xyxy, class_id, ...)")

    def __repr__(self) -> str:
        extra = "" if self.confidence is None else ", with confidence"
        return f"Detections({len(self)} boxes{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        return (
            np.array_equal(self.xyxy, other.xyxy)
            and np.array_equal(self.class_id, other.class_id)
            and _opt_equal(self.confidence, other.confidence)
            and _opt_equal(self.ids, other.ids)
        )

    @property
    def xywh(self) -> FloatArray:
        """``(N, 4)`` boxes as ``x, y, width, height``."""
        return np.concatenate([self.xyxy[:, :2], self.xyxy[:, 2:] - self.xyxy[:, :2]], axis=1)

    @property
    def area(self) -> FloatArray:
        """``(N,)`` box areas in square pixels."""
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]  # [N,2]
        return wh[:, 0] * wh[:, 1]

    def with_offset(self, dx: float, dy: float) -> Detections:
        """A copy shifted by ``(dx, dy)`` pixels (tile frame to image frame)."""
        return Detections(self.xyxy + np.array([dx, dy, dx, dy]), self.class_id, self.confidence, self.ids)

    def to_frame(self, names: Sequence[str] | dict[int, str] | None = None) -> pd.DataFrame:
        """A pandas table, one row per box; ``names`` maps class ids to category names."""
        import pandas as pd

        data: dict[str, Any] = {}
        if self.ids is not None:
            data["id"] = self.ids
        data.update(
            x1=self.xyxy[:, 0],
            y1=self.xyxy[:, 1],
            x2=self.xyxy[:, 2],
            y2=self.xyxy[:, 3],
            class_id=self.class_id,
        )
        if names is not None:
            lookup = names if isinstance(names, dict) else dict(enumerate(names))
            data["category"] = [lookup.get(int(c), str(int(c))) for c in self.class_id]
        if self.confidence is not None:
            data["confidence"] = self.confidence
        return pd.DataFrame(data)


def _column(values: Any, n: int, dtype: type, name: str) -> Any:
    arr = as_array(values, None, name)
    if arr.ndim == 0 and n == 1:
        arr = arr.reshape(1)
    if arr.size == 0 and n == 0:
        return np.zeros(0, dtype)
    if arr.shape != (n,):
        raise ArgumentError(f"{name} must have shape ({n},), got {arr.shape}")
    if dtype is np.int64 and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ArgumentError(f"{name} must hold integers")
    return arr.astype(dtype, copy=False)


def _opt_equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))
