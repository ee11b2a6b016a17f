"""Reading tile windows for prediction: in the calling thread, or a batch or two
ahead in a reader thread (:func:`~deepblock_nb.ml.predict.default_prefetch`).

Windows are ``x, y, w, h`` integer pixels of the full-resolution image; tiles come
out as ``(3, h, w)`` uint8 tensors, batch by batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from deepblock_nb.io.images import level_for

__all__ = ["BAND_BYTES", "InlineReader", "Prefetcher", "RegionReader", "read_window"]

IntArray = npt.NDArray[np.int64]


class RegionReader(Protocol):
    """The part of an ``ImageSource`` that prediction uses."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray: ...

    def overview(self, max_side: int) -> np.ndarray: ...


@dataclass(frozen=True)
class _Batch:
    start: int  # index of the first window of the batch
    tiles: list[torch.Tensor]  # (3, h, w) uint8 each, possibly pinned


_END = object()
#: Bytes of one band when a large window is read and reduced band by band.
BAND_BYTES = 32 * 1024 * 1024


def read_window(source: RegionReader, window: Sequence[int], max_side: int) -> np.ndarray:
    """A window's pixels, ``(h', w', 3)`` uint8, reduced so its longer side is ``<= max_side``.

    Windows within ``max_side`` are read as they are. Larger ones (a grid of huge
    tiles) are read from the finest pyramid level that is not finer than needed and
    reduced band by band, so memory stays about ``max_side**2`` whatever the window:
    the model would shrink such a tile to its input size anyway.
    """
    x, y, w, h = (int(v) for v in window)
    if max(w, h) <= max_side:
        return source.read_region(x, y, w, h)
    from PIL import Image

    scale = max(w, h) / max_side
    tw, th = max(1, round(w / scale)), max(1, round(h / scale))
    levels = list(getattr(source, "levels", None) or [(source.width, source.height)])
    level = level_for(levels, scale, scale)
    lw, lh = levels[level]
    fx, fy = lw / source.width, lh / source.height
    lx, ly = min(int(x * fx), lw - 1), min(int(y * fy), lh - 1)
    lx2, ly2 = max(lx + 1, min(lw, round((x + w) * fx))), max(ly + 1, min(lh, round((y + h) * fy)))
    out = np.empty((th, tw, 3), np.uint8)
    sy = (ly2 - ly) / th  # level rows per output row
    rows = max(1, int(BAND_BYTES // (3 * (lx2 - lx) * max(sy, 1.0))))  # output rows per band
    for r0 in range(0, th, rows):
        r1 = min(th, r0 + rows)
        y0, y1 = ly + int(r0 * sy), min(ly2, max(ly + int(r0 * sy) + 1, ly + round(r1 * sy)))
        band = source.read_region(lx, y0, lx2 - lx, y1 - y0, level)
        out[r0:r1] = np.asarray(Image.fromarray(band).resize((tw, r1 - r0), Image.Resampling.BOX))
    return out


class Prefetcher:
    """Reads batches of windows in a background thread into a bounded queue."""

    def __init__(
        self, source: RegionReader, windows: IntArray, batch_size: int, depth: int, pin: bool, max_side: int
    ) -> None:
        self._source = source
        self._windows = windows
        self._max_side = max_side
        self._batch_size = batch_size
        self._pin = pin
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deepblock-tile-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for start in range(0, len(self._windows), self._batch_size):
                tiles = []
                for window in self._windows[start : start + self._batch_size].tolist():
                    if self._stop.is_set():
                        return
                    rgb = read_window(self._source, window, self._max_side)  # (h, w, 3) uint8
                    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
                    tiles.append(t.pin_memory() if self._pin else t)
                if not self._put(_Batch(start, tiles)):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def _put(self, item: Any) -> bool:
        # a plain blocking put: no polling wake-ups to steal the model's cores;
        # close() unblocks it by draining the queue
        if self._stop.is_set():
            return False
        self._queue.put(item)
        return not self._stop.is_set()

    def __iter__(self) -> Iterator[_Batch]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


class InlineReader:
    """Reads batches of windows in the calling thread (see :func:`default_prefetch`)."""

    def __init__(self, source: RegionReader, windows: IntArray, batch_size: int, max_side: int) -> None:
        self._source, self._windows = source, windows
        self._batch_size, self._max_side = batch_size, max_side

    def __iter__(self) -> Iterator[_Batch]:
        for start in range(0, len(self._windows), self._batch_size):
            tiles = []
            for window in self._windows[start : start + self._batch_size].tolist():
                rgb = read_window(self._source, window, self._max_side)  # (h, w, 3) uint8
                tiles.append(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous())
            yield _Batch(start, tiles)

    def close(self) -> None:
        pass
