"""What a Dask worker runs for ``project.predict(..., client=...)``.

A task predicts one range of one image's tiles (:class:`TileTask`): it opens the
image through the same bounded-memory reader and the same display conversion
(bands, intensity window) as a local predict (``io.images.open_image``), runs the
model over the range's windows in the same batches (``ml.predict.predict_tiles``)
and returns the raw boxes (:class:`~deepblock_nb.ml.predict.TileBoxes`, a few
small numpy arrays). The process that submitted the task joins, fuses and merges
them (``project._cluster``).

The model is loaded once per worker process (:func:`worker_model`): cached by
checkpoint path, modification time and size, device, and the token of a module
sent with the tasks (``model=``). This module imports no Dask: its functions are
plain callables that Dask sends by reference, so the workers need deepblock_nb
installed, and every path in a task (the checkpoint, the image, the cache folder)
must be valid on the workers: a shared filesystem mounted at the same path.
"""

from __future__ import annotations

import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from torch import nn

from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import ImageReadError, ModelError
from deepblock_nb.io.display import Display
from deepblock_nb.io.images import ImageSource, open_image
from deepblock_nb.ml.checkpoints import LoadedModel, load_for_inference
from deepblock_nb.ml.predict import TileBoxes, overview_pass, predict_tiles

__all__ = [
    "CACHED_MODELS",
    "ModelSpec",
    "TileTask",
    "loads",
    "predict_overview",
    "predict_range",
    "worker_model",
]

#: Models kept per worker process (the newest ones used).
CACHED_MODELS = 2

_models: OrderedDict[tuple[str, int, int, str, str], LoadedModel] = OrderedDict()
_models_lock = threading.Lock()  # one load per model, whatever the worker's threads
_loads = 0


@dataclass(frozen=True)
class ModelSpec:
    """Which model a task runs.

    Attributes:
        checkpoint: the run's ``best.pt`` / ``last.pt``, at its path on the workers.
        device: ``"auto"`` or a torch device name, resolved on each worker.
        token: names the module sent with the tasks (``model=``); ``""`` for none.
    """

    checkpoint: str
    device: str = "auto"
    token: str = ""


@dataclass(frozen=True, eq=False)
class TileTask:
    """One range of one image's tiles.

    Attributes:
        image: the image's name (for messages).
        path: its file, at its path on the workers.
        cache_dir: the project's ``cache/`` folder (derived pyramids), or None.
        cache_bytes: the reader's private decoded-tile cache (``open_image``).
        display: the image's display setting (``project.display``).
        windows: ``(T, 4)`` int64 ``x, y, w, h``: the range's windows of the
            image's plan (``ml.predict.plan_tiles``); empty for the full-image pass.
        start: the index of the first of them in the plan.
        batch_size: tiles per model call; None: the worker device's default.
        score_floor: boxes scoring below are dropped.
        flip: also run each batch mirrored ("More accurate").
    """

    image: str
    path: str
    cache_dir: str | None
    cache_bytes: int | None
    display: Display | None
    windows: npt.NDArray[np.int64]
    start: int
    batch_size: int | None
    score_floor: float
    flip: bool = False


@dataclass(frozen=True)
class SentModule:
    """A ``model=`` module as the tasks receive it: wrapped, so that Dask pickles it whole
    (its own serialisation of torch modules keeps the weights but turns list attributes
    into tuples)."""

    module: nn.Module


def worker_model(spec: ModelSpec, sent: SentModule | None = None) -> LoadedModel:
    """The model of ``spec``, loaded once per process and kept (:data:`CACHED_MODELS`).

    Raises:
        ModelError: the checkpoint cannot be read here (a worker without the
            project folder at the driver's path) or does not fit its preset.
    """
    global _loads
    path = Path(spec.checkpoint)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelError(
            f"checkpoint {path} cannot be read on worker {socket.gethostname()} ({exc.strerror or exc}): "
            "the workers need the project folder at the same path as this process"
        ) from None
    key = (str(path), stat.st_mtime_ns, stat.st_size, spec.device, spec.token)
    with _models_lock:
        found = _models.get(key)
        if found is not None:
            _models.move_to_end(key)
            return found
        loaded = load_for_inference(path, spec.device, model=None if sent is None else sent.module)
        _models[key] = loaded
        _loads += 1
        while len(_models) > CACHED_MODELS:
            _models.popitem(last=False)
        return loaded


def loads() -> int:
    """How many models this process has loaded (``client.run(loads)`` asks every worker)."""
    return _loads


def _open(task: TileTask) -> ImageSource:
    path = Path(task.path)
    if not path.is_file():
        raise ImageReadError(
            f"{path}: the file of image {task.image!r} is missing on worker {socket.gethostname()} "
            "(the workers read the images at the paths the project stores: a shared filesystem at the same path)",
            path,
        )
    return open_image(
        path,
        cache_dir=None if task.cache_dir is None else Path(task.cache_dir),
        cache_bytes=task.cache_bytes,
        display=task.display,
    )


def predict_range(spec: ModelSpec, task: TileTask, sent: SentModule | None = None) -> TileBoxes:
    """The raw boxes of the task's tiles (image pixels; tile indices of the image's plan)."""
    loaded = worker_model(spec, sent)
    with _open(task) as source:
        return predict_tiles(
            loaded,
            source,
            task.windows,
            start=task.start,
            batch_size=task.batch_size,
            score_floor=task.score_floor,
            flip=task.flip,
        )


def predict_overview(spec: ModelSpec, task: TileTask, sent: SentModule | None = None) -> Detections:
    """The boxes of the image's full-image pass ("More accurate"), in image pixels."""
    loaded = worker_model(spec, sent)
    with _open(task) as source:
        return overview_pass(loaded, source, task.score_floor)
