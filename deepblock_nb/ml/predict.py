"""Tiled prediction over images of any size.

A reader thread reads the tile windows of an image through its bounded-memory
:class:`~deepblock_nb.io.images.ImageSource` and hands batches of ``uint8`` tiles
through a short queue to the caller's thread, which runs the model on them in
``torch.inference_mode`` (on the model's device), maps the boxes back to image
pixels and finally merges them across tiles (:mod:`deepblock_nb.ml.merge`).
Memory is bounded by the queue depth times the batch, never by the image.

Seams. Each tile is a *core* of the grid (the grid without overlap: cores
partition the image) read with a margin of context on every side, clamped to the
image (:func:`plan_tiles`); each box is kept only by the tile whose core holds its
centre (the rule in :mod:`deepblock_nb.ml.merge`). The margin
(:func:`context_margin`) is :data:`MARGIN_OF_BOX` times the model's ``box_size``
(the 95th percentile of the longer side of the labelled boxes, stored by the
trainer), so an object centred in a core is whole in its tile's window and is
found as it would be inside a tile; without a box size, :data:`MARGIN_OF_INPUT`
of the model's input size. It is at most half the smallest core side, and at
least the grid's own overlap. An automatic grid keeps each window (core and
margins) within the model's input size, and every window is read at least that
large where the image allows (:func:`at_least`): the model sees what it trained on. An object larger than twice the margin
may be cut by every window that sees it: the parts a detector reports are joined
across tiles (merge step 3); a detector that reports only whole objects finds it
only where one window holds it whole.

"More accurate" (``accurate=True``) keeps the same centre rule and adds: a wider
margin (:data:`ACCURATE_MARGIN_OF_BOX`: objects up to twice the labelled size
whole, more context at a core's edge); a second, mirrored (left-right) pass of
every tile, fused per object with the first (:func:`~deepblock_nb.ml.merge.fuse_passes`:
agreeing boxes are averaged, a box one pass missed is kept as it is, so scores keep
the plain mode's scale and a threshold means the same in both modes); and a
full-image pass at reduced scale, only when the model may know objects larger
than a tile (its ``box_size`` is unknown or at least the smallest core side), kept
only for such objects. Boxes are never merged by intersection over the smaller
box: the many weak boxes a detector gives at the score floor would chain
neighbouring objects near seams into one union box.

Boxes everywhere are ``xyxy`` float pixels of the full-resolution image, origin
top-left; windows and cores are ``x, y, w, h`` integer pixels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch

from deepblock_nb.core.detections import Detections
from deepblock_nb.core.tiling import tile_windows
from deepblock_nb.ml._tile_reader import InlineReader, Prefetcher, RegionReader, read_window
from deepblock_nb.ml.device import out_of_memory_as_error
from deepblock_nb.ml.merge import ACCURATE, FAST, OVERVIEW, MergeConfig, fuse_passes, grid_cores, merge_tiles

__all__ = [
    "ACCURATE_MARGIN_OF_BOX",
    "MARGIN_OF_BOX",
    "SCORE_FLOOR",
    "InferenceModel",
    "PredictionStopped",
    "TileBoxes",
    "TilePlan",
    "at_least",
    "auto_windows",
    "context_margin",
    "default_batch_size",
    "default_prefetch",
    "fuse_tiles",
    "merge_image",
    "overview_pass",
    "plan_tiles",
    "predict_image",
    "predict_tiles",
    "read_window",
    "run_tiles",
    "tile_ranges",
    "tile_side",
    "wants_overview",
    "widen_windows",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Lowest score kept; the threshold slider filters stored predictions above it.
SCORE_FLOOR = 0.05
#: Context margin of a tile, in labelled box sizes (``box_size``): an object up to
#: ``2 * 0.6`` box sizes centred in a core is whole in that tile's window.
MARGIN_OF_BOX = 0.6
#: The same in "More accurate" mode: objects up to twice the labelled size.
ACCURATE_MARGIN_OF_BOX = 1.0
#: Context margin as a fraction of the model's input size, when the box size is unknown.
MARGIN_OF_INPUT = 0.125
ACCURATE_MARGIN_OF_INPUT = 0.2
#: IoU at which a box of the mirrored pass is the same object as one of the first.
FLIP_IOU = 0.55
#: Windows longer than this many model input sides (and MIN_READ_SIDE) are read reduced.
READ_FACTOR = 4
MIN_READ_SIDE = 2048


class InferenceModel(Protocol):
    """What prediction needs of a loaded model (``ml.checkpoints.LoadedModel``).

    ``model`` follows torchvision's detection contract: a list of ``(3, H, W)``
    float tensors in [0, 1] in, a list of dicts with ``boxes`` (xyxy input pixels),
    ``labels`` (1..K) and ``scores`` out. Label ``k`` is category ``category_ids[k-1]``.
    An optional ``box_size`` attribute (float, image pixels: the 95th percentile of
    the longer side of the labelled boxes) sets the context margin
    (:func:`context_margin`).
    """

    @property
    def model(self) -> torch.nn.Module: ...
    @property
    def category_ids(self) -> Sequence[int]: ...
    @property
    def tile_size(self) -> int: ...
    @property
    def device(self) -> torch.device: ...


def default_batch_size(device: torch.device) -> int:
    """Tiles per model call: 8 on a GPU; 2 on a CPU, where larger batches are no
    faster (each operator already uses every core) but hold more activations."""
    return 8 if device.type in ("cuda", "mps") else 2


#: A multiple of every default batch size (a tile range starting on it starts a batch).
_DEFAULT_BATCH_LCM = math.lcm(*(default_batch_size(torch.device(d)) for d in ("cpu", "cuda", "mps")))


def default_prefetch(device: torch.device) -> int:
    """Batches read ahead by a reader thread: 2 when the model runs on a GPU.

    On a CPU the model already keeps every core busy, so a reader thread cannot
    overlap anything and only takes cores from it (measured on 2 cores: model
    calls 30-50 % slower); tiles are then read in the calling thread (0).
    """
    return 0 if device.type == "cpu" else 2


class PredictionStopped(Exception):
    """A stop was requested; the image being predicted has no result."""


def tile_side(loaded: InferenceModel) -> int:
    """The model's input side in image pixels: ``tile_size``, or ``tile_size /
    input_scale`` for a model that magnifies its inputs by an ``input_scale``
    attribute (model pixels per image pixel)."""
    scale = getattr(loaded, "input_scale", None)
    if scale is not None and math.isfinite(float(scale)) and float(scale) > 0:
        return max(1, round(int(loaded.tile_size) / float(scale)))
    return int(loaded.tile_size)


def context_margin(loaded: InferenceModel, accurate: bool = False, core_side: int | None = None) -> int:
    """Pixels of context read on every side of a tile's core (image pixels).

    :data:`MARGIN_OF_BOX` (:data:`ACCURATE_MARGIN_OF_BOX` when ``accurate``) times
    the model's ``box_size`` when it has one, so that an object centred in a core
    is whole in its window; otherwise :data:`MARGIN_OF_INPUT`
    (:data:`ACCURATE_MARGIN_OF_INPUT`) of its input side (:func:`tile_side`). At most
    half of ``core_side`` (the smallest core of the grid), so that a window
    reaches no further than its neighbours' cores.
    """
    box = getattr(loaded, "box_size", None)
    if box is not None and math.isfinite(float(box)) and float(box) > 0:
        margin = math.ceil((ACCURATE_MARGIN_OF_BOX if accurate else MARGIN_OF_BOX) * float(box))
    else:
        fraction = ACCURATE_MARGIN_OF_INPUT if accurate else MARGIN_OF_INPUT
        margin = math.ceil(fraction * tile_side(loaded))
    if core_side is not None:
        margin = min(margin, max(0, int(core_side)) // 2)
    return max(0, margin)


def _auto_count(length: int, tile_size: int, margin: int) -> int:
    """Fewest tiles along a side of ``length`` whose windows (core and margins) fit ``tile_size``."""
    if length <= tile_size:
        return 1
    if math.ceil(length / 2) + margin <= tile_size:  # two tiles: one inner margin each
        return 2
    n = max(3, math.ceil(length / max(1, tile_size - 2 * margin)))
    while n < length and math.ceil(length / n) + 2 * margin > tile_size:
        n += 1
    return min(n, length)


def auto_windows(image_wh: tuple[int, int], tile_size: int, margin: int = 0) -> IntArray:
    """``(T, 4)`` cores of an automatic grid: the fewest tiles whose windows (each
    core grown by ``margin`` pixels, clamped to the image) are at most
    ``tile_size`` (the model's input size) a side."""
    w, h = (int(v) for v in image_wh)
    tile = max(1, int(tile_size))
    margin = max(0, min(int(margin), (tile - 1) // 2))
    return tile_windows((w, h), _auto_count(h, tile, margin), _auto_count(w, tile, margin))


def widen_windows(windows: npt.ArrayLike, image_wh: tuple[int, int], margin: int) -> IntArray:
    """Each window grown by ``margin`` pixels on every side, clamped to the image.

    Returns:
        ``(T, 4)`` int64 windows ``x, y, w, h``.
    """
    w = np.asarray(windows, np.int64).reshape(-1, 4)
    lo = np.maximum(w[:, :2] - int(margin), 0)
    hi = np.minimum(w[:, :2] + w[:, 2:] + int(margin), np.asarray(image_wh, np.int64))
    return np.concatenate([lo, hi - lo], axis=1)


def at_least(windows: npt.ArrayLike, image_wh: tuple[int, int], side: int) -> IntArray:
    """Each window grown about its centre to at least ``side`` pixels a side (never
    past the image: shifted inside it, and no wider than it).

    A detector sees its training tiles at one size; a smaller window, padded up to
    its input, is not what it learnt on: boxes came out shifted by 5 % of their size
    (likely SSDlite's squeeze-excitation blocks, which pool the whole input, padding included).
    Real context from the image is what the model expects instead.

    Returns:
        ``(T, 4)`` int64 windows ``x, y, w, h``.
    """
    w = np.asarray(windows, np.int64).reshape(-1, 4).copy()
    size = np.asarray(image_wh, np.int64)
    want = np.minimum(np.maximum(w[:, 2:], int(side)), size)  # [T,2]
    lo = w[:, :2] - (want - w[:, 2:]) // 2
    lo = np.clip(lo, 0, size - want)
    return np.concatenate([lo, want], axis=1)


@dataclass(frozen=True)
class TilePlan:
    """How an image is cut for prediction (:func:`plan_tiles`).

    Attributes:
        cores: ``(T, 4)`` ``x, y, w, h``, a partition of the image: a box is kept
            by the tile whose core holds its centre.
        windows: ``(T, 4)`` what the model reads of each tile: its core grown by
            ``margin`` on every side (and at least the grid's own window, and at
            least the model's input side: :func:`at_least`), clamped.
        margin: the context margin in pixels.
    """

    cores: IntArray
    windows: IntArray
    margin: int

    def __len__(self) -> int:
        return len(self.cores)


def plan_tiles(
    image_wh: tuple[int, int],
    loaded: InferenceModel,
    windows: npt.ArrayLike | None = None,
    *,
    accurate: bool = False,
) -> TilePlan:
    """Cores, context windows and margin of one image: the one home of that rule.

    Args:
        image_wh: image ``(width, height)``.
        loaded: the model (``tile_size``, optional ``box_size``).
        windows: ``(T, 4)`` the image's grid (``tile_windows``, with or without
            overlap): its cores are the grid without overlap (overlaps cut at their
            midlines), and each window is read at least as wide as given. None: an
            automatic grid whose windows are at most :func:`tile_side` a side.
        accurate: the margin of "More accurate" mode.
    """
    image_wh = (int(image_wh[0]), int(image_wh[1]))
    if windows is None:
        tile = tile_side(loaded)
        cores = auto_windows(image_wh, tile, context_margin(loaded, accurate, tile // 2))
        given = cores
    else:
        given = np.asarray(windows, np.int64).reshape(-1, 4)
        cores = grid_cores(given)
    margin = context_margin(loaded, accurate, int(cores[:, 2:].min()) if len(cores) else 0)
    grown = widen_windows(cores, image_wh, margin)
    lo = np.minimum(grown[:, :2], given[:, :2])
    hi = np.maximum(grown[:, :2] + grown[:, 2:], given[:, :2] + given[:, 2:])
    windows = at_least(np.concatenate([lo, hi - lo], axis=1), image_wh, tile_side(loaded))
    return TilePlan(cores, windows.astype(np.int64), margin)


def _to_detections(
    outputs: Sequence[dict[str, torch.Tensor]],
    offsets: FloatArray,
    scales: FloatArray,
    sizes: FloatArray,
    category_ids: IntArray,
    score_floor: float,
) -> tuple[list[Detections], list[int]]:
    """Model outputs -> per-input Detections in image pixels, with the input index of each."""
    parts, index = [], []
    for k, out in enumerate(outputs):
        scores = out["scores"].detach().float().cpu().numpy().astype(np.float64)
        keep = scores >= score_floor
        if not keep.any():
            continue
        boxes = out["boxes"].detach().float().cpu().numpy().astype(np.float64)[keep]
        labels = out["labels"].detach().cpu().numpy().astype(np.int64)[keep]
        valid = (labels >= 1) & (labels <= len(category_ids))
        boxes = np.clip(boxes[valid], 0, np.tile(sizes[k], 2))  # input pixels, inside the input
        boxes = boxes * np.tile(scales[k], 2) + np.tile(offsets[k], 2)
        wh_ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        det = Detections(boxes[wh_ok], category_ids[labels[valid][wh_ok] - 1], scores[keep][valid][wh_ok])
        if len(det):
            parts.append(det)
            index.append(k)
    return parts, index


@dataclass(frozen=True)
class TileBoxes:
    """The raw boxes of a range of an image's tiles, before fusion and merge.

    Small enough to send between processes: a cluster worker returns one per task
    (:mod:`deepblock_nb.ml.cluster`), and :meth:`join` puts ranges back together.

    Attributes:
        passes: one ``(boxes, tile index)`` per pass (the plain pass, then the
            mirrored one of "More accurate"): boxes in image pixels with confidence
            and category ids, and ``(N,)`` int64 the index of each box's window in
            the image's :class:`TilePlan`.
    """

    passes: tuple[tuple[Detections, IntArray], ...]

    def __sizeof__(self) -> int:
        """Bytes of the arrays (what Dask's memory accounting and task stream report)."""
        arrays = [a for det, tiles in self.passes for a in (det.xyxy, det.class_id, det.confidence, tiles)]
        return sum(a.nbytes for a in arrays if a is not None)

    @classmethod
    def join(cls, parts: Sequence[TileBoxes]) -> TileBoxes:
        """Consecutive ranges (in tile order) as one: the boxes a single call over all their tiles gives."""
        if not parts:
            raise ValueError("no tile ranges to join")
        n = len(parts[0].passes)
        joined = []
        for k in range(n):
            found = [p.passes[k] for p in parts if len(p.passes[k][0])]
            joined.append(_joined(found))
        return cls(tuple(joined))


def _joined(found: Sequence[tuple[Detections, IntArray]]) -> tuple[Detections, IntArray]:
    if not found:
        return Detections.empty(True), np.zeros(0, np.int64)
    return Detections.merge([d for d, _ in found]), np.concatenate([t for _, t in found])


def tile_ranges(n_tiles: int, per_range: int, batch_size: int | None = None) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges covering ``n_tiles`` tiles, about ``per_range`` each.

    Each range starts on a batch boundary (a multiple of ``batch_size``; None: of
    every :func:`default_batch_size`), so that predicting a range forms the very
    batches a call over the whole image forms: detectors that pad a batch to its
    largest input give the same boxes either way.
    """
    step = int(batch_size) if batch_size is not None else _DEFAULT_BATCH_LCM
    length = max(step, math.ceil(max(1, int(per_range)) / step) * step)
    return [(a, min(int(n_tiles), a + length)) for a in range(0, int(n_tiles), length)]


def predict_tiles(
    loaded: InferenceModel,
    source: RegionReader,
    windows: npt.ArrayLike,
    *,
    start: int = 0,
    batch_size: int | None = None,
    score_floor: float = SCORE_FLOOR,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    prefetch: int | None = None,
    flip: bool = False,
) -> TileBoxes:
    """The raw boxes of tile windows, in image pixels, in batches of consecutive windows.

    Args:
        windows: ``(T, 4)`` the windows to read (the whole plan, or a range of it).
        start: the index of the first of them in the image's plan: the tile index
            of a box is ``start`` plus its window's position in ``windows``.
        flip: each batch is also run mirrored left-right (a second pass).
        on_progress: called with ``(tiles done, tiles in windows)`` after each batch.

    Raises:
        PredictionStopped: ``should_stop()`` turned true (checked before each batch).
    """
    win = np.asarray(windows, np.int64).reshape(-1, 4)
    model, device = loaded.model, torch.device(loaded.device)
    category_ids = np.asarray(loaded.category_ids, np.int64)
    pin = device.type == "cuda"
    passes: list[tuple[list[Detections], list[IntArray]]] = [([], []) for _ in range(2 if flip else 1)]
    max_side = max(MIN_READ_SIDE, READ_FACTOR * int(loaded.tile_size))
    bs = default_batch_size(device) if batch_size is None else max(1, int(batch_size))
    depth = default_prefetch(device) if prefetch is None else max(0, int(prefetch))
    reader: Prefetcher | InlineReader
    if depth > 0:
        reader = Prefetcher(source, win, bs, depth, pin, max_side)
    else:
        reader = InlineReader(source, win, bs, max_side)
    try:
        with torch.inference_mode():
            for batch in reader:
                if should_stop is not None and should_stop():
                    raise PredictionStopped(f"stopped after {batch.start} of {len(win)} tiles")
                inputs = [t.to(device, non_blocking=pin).float().div_(255.0) for t in batch.tiles]
                bw = win[batch.start : batch.start + len(inputs)].astype(np.float64)
                sizes = np.array([[t.shape[2], t.shape[1]] for t in inputs], np.float64)  # read w, h
                with out_of_memory_as_error(device, bs, "predicting"):
                    outputs = [model(inputs)]
                    if flip:
                        mirrored = model([t.flip(-1) for t in inputs])
                        outputs.append([_unflip(out, float(w)) for out, w in zip(mirrored, sizes[:, 0])])
                first = int(start) + batch.start
                for (parts, tile_of), out in zip(passes, outputs):
                    dets, index = _to_detections(
                        out, bw[:, :2], bw[:, 2:] / sizes, sizes, category_ids, score_floor
                    )
                    parts.extend(dets)
                    tile_of.extend(np.full(len(d), first + k, np.int64) for d, k in zip(dets, index))
                if on_progress is not None:
                    on_progress(batch.start + len(inputs), len(win))
    finally:
        reader.close()
    return TileBoxes(tuple(_joined(list(zip(p, t))) for p, t in passes))


def fuse_tiles(boxes: TileBoxes) -> tuple[Detections, IntArray]:
    """The boxes of every tile, one pass: the plain pass as it is, or the plain and the
    mirrored pass fused per object within each tile (:func:`~deepblock_nb.ml.merge.fuse_passes`).

    Returns:
        Boxes with confidence and category ids, and ``(N,)`` the tile of each.
    """
    if len(boxes.passes) == 1:
        return boxes.passes[0]
    (a, ta), (b, tb) = boxes.passes
    return fuse_passes(a, ta, b, tb, FLIP_IOU)


def run_tiles(
    loaded: InferenceModel,
    source: RegionReader,
    windows: npt.ArrayLike,
    *,
    batch_size: int | None = None,
    score_floor: float = SCORE_FLOOR,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    prefetch: int | None = None,
    flip: bool = False,
) -> tuple[Detections, IntArray]:
    """The raw (unmerged) boxes of every tile window, in image pixels.

    ``flip``: each batch is also run mirrored left-right, and the two passes are
    fused per object within each tile (:func:`~deepblock_nb.ml.merge.fuse_passes`).

    Returns:
        Boxes with confidence and category ids, and ``(N,)`` the index of the
        window each box came from.

    Raises:
        PredictionStopped: ``should_stop()`` turned true (checked before each batch).
    """
    boxes = predict_tiles(
        loaded,
        source,
        windows,
        batch_size=batch_size,
        score_floor=score_floor,
        should_stop=should_stop,
        on_progress=on_progress,
        prefetch=prefetch,
        flip=flip,
    )
    return fuse_tiles(boxes)


def _unflip(out: dict[str, torch.Tensor], width: float) -> dict[str, torch.Tensor]:
    """The outputs for a left-right mirrored input, in the input's own pixels."""
    boxes = out["boxes"].clone()
    boxes[:, 0], boxes[:, 2] = width - out["boxes"][:, 2], width - out["boxes"][:, 0]
    return {**out, "boxes": boxes}


def overview_pass(
    loaded: InferenceModel, source: RegionReader, score_floor: float = SCORE_FLOOR
) -> Detections:
    """Boxes from the whole image read at about the model's input size, in image pixels."""
    rgb = source.overview(tile_side(loaded))  # (h', w', 3) uint8
    h, w = rgb.shape[:2]
    t = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)  # a copy: overviews may be read-only
    device = torch.device(loaded.device)
    with torch.inference_mode():
        outputs = loaded.model([t.to(device).float().div_(255.0)])
    scale = np.array([[source.width / w, source.height / h]])
    dets, _ = _to_detections(
        outputs,
        np.zeros((1, 2)),
        scale,
        np.array([[w, h]], np.float64),
        np.asarray(loaded.category_ids, np.int64),
        score_floor,
    )
    return dets[0] if dets else Detections.empty(with_confidence=True)


def merge_image(
    loaded: InferenceModel,
    plan: TilePlan,
    tiles: tuple[Detections, IntArray],
    overview: Detections | None = None,
    *,
    accurate: bool = False,
    merge: MergeConfig | None = None,
) -> Detections:
    """One image's boxes from its tiles' boxes (:func:`fuse_tiles`) and, in "More
    accurate" mode, its full-image pass (:func:`overview_pass`): merged across seams.

    Returns:
        Boxes in image pixels with ``confidence`` and ``class_id`` = category ids,
        in descending score.
    """
    det, tile_index = tiles
    if overview is not None:
        det = Detections.merge([det, overview])
        tile_index = np.concatenate([tile_index, np.full(len(overview), OVERVIEW, np.int64)])
    config = merge if merge is not None else _with_model_nms(ACCURATE if accurate else FAST, loaded.model)
    return merge_tiles(det, tile_index, plan.windows, config, cores=plan.cores)


def predict_image(
    loaded: InferenceModel,
    source: RegionReader,
    windows: npt.ArrayLike | None = None,
    *,
    batch_size: int | None = None,
    accurate: bool = False,
    score_floor: float = SCORE_FLOOR,
    merge: MergeConfig | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    prefetch: int | None = None,
) -> Detections:
    """Predict one image tile by tile and merge the boxes across tiles.

    The steps, each its own function so that a cluster predict
    (:mod:`deepblock_nb.ml.cluster`) runs the same ones spread over processes:
    :func:`plan_tiles`, :func:`predict_tiles` (with :func:`overview_pass` in
    "More accurate" mode when :func:`wants_overview`), :func:`fuse_tiles`,
    :func:`merge_image`.

    Args:
        loaded: the model, its category ids, input size and device.
        source: the image (``read_region`` / ``overview``; bounded memory).
        windows: ``(T, 4)`` tile windows ``x, y, w, h`` (the image's grid, with or
            without overlap); None for an automatic grid. Either way the tiles are
            read with a context margin and each box is kept by the tile whose core
            holds its centre (:func:`plan_tiles`, the module docstring).
        batch_size: tiles per model call; None: :func:`default_batch_size`.
        accurate: "More accurate": a wider margin, a mirrored second pass of every
            tile fused with the first, and a full-image pass at reduced scale for
            objects larger than a tile (the module docstring).
        score_floor: boxes scoring below are dropped.
        merge: merge thresholds, overriding the mode's default.
        should_stop: polled before each batch; true raises :class:`PredictionStopped`.
        on_progress: called with ``(tiles done, tiles in all)`` after each batch.
        prefetch: batches read ahead by the reader thread; 0 reads in the calling
            thread; None: :func:`default_prefetch`.

    Returns:
        Boxes in image pixels with ``confidence`` and ``class_id`` = category ids,
        in descending score.
    """
    image_wh = (int(source.width), int(source.height))
    plan = plan_tiles(image_wh, loaded, windows, accurate=accurate)
    boxes = predict_tiles(
        loaded,
        source,
        plan.windows,
        batch_size=batch_size,
        score_floor=score_floor,
        should_stop=should_stop,
        on_progress=on_progress,
        prefetch=prefetch,
        flip=accurate,
    )
    over = None
    if accurate and wants_overview(loaded, plan):
        if should_stop is not None and should_stop():
            raise PredictionStopped("stopped before the full-image pass")
        over = overview_pass(loaded, source, score_floor)
    return merge_image(loaded, plan, fuse_tiles(boxes), over, accurate=accurate, merge=merge)


def model_nms_threshold(model: torch.nn.Module) -> float | None:
    """The IoU above which the detector itself suppresses a box of its class (its
    NMS), where it states one: torchvision's SSD, RetinaNet, FCOS, Faster R-CNN."""
    for owner in (model, getattr(model, "roi_heads", None)):
        value = getattr(owner, "nms_thresh", None)
        if isinstance(value, (int, float)) and 0.0 < float(value) < 1.0:
            return float(value)
    return None


def _with_model_nms(config: MergeConfig, model: torch.nn.Module) -> MergeConfig:
    """Boxes of different tiles compete as the model's own boxes do in one tile: the
    NMS between tiles is no laxer than the model's NMS (two boxes it would not keep
    side by side in one tile are not kept side by side across a seam either)."""
    own = model_nms_threshold(model)
    if own is None or own >= config.iou_threshold:
        return config
    return dataclasses.replace(config, iou_threshold=own)


def wants_overview(loaded: InferenceModel, plan: TilePlan) -> bool:
    """Whether the full-image pass can add anything: only objects larger than a
    tile come from it, and a model that knows its boxes are smaller would only
    add false ones there."""
    if len(plan) < 2:
        return False
    box = getattr(loaded, "box_size", None)
    if box is None or not math.isfinite(float(box)):
        return True
    return float(box) >= int(plan.cores[:, 2:].min())
