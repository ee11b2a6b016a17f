"""Prediction on a Dask cluster: this process's side of ``project.predict(..., client=...)``.

Each image is planned here exactly as a local predict plans it
(``ml.predict.plan_tiles``) and its tiles are cut into ranges of about
:data:`TILES_PER_TASK` that start on batch boundaries (``ml.predict.tile_ranges``):
one task per range, plus one for the full-image pass of "More accurate" where it
applies, so a gigapixel image spreads over every worker. A task
(``ml.cluster.TileTask``) carries the image's path, its display setting and the
range's windows (well under a kilobyte), runs on a worker
(``ml.cluster.predict_range``: the same reader, display conversion and batches as
a local predict, the model loaded once per worker) and comes back as raw boxes.
When every task of an image is back, this process joins them in tile order, fuses
and merges them (``ml.predict.fuse_tiles``, ``merge_image``) and hands them to the
same store callback as a local predict: the boxes are a local predict's, and this
process stays the only writer of the project database.

Dask is imported only here, and only when a client is given.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepblock_nb.errors import (
    ArgumentTypeError,
    DeepBlockError,
    DependencyError,
    DeviceMemoryError,
    ModelNotPicklableError,
)
from deepblock_nb.store import ImageRecord

if TYPE_CHECKING:
    from deepblock_nb.core.detections import Detections
    from deepblock_nb.jobs import Job
    from deepblock_nb.ml.predict import TilePlan
    from deepblock_nb.project._prediction import Prediction

__all__ = ["TILES_PER_TASK", "ModelNotPicklableError", "check_cluster_call", "predict_on_cluster"]

#: Tiles per task (rounded up to whole batches): small enough that a large image
#: spreads over the workers and progress moves, large enough that a task's fixed
#: cost (opening the image) stays small beside its model calls.
TILES_PER_TASK = 32
#: Seconds between two looks at ``job.should_stop`` while tasks run.
POLL_S = 0.2


def check_cluster_call(client: Any, model: Any) -> None:
    """Raise before any job starts if ``client`` is no Dask client or ``model`` cannot be sent.

    Raises:
        DependencyError: dask.distributed is not installed.
        ArgumentTypeError: ``client`` is not a ``dask.distributed.Client``.
        ModelNotPicklableError: ``model`` does not pickle.
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise DependencyError(
            "predicting on a Dask cluster needs dask.distributed: pip install 'deepblock-nb[cluster]'"
        ) from exc
    if not isinstance(client, Client):
        raise ArgumentTypeError(f"client is a dask.distributed.Client, not {type(client).__name__}")
    if model is None:
        return
    import cloudpickle  # what Dask falls back to when plain pickle fails

    try:
        cloudpickle.dumps(model)
    except Exception as exc:
        raise ModelNotPicklableError(
            f"the model given as model= ({type(model).__name__}) cannot be sent to the Dask workers: "
            f"pickling it failed ({type(exc).__name__}: {exc}). Give a module that pickles (its class "
            "defined in a module the workers can import, no open files, locks or generators among its "
            "attributes), or predict without client="
        ) from exc


@dataclass
class _Image:
    """One image on its way through the cluster."""

    record: ImageRecord
    plan: TilePlan
    ranges: list[tuple[int, int]]
    overview: bool
    parts: list[Any] = field(default_factory=list)  # results by task position
    left: int = 0  # tasks not back yet
    tiles_left: int = 0


def predict_on_cluster(
    prediction: Prediction,
    job: Job,
    client: Any,
    checkpoint: Path,
    device: str,
    model: Any,
    records: Sequence[ImageRecord],
    accurate: bool,
    batch_size: int | None,
    verb: str,
    store: Callable[[ImageRecord, Detections], None],
) -> tuple[list[int], dict[str, BaseException], bool]:
    """Predict ``records`` on the client's workers and store each image as its tasks come back.

    The checkpoint and image paths must be reachable at the same paths from the
    workers. ``store(record, detections)``: as ``Prediction._predict_images``'s.

    Returns:
        The ids done (in the order of ``records``), the failures by image name, and
        whether the job was stopped (its pending tasks are cancelled then; the
        images already stored are kept).
    """
    from deepblock_nb.ml.checkpoints import load_for_inference
    from deepblock_nb.ml.cluster import ModelSpec, SentModule, TileTask, predict_overview, predict_range
    from deepblock_nb.ml.predict import (
        SCORE_FLOOR,
        TileBoxes,
        fuse_tiles,
        merge_image,
        plan_tiles,
        tile_ranges,
        wants_overview,
    )
    from deepblock_nb.project._prediction import STREAM_CACHE_BYTES

    # here only for planning and merging: its tile size, box size and NMS threshold
    loaded = load_for_inference(checkpoint, "cpu", model=model)
    failures: dict[str, BaseException] = {}
    images: list[_Image] = []
    tasks: list[tuple[_Image, TileTask, bool]] = []  # image, task, whether the full-image pass
    cache_dir = str((prediction._p.path / "cache").absolute())  # paths as the workers open them
    for rec in records:
        try:
            display = prediction._p.display(rec)  # measured once here if not yet: the driver writes
        except (DeepBlockError, OSError, ValueError) as exc:
            failures[rec.name] = exc
            continue
        plan = plan_tiles(
            rec.image_wh, loaded, None if rec.grid is None else rec.windows(), accurate=accurate
        )
        ranges = tile_ranges(len(plan), TILES_PER_TASK, batch_size)
        img = _Image(rec, plan, ranges, accurate and wants_overview(loaded, plan), tiles_left=len(plan))
        images.append(img)

        def task(windows: Any, start: int, rec: ImageRecord = rec, display: Any = display) -> TileTask:
            return TileTask(
                rec.name, str(Path(rec.path).absolute()), cache_dir, STREAM_CACHE_BYTES, display,
                windows, start, batch_size, SCORE_FLOOR, accurate,
            )  # fmt: skip

        tasks.extend((img, task(plan.windows[a:b], a), False) for a, b in img.ranges)
        if img.overview:
            tasks.append((img, task(plan.windows[:0], 0), True))
    total = max(1, sum(len(img.plan) for img in images))
    done: list[int] = []
    if job.should_stop:
        return done, failures, True

    sent = None if model is None else client.scatter(SentModule(model), broadcast=True, hash=False)
    spec = ModelSpec(str(checkpoint.absolute()), str(device), "" if sent is None else str(sent.key))
    back: queue.Queue[Any] = queue.Queue()
    owner: dict[Any, tuple[_Image, int, int]] = {}  # future -> image, task position, tiles
    run = uuid.uuid4().hex[:8]
    for img, t, whole in tasks:
        fn = predict_overview if whole else predict_range
        what = "overview" if whole else f"tiles-{t.start}"
        fut = client.submit(
            fn, spec, t, sent, key=f"deepblock-predict-{run}-{img.record.id}-{what}", pure=False
        )
        owner[fut] = (img, len(img.parts), len(t.windows))
        img.parts.append(None)
        img.left += 1
        fut.add_done_callback(back.put)
    pending = set(owner)
    tiles_done = 0

    def finish(img: _Image) -> None:
        n = len(img.ranges)
        tiles = fuse_tiles(TileBoxes.join(img.parts[:n]))
        over = img.parts[n] if img.overview else None
        det = merge_image(loaded, img.plan, tiles, over, accurate=accurate)
        img.parts = []
        store(img.record, det)
        done.append(img.record.id)

    try:
        while pending:
            if job.should_stop:
                return _in_order(done, records), failures, True
            try:
                fut = back.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if fut not in pending:
                continue
            pending.discard(fut)
            img, position, n_tiles = owner.pop(fut)
            try:
                result = fut.result()
            except DeviceMemoryError:
                raise  # the batch is too large for a worker's device: not this image's fault
            except (DeepBlockError, OSError, ValueError, RuntimeError, _killed_worker()) as exc:
                failures[img.record.name] = exc
                others = [f for f, (i, _, _) in owner.items() if i is img]
                client.cancel(others)
                for f in others:
                    pending.discard(f)
                    owner.pop(f)
                tiles_done += img.tiles_left
                img.parts = []
            else:
                img.parts[position] = result
                img.left -= 1
                img.tiles_left -= n_tiles
                tiles_done += n_tiles
                if img.left == 0:
                    finish(img)
            job.set_progress(
                tiles_done / total,
                f"{verb} on the cluster: tile {tiles_done}/{total}, {len(done)}/{len(records)} images stored",
            )
        return _in_order(done, records), failures, False
    finally:
        if pending:
            client.cancel(list(pending))
        if sent is not None:
            client.cancel([sent])


def _in_order(done: list[int], records: Sequence[ImageRecord]) -> list[int]:
    order = {rec.id: k for k, rec in enumerate(records)}
    return sorted(done, key=order.__getitem__)


def _killed_worker() -> type[Exception]:
    """A task whose workers died (out of memory, say) fails its image, not the job."""
    from distributed import KilledWorker

    return KilledWorker
