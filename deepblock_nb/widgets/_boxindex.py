"""BoxIndex: a uniform-grid spatial index over image-pixel boxes, for drawing and hit tests.

Box ``i`` is row ``i`` of the ``(N, 4)`` xyxy array it was built from (image
pixels); ``add`` appends the next id, ``remove`` retires one (ids are never
reused), ``update`` moves one. Built once with a vectorised bucket sort (compressed
cell lists); later changes go to small per-cell overflow lists, and every query
tests the candidates against the current coordinates, so a moved box's old cells
only cost a rejected candidate. Boxes that would span very many cells are kept in
a separate list checked on every query.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.errors import ArgumentError

__all__ = ["BoxIndex"]

Window = tuple[float, float, float, float]  # x1, y1, x2, y2 image pixels
MAX_CELLS_PER_BOX = 64  # boxes spanning more cells go to the always-checked list
MAX_GRID_SIDE = 1024
#: a window over at least 1/WHOLE_SCAN_FRACTION of the grid cells scans every id instead
WHOLE_SCAN_FRACTION = 4


def _as_boxes(xyxy: npt.ArrayLike) -> np.ndarray:
    b = np.asarray(xyxy, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim != 2 or b.shape[1] != 4:
        raise ArgumentError(f"expected boxes (N, 4) xyxy, got shape {b.shape}")
    return b


class BoxIndex:
    """Uniform-grid index of ``(N, 4)`` xyxy boxes (image pixels).

    Args:
        xyxy: the boxes; ids are row positions.
        extent_wh: the area the grid covers (usually the image size); boxes
            outside it still work (they land in the border cells). Defaults to the
            boxes' bounds.
        cell: grid cell side in image pixels; defaults to about one box per cell
            and no smaller than twice the median box side.

    Typical use in a widget: build once per image from the shown boxes, keep it in
    step with ``add``/``update``/``remove`` as the user edits, and pass it to
    ``ImageView.stroke_boxes(xyxy, colors, index=idx)`` (``xyxy`` rows are the ids)
    and use ``hit(point)`` instead of ``_viewport.hit_test``.
    """

    def __init__(
        self, xyxy: npt.ArrayLike, extent_wh: tuple[float, float] | None = None, cell: float | None = None
    ) -> None:
        b = _as_boxes(xyxy)
        n = len(b)
        if extent_wh is None:
            extent_wh = (float(b[:, 2].max()), float(b[:, 3].max())) if n else (1.0, 1.0)
        ew, eh = max(float(extent_wh[0]), 1.0), max(float(extent_wh[1]), 1.0)
        if cell is None:
            side = float(np.median(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))) if n else 1.0
            cell = max(2.0 * side, math.sqrt(ew * eh / max(n, 1)), 1.0)
        self.cell = max(float(cell), ew / MAX_GRID_SIDE, eh / MAX_GRID_SIDE, 1e-9)
        self.grid_wh = (max(1, math.ceil(ew / self.cell)), max(1, math.ceil(eh / self.cell)))
        self._xyxy = np.zeros((max(n, 16), 4))
        self._xyxy[:n] = b
        self._alive = np.zeros(max(n, 16), dtype=bool)
        self._alive[:n] = True
        self._n = n
        self._extra: dict[int, list[int]] = {}  # cell -> ids added or moved since the build
        self._big: set[int] = set()
        self._n_extra = 0  # boxes inserted into _extra since the build
        self._build(np.arange(n))

    # -- building ------------------------------------------------------------------
    def _cell_ranges(self, b: np.ndarray) -> np.ndarray:
        """Clamped inclusive cell ranges ``(N, 4)`` as ``cx1, cy1, cx2, cy2`` (int64)."""
        gw, gh = self.grid_wh
        c = np.floor(b / self.cell)  # [N,4]
        c = np.nan_to_num(c, nan=0.0, posinf=1e9, neginf=-1e9)
        hi = np.array([gw - 1, gh - 1, gw - 1, gh - 1])
        return np.clip(c, 0, hi).astype(np.int64)

    def _build(self, ids: np.ndarray) -> None:
        gw, gh = self.grid_wh
        r = self._cell_ranges(self._xyxy[ids])  # [N,4]
        nx, ny = r[:, 2] - r[:, 0] + 1, r[:, 3] - r[:, 1] + 1  # [N]
        big = nx * ny > MAX_CELLS_PER_BOX
        self._big = set(ids[big].tolist())
        ids, r, nx, ny = ids[~big], r[~big], nx[~big], ny[~big]
        counts = nx * ny  # [M]
        owner = np.repeat(np.arange(len(ids)), counts)  # [E] which box each entry belongs to
        first = np.cumsum(counts) - counts  # [M] where each box's entries start
        k = np.arange(len(owner)) - np.repeat(first, counts)  # [E] entry number within its box
        cx = r[owner, 0] + k % nx[owner]
        cy = r[owner, 1] + k // nx[owner]
        cells = cy * gw + cx  # [E]
        order = np.argsort(cells, kind="stable")
        self._entries = ids[owner[order]]  # [E] box ids sorted by cell
        self._starts = np.searchsorted(cells[order], np.arange(gw * gh + 1))  # [C+1]
        self._extra = {}

    # -- changes -----------------------------------------------------------------------
    def __len__(self) -> int:
        """How many boxes are live."""
        return int(self._alive[: self._n].sum())

    @property
    def xyxy(self) -> np.ndarray:
        """Current coordinates ``(n_ids, 4)`` of every id ever added (removed ones included); a copy."""
        return self._xyxy[: self._n].copy()

    @property
    def coords(self) -> np.ndarray:
        """Like :attr:`xyxy` but a read-only view, no copy (for drawing: rows are ids).

        Valid until the next ``add`` (which may grow the storage)."""
        v = self._xyxy[: self._n]
        v.flags.writeable = False
        return v

    @property
    def n_ids(self) -> int:
        """How many ids were ever given (live and removed)."""
        return self._n

    @property
    def alive(self) -> np.ndarray:
        """``(n_ids,)`` bool: which ids are live; a copy."""
        return self._alive[: self._n].copy()

    def add(self, box: npt.ArrayLike) -> int:
        """Add one box ``(4,)`` xyxy; returns its id (the next row)."""
        if self._n == len(self._xyxy):
            self._xyxy = np.concatenate([self._xyxy, np.zeros_like(self._xyxy)])
            self._alive = np.concatenate([self._alive, np.zeros_like(self._alive)])
        i = self._n
        self._n += 1
        self._xyxy[i] = _as_boxes(np.reshape(box, (1, 4)))[0]
        self._alive[i] = True
        self._insert(i)
        return i

    def update(self, i: int, box: npt.ArrayLike) -> None:
        """Move live box ``i`` to ``box`` ``(4,)`` xyxy."""
        self._check(i)
        self._xyxy[i] = _as_boxes(np.reshape(box, (1, 4)))[0]
        self._insert(i)

    def remove(self, i: int) -> None:
        """Retire live box ``i`` (its id is not reused)."""
        self._check(i)
        self._alive[i] = False
        self._big.discard(i)

    def _check(self, i: int) -> None:
        if not (0 <= i < self._n and self._alive[i]):
            raise ArgumentError(f"box {i} is not in the index (ids 0..{self._n - 1}, removed ones excluded)")

    def _insert(self, i: int) -> None:
        cx1, cy1, cx2, cy2 = self._cell_ranges(self._xyxy[i : i + 1])[0].tolist()
        if (cx2 - cx1 + 1) * (cy2 - cy1 + 1) > MAX_CELLS_PER_BOX:
            self._big.add(i)
            return
        gw = self.grid_wh[0]
        for cy in range(cy1, cy2 + 1):
            for cx in range(cx1, cx2 + 1):
                self._extra.setdefault(cy * gw + cx, []).append(i)
        self._n_extra += 1
        if self._n_extra > max(1024, self._n // 4):
            self.rebuild()

    def rebuild(self) -> None:
        """Fold the changes since the build into the compressed lists (done automatically)."""
        self._n_extra = 0
        self._build(np.flatnonzero(self._alive[: self._n]))

    # -- queries -------------------------------------------------------------------
    def _candidates(self, window: Window) -> np.ndarray | None:
        """Ids whose cells meet the window, or None when it covers most of the grid (then
        a scan of every id costs less than gathering and de-duplicating cell entries)."""
        gw, gh = self.grid_wh
        cx1, cy1, cx2, cy2 = self._cell_ranges(np.asarray([window], dtype=np.float64))[0].tolist()
        n_cells = (cx2 - cx1 + 1) * (cy2 - cy1 + 1)
        if n_cells * WHOLE_SCAN_FRACTION >= gw * gh:
            return None
        parts = [
            self._entries[self._starts[cy * gw + cx1] : self._starts[cy * gw + cx2 + 1]]
            for cy in range(cy1, cy2 + 1)
        ]
        if self._extra:
            if len(self._extra) < n_cells:
                cells: Any = (c for c in self._extra if cx1 <= c % gw <= cx2 and cy1 <= c // gw <= cy2)
            else:
                cells = (cy * gw + cx for cy in range(cy1, cy2 + 1) for cx in range(cx1, cx2 + 1))
            for c in cells:
                more = self._extra.get(c)
                if more:
                    parts.append(np.asarray(more, dtype=np.int64))
        if self._big:
            parts.append(np.fromiter(self._big, dtype=np.int64))
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def query(self, window: Window) -> np.ndarray:
        """Sorted ids ``(K,)`` of live boxes intersecting ``window`` (x1, y1, x2, y2; edges count)."""
        x1, y1, x2, y2 = (float(v) for v in window)
        if x2 < x1 or y2 < y1:
            return np.zeros(0, dtype=np.int64)
        c = self._candidates((x1, y1, x2, y2))
        if c is None:  # most of the grid: one vectorised pass over every id
            b, alive = self._xyxy[: self._n], self._alive[: self._n]
            return np.flatnonzero(
                alive & (b[:, 0] <= x2) & (b[:, 2] >= x1) & (b[:, 1] <= y2) & (b[:, 3] >= y1)
            )
        b = self._xyxy[c]  # [K,4]
        ok = self._alive[c] & (b[:, 0] <= x2) & (b[:, 2] >= x1) & (b[:, 1] <= y2) & (b[:, 3] >= y1)
        return c[ok]

    def hit(self, point_xy: tuple[float, float]) -> int:
        """Id of the smallest live box containing the point (edges count), or -1 (ties: lowest id)."""
        x, y = float(point_xy[0]), float(point_xy[1])
        c = self.query((x, y, x, y))
        if not len(c):
            return -1
        b = self._xyxy[c]
        return int(c[np.argmin((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))])

    def counts_per_cell(self, window: Window, cells_wh: tuple[int, int]) -> np.ndarray:
        """Live boxes per cell ``(rows, cols)`` int64 of ``window`` cut into ``cells_wh`` (cols, rows) cells.

        A box counts in the cell holding its centre; boxes centred outside the
        window are not counted.
        """
        cols, rows = int(cells_wh[0]), int(cells_wh[1])
        x1, y1, x2, y2 = (float(v) for v in window)
        if cols < 1 or rows < 1 or x2 <= x1 or y2 <= y1:
            return np.zeros((max(rows, 0), max(cols, 0)), dtype=np.int64)
        b = self._xyxy[: self._n][self._alive[: self._n]]
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2  # [N]
        inside = (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)
        col = ((cx[inside] - x1) * (cols / (x2 - x1))).astype(np.int64).clip(0, cols - 1)
        row = ((cy[inside] - y1) * (rows / (y2 - y1))).astype(np.int64).clip(0, rows - 1)
        return np.bincount(row * cols + col, minlength=rows * cols).reshape(rows, cols)
