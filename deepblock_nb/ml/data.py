"""Datasets over tiles: grid windows of large images, boxes clipped to each tile.

The dataset takes plain :class:`TileItem` records (no project), reads pixels
through the bounded-memory readers of :mod:`deepblock_nb.io.images` and keeps a
few sources open per worker thread (an LRU), so a tile never reopens its image.
Each item carries its image's display setting (bands, intensity window), which
the reader applies exactly as the viewer and prediction do.
Each sample is one tile at the image's own resolution (the model magnifies it
by its fixed ``input_scale``), or resized so its longer side is ``tile_size``
pixels when a size is given.

Frames: ``TileItem.xyxy`` are image pixels; targets are pixels of the tile as
the sample holds it (origin at the tile's top-left corner).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from deepblock_nb.errors import DeepBlockError, ImageReadError
from deepblock_nb.io.display import Display

__all__ = [
    "Augment",
    "TileDataset",
    "TileItem",
    "collate",
    "epoch_indices",
    "holdout_split",
    "label_lookup",
]

PAD_VALUE = 114  # grey, for parts of a jittered window that fall outside the image


@dataclass(frozen=True, eq=False)
class TileItem:
    """One tile of one image.

    Attributes:
        image_path: the image file.
        window: ``(x, y, w, h)`` integer pixels of the full-resolution image.
        xyxy: ``(N, 4)`` float boxes of the image (image pixels); may hold boxes of
            the whole image, the dataset clips them to the window it reads.
        category_ids: ``(N,)`` int category ids of those boxes.
        image_size: ``(width, height)`` of the image, to clamp jittered windows.
        display: the image's effective display setting (``Project.display``);
            None: the data type's range.
    """

    image_path: Path
    window: tuple[int, int, int, int]
    xyxy: npt.NDArray[np.float64]
    category_ids: npt.NDArray[np.int64]
    image_size: tuple[int, int]
    display: Display | None = None


@dataclass(frozen=True)
class Augment:
    """Detection augmentation; every change to pixels is applied to the boxes too.

    Attributes:
        hflip, vflip: probabilities of a horizontal / vertical flip (overhead and
            microscope images have no "up", so vertical flips are on by default).
        scale: range of zoom factors; above 1 reads a smaller window (objects grow),
            below 1 a larger one around the tile (real context, grey past the image).
        shift: largest shift of the read window, as a fraction of the tile side.
        color: strength of brightness / contrast / saturation jitter (0 turns it off).
    """

    hflip: float = 0.5
    vflip: float = 0.5
    scale: tuple[float, float] = (0.75, 1.33)
    shift: float = 0.1
    color: float = 0.25


def label_lookup(category_ids: Sequence[int]) -> npt.NDArray[np.int64]:
    """Array mapping a category id to its model label ``i + 1`` (0: not trained on)."""
    ids = np.asarray(list(category_ids), dtype=np.int64)
    lut = np.zeros(int(ids.max(initial=0)) + 1, dtype=np.int64)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut


def _item_key(item: TileItem) -> str:
    return hashlib.sha1(f"{item.image_path.name}|{item.window}".encode()).hexdigest()


def holdout_split(
    items: Sequence[TileItem], fraction: float = 0.15, seed: int = 0, min_visible: float = 0.5
) -> tuple[list[int], list[int]]:
    """A fixed held-out part of the training tiles, to score the model while it trains.

    Whole images are held out (their tiles never train), chosen among the images
    whose tiles hold boxes (``min_visible`` as in :class:`TileDataset`) by a generator seeded with ``seed`` over the sorted image names: the
    same images for the same data, run after run. With fewer than 4 images with
    boxes (one large image cut into tiles, say), tiles are held out instead, by a
    fixed hash of image name and window.

    Returns:
        ``(train, held_out)`` sorted index lists; held-out is empty when there are
        fewer than 4 tiles (all of them are needed to train) or ``fraction <= 0``.
    """
    n = len(items)
    if n < 4 or fraction <= 0:
        return list(range(n)), []
    from deepblock_nb.core.tiling import clip_boxes_to_window

    labelled = sorted(
        {it.image_path.name for it in items if len(clip_boxes_to_window(it.xyxy, it.window, min_visible)[1])}
    )
    if len(labelled) >= 4:
        k = min(len(labelled) - 1, max(1, round(fraction * len(labelled))))
        pick = np.random.default_rng(seed).permutation(len(labelled))[:k]
        names = {labelled[i] for i in pick}
        held = [i for i, it in enumerate(items) if it.image_path.name in names]
    else:
        order = sorted(range(n), key=lambda i: _item_key(items[i]))
        held = sorted(order[: min(n - 1, max(1, round(fraction * n)))])
    chosen = set(held)
    return [i for i in range(n) if i not in chosen], held


def epoch_indices(
    has_boxes: npt.NDArray[np.bool_], empty_rate: float, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Shuffled sample of one epoch: every tile with boxes, plus tiles without any
    at ``empty_rate`` empty tiles per tile with boxes (at most all of them)."""
    pos = np.flatnonzero(has_boxes)
    neg = np.flatnonzero(~has_boxes)
    k = len(neg) if len(pos) == 0 else min(len(neg), round(empty_rate * len(pos)))
    chosen = np.concatenate([pos, rng.choice(neg, size=k, replace=False) if k else neg[:0]])
    return rng.permutation(chosen).astype(np.int64)


class _OpenSources:
    """Per-thread LRU of open image sources (closed when evicted or on close())."""

    def __init__(self, max_open: int, cache_dir: Path | None) -> None:
        self.max_open = max_open
        self.cache_dir = cache_dir
        self._local = threading.local()
        self._all: list[OrderedDict[tuple[Path, Display | None], Any]] = []
        self._lock = threading.Lock()

    def get(self, path: Path, display: Display | None = None) -> Any:
        from deepblock_nb.io.images import open_image

        key = (path, display)  # one source per setting: it converts as it decodes
        lru: OrderedDict[tuple[Path, Display | None], Any] | None = getattr(self._local, "lru", None)
        if lru is None:
            lru = OrderedDict()
            self._local.lru = lru
            with self._lock:
                self._all.append(lru)
        src = lru.get(key)
        if src is not None:
            lru.move_to_end(key)
            return src
        src = (
            open_image(path, self.cache_dir)
            if display is None
            else open_image(path, self.cache_dir, display=display)
        )
        lru[key] = src
        while len(lru) > self.max_open:
            _, old = lru.popitem(last=False)
            old.close()
        return src

    def close(self) -> None:
        with self._lock:
            for lru in self._all:
                while lru:
                    lru.popitem()[1].close()
            self._all.clear()
        self._local = threading.local()


class TileDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Map-style dataset of tiles -> ``(image, target)`` in torchvision's format.

    ``image`` is a ``(3, H, W)`` float tensor in [0, 1]: the tile's own pixels
    (``H, W`` of its window), or ``max(H, W) == tile_size`` when a size is given;
    ``target`` holds ``boxes`` ``(M, 4)`` float32 xyxy pixels of that image and
    ``labels`` ``(M,)`` int64 (``i + 1`` for ``category_ids[i]``).

    Args:
        items: the tiles.
        category_ids: the categories trained on, in label order.
        tile_size: longer side of each sample, pixels; None keeps the tile's own
            size (an augmentation zoom is resized back to it).
        augment: None for evaluation (the tile exactly, no randomness).
        min_visible: a box counts in a tile when this fraction of it is inside.
        cache_dir: where readers keep derived caches (the project's cache/).
        max_open: image sources kept open per worker thread.
        seed: base of the per-sample random streams.
    """

    def __init__(
        self,
        items: Sequence[TileItem],
        category_ids: Sequence[int],
        tile_size: int | None = None,
        augment: Augment | None = None,
        *,
        min_visible: float = 0.5,
        cache_dir: Path | None = None,
        max_open: int = 8,
        seed: int = 0,
    ) -> None:
        self.items = list(items)
        self.category_ids = list(category_ids)
        self.tile_size = None if tile_size is None else int(tile_size)
        self.augment = augment
        self.min_visible = min_visible
        self.seed = seed
        self.epoch = 0
        self._lut = label_lookup(self.category_ids)
        self._sources = _OpenSources(max_open, cache_dir)

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict[str, Any]:  # process workers reopen their own sources
        state = self.__dict__.copy()
        state["_sources"] = (self._sources.max_open, self._sources.cache_dir)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        max_open, cache_dir = state.pop("_sources")
        self.__dict__.update(state)
        self._sources = _OpenSources(max_open, cache_dir)

    def close(self) -> None:
        """Close every open image source."""
        self._sources.close()

    def has_boxes(self) -> npt.NDArray[np.bool_]:
        """``(len,)`` whether each tile holds a box of a trained category (unaugmented)."""
        out = np.zeros(len(self.items), dtype=bool)
        for i, it in enumerate(self.items):
            if len(it.xyxy):
                _, idx = self._clip(it, it.window)
                out[i] = bool(len(idx))
        return out

    def target_boxes(self, index: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Unaugmented boxes of tile ``index`` in the resized tile frame, and their category ids."""
        it = self.items[index]
        local, idx = self._clip(it, it.window)
        scale = self._scale(it.window[2], it.window[3])
        return local * scale, it.category_ids[idx]

    def _scale(self, w: float, h: float) -> float:
        return 1.0 if self.tile_size is None else self.tile_size / max(w, h)

    def _clip(
        self, it: TileItem, window: tuple[int, int, int, int]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        from deepblock_nb.core.tiling import clip_boxes_to_window

        local, idx = clip_boxes_to_window(it.xyxy, window, self.min_visible)
        cids = it.category_ids[idx]
        known = (cids < len(self._lut)) & (self._lut[np.clip(cids, 0, len(self._lut) - 1)] > 0)
        return local[known], idx[known]

    def _read(self, it: TileItem, window: tuple[int, int, int, int]) -> npt.NDArray[np.uint8]:
        """Pixels of ``window`` (may reach past the image: padded grey)."""
        x, y, w, h = window
        iw, ih = it.image_size
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, iw), min(y + h, ih)
        out = np.full((h, w, 3), PAD_VALUE, dtype=np.uint8)
        if x1 <= x0 or y1 <= y0:
            return out
        try:
            src = self._sources.get(it.image_path, it.display)
            region = np.asarray(src.read_region(x0, y0, x1 - x0, y1 - y0))
        except DeepBlockError:
            raise
        except Exception as exc:
            raise ImageReadError(
                f"{it.image_path}: cannot read tile {tuple(window)}: {exc}", it.image_path
            ) from exc
        if region.shape[:2] != (y1 - y0, x1 - x0):
            raise ImageReadError(
                f"{it.image_path}: reading tile {tuple(window)} gave {region.shape[1]}x{region.shape[0]} "
                "pixels; the file may be truncated",
                it.image_path,
            )
        out[y0 - y : y1 - y, x0 - x : x1 - x] = region[..., :3]
        return out

    def _jitter_window(self, it: TileItem, rng: np.random.Generator) -> tuple[int, int, int, int]:
        assert self.augment is not None
        x, y, w, h = it.window
        lo, hi = self.augment.scale
        zoom = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        nw, nh = max(2, round(w / zoom)), max(2, round(h / zoom))
        s = self.augment.shift
        cx = x + w / 2 + rng.uniform(-s, s) * w
        cy = y + h / 2 + rng.uniform(-s, s) * h
        return round(cx - nw / 2), round(cy - nh / 2), nw, nh

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        it = self.items[index]
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.augment else None
        window = it.window if rng is None else self._jitter_window(it, rng)
        pixels = self._read(it, window)
        local, idx = self._clip(it, window)
        w, h = window[2], window[3]
        if self.tile_size is None:  # a zoomed window goes back to the tile's own size
            out_w, out_h = it.window[2], it.window[3]
        else:
            scale = self._scale(w, h)
            out_w, out_h = max(1, round(w * scale)), max(1, round(h * scale))
        if (out_w, out_h) != (w, h):
            pixels = np.array(Image.fromarray(pixels).resize((out_w, out_h), Image.Resampling.BILINEAR))
        boxes = local * np.array([out_w / w, out_h / h, out_w / w, out_h / h])  # [M,4]
        labels = self._lut[it.category_ids[idx]]
        if rng is not None:
            assert self.augment is not None
            pixels, boxes = _flip(pixels, boxes, rng, self.augment)
            if self.augment.color > 0:
                pixels = _color_jitter(pixels, rng, self.augment.color)
        wh = boxes[:, 2:] - boxes[:, :2]
        big = (wh >= 1.0).all(axis=1)  # drop slivers left by resizing
        image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255.0)
        target = {
            "boxes": torch.from_numpy(boxes[big].astype(np.float32)).reshape(-1, 4),
            "labels": torch.from_numpy(labels[big].astype(np.int64)),
        }
        return image, target


def _flip(
    pixels: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float64], rng: np.random.Generator, aug: Augment
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    h, w = pixels.shape[:2]
    if rng.random() < aug.hflip:
        pixels = pixels[:, ::-1]
        boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
    if rng.random() < aug.vflip:
        pixels = pixels[::-1]
        boxes = np.stack([boxes[:, 0], h - boxes[:, 3], boxes[:, 2], h - boxes[:, 1]], axis=1)
    return pixels, boxes.reshape(-1, 4)


def _color_jitter(
    pixels: npt.NDArray[np.uint8], rng: np.random.Generator, strength: float
) -> npt.NDArray[np.uint8]:
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    f = pixels.astype(np.float32)
    grey = f.mean(axis=2, keepdims=True)  # [H,W,1]
    f = grey + (f - grey) * s  # saturation
    f = (f - f.mean()) * c + f.mean()  # contrast
    f *= b  # brightness
    return np.clip(f, 0, 255).astype(np.uint8)


def collate(
    batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Lists of images and targets (tiles may differ in size; torchvision batches them)."""
    return [b[0] for b in batch], [b[1] for b in batch]
