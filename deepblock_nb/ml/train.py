"""The trainer: a plain loop over tile batches, with hooks for everything else.

The default recipe: AdamW (weight decay 1e-4), the preset's learning rate
(2e-3 for the small preset from scratch, 1e-3 on an ImageNet MobileNet, 2e-4 for
the ResNet-50 detectors), linear warm-up over the first steps, flips, scale
jitter and colour jitter, gradient clipping at 10, tiles without boxes at 0.25
per tile with boxes, and mixed precision on CUDA. What is scored each epoch,
kept and predicts is a moving average of the trained weights (``ema``, a half-life
of one epoch; :mod:`deepblock_nb.ml._ema`); a run that ends by itself then scores
the trained weights once too and keeps them when they beat every scored average
(a model still improving fast at the end). The model sees every tile at
one magnification chosen from the labelled box sizes (small objects enlarged,
large ones reduced; :mod:`deepblock_nb.ml._input`), with SSD anchors sized to
those boxes; prediction uses the same magnification.

Scoring is honest: a fixed part of the labelled training images (whole images,
seeded) is held out; each epoch is scored on it (mAP@0.5; the history's
``score_on`` says what on) and ``best.pt`` is the best epoch there. The evaluate
split is never read while training: it is Evaluate's alone.

How many epochs: by default (``epochs=None``) the trainer decides. It keeps the
peak learning rate while the held-out score rises, and when it has not risen for
a while (``patience``), decays the rate over a few last epochs and ends; at most
:func:`auto_epochs` epochs (15 with ~1000 boxes per category, up to 100 for a few
dozen images). Given ``epochs=N`` it runs N epochs with a cosine decay. When the
score stops rising, more epochs will not help; more labelled boxes will.

Several processes (``torchrun``, DistributedDataParallel; the process group set up
by :func:`deepblock_nb.ml.distributed.setup` before the call): ``batch_size`` is
per process, so the effective batch is N x ``batch_size``, and each epoch's tiles
are shared out (one epoch is one pass over the tiles by all N together, N times
fewer steps). The preset's learning rate is then scaled by sqrt(N)
(:func:`~deepblock_nb.ml.distributed.lr_scale`, the rule for AdamW); a given
``lr`` is used as it is. Rank 0 scores, keeps the checkpoints and sends the
history; every rank stops at the same step.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepblock_nb.errors import ModelError
from deepblock_nb.ml import distributed as ddp
from deepblock_nb.ml._ema import WeightAverage
from deepblock_nb.ml._input import anchor_sizes, box_sides, choose_input_scale
from deepblock_nb.ml._loader import ThreadLoader
from deepblock_nb.ml._score import score_model
from deepblock_nb.ml.callbacks import (
    Callback,
    CallbackList,
    CheckpointCallback,
    EarlyStopping,
    HistoryCallback,
    JobLike,
    PlateauCooldown,
    ProgressCallback,
)
from deepblock_nb.ml.checkpoints import build_from_checkpoint, load_checkpoint
from deepblock_nb.ml.data import Augment, TileDataset, TileItem, collate, epoch_indices, holdout_split
from deepblock_nb.ml.device import amp_dtype, out_of_memory_as_error, place, resolve_device
from deepblock_nb.ml.models import BuiltModel, build_model

__all__ = [
    "Schedule",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "auto_epochs",
    "selection_score",
    "train_detector",
]

#: Automatic epochs (``epochs=None``): tile presentations aimed at, and bounds.
AUTO_SAMPLES = 5000
AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS = 10, 100
#: Automatic epochs: epochs without a better held-out score that end the peak rate.
AUTO_MIN_PATIENCE = 5
#: Share of the steps (at least 2 epochs) spent decaying the rate at the end.
COOLDOWN = 0.2


@dataclass
class TrainConfig:
    """Settings of one training run; None means "the preset's default".

    Attributes:
        epochs: epochs to run in this call (on resume: more epochs on top); None
            (the default) chooses by itself: at most :func:`auto_epochs`, ending
            with a short decay once the held-out score stops rising.
        batch_size: tiles per step (per process when several train together).
        lr: peak learning rate of AdamW (None: the preset's, times sqrt(N) on N processes).
        weight_decay: AdamW weight decay.
        tile_size: model input side for a typical training tile, pixels (sets the
            magnification); None chooses the magnification from the box sizes
            (:func:`deepblock_nb.ml._input.choose_input_scale`).
        warmup_steps: linear warm-up steps (default: a tenth of the steps, at most 300).
        empty_rate: tiles without boxes per tile with boxes, per epoch.
        holdout: fraction of the labelled training images held out (whole
            images, fixed by ``seed``) for the per-epoch score and the choice of
            ``best.pt``; the evaluate split is never read while training.
        patience: epochs without a better held-out score before training ends
            (fixed epochs: stops at once; automatic epochs: starts the final decay;
            default there: a sixth of the epochs, at least 5).
        augment: True for the default augmentation, False for none.
        num_workers: threads reading tiles ahead of the model; None: as many as
            the cores left over by the model allow (none when it trains on all
            CPU cores, where a reader only competes with it).
        amp: mixed precision; None: on CUDA only.
        seed: makes sampling and augmentation repeatable.
        grad_clip: largest gradient norm.
        min_visible: a box belongs to a tile when this fraction of it is inside.
        ema: half-life, in epochs, of a moving average of the weights that is then
            scored each epoch, saved as the model (``best.pt``, ``last.pt``'s
            ``model_state``) and predicts; None or 0: the trained weights
            themselves. The average scores higher while the rate is at its peak (a
            run stopped or capped early) and about the same after the final decay,
            but lags a model still improving fast when the run ends: a run that ends
            by itself (not stopped) therefore scores the trained weights once more
            and keeps them as ``best.pt`` when they score higher (the history's
            ``kind == "final"`` row says which was kept).
    """

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 1e-4
    tile_size: int | None = None
    warmup_steps: int | None = None
    empty_rate: float = 0.25
    holdout: float = 0.15
    patience: int | None = None
    augment: bool = True
    num_workers: int | None = None
    amp: bool | None = None
    seed: int = 0
    grad_clip: float = 10.0
    min_visible: float = 0.5
    ema: float | None = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """What a training call leaves: the status, scores and checkpoint files."""

    status: str
    epochs_done: int
    best_score: float
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    early_stopped: bool = False
    target_epoch: int = 0  # where the run planned to end (automatic epochs: its choice)


@dataclass
class TrainState:
    """The live state hooks see (and may change: ``request_stop``, ``best_score``)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    built: BuiltModel
    category_ids: list[int]
    config: TrainConfig
    epoch: int = 0  # epochs completed
    target_epoch: int = 0
    global_step: int = 0
    steps_done: int = 0  # in this call
    steps_total: int = 1  # in this call
    best_score: float = -math.inf  # held-out mAP@0.5 of the best epoch
    best_select: float = -math.inf  # its selection_score
    early_stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    score_on: str = ""
    steps_per_epoch: int = 1
    schedule: Schedule | None = None
    box_size: float | None = None  # 95th percentile of the boxes' longer side, image pixels
    average: WeightAverage | None = None  # the weights scored, saved as the model and predicted with
    _stop: bool = False

    def request_stop(self) -> None:
        self._stop = True

    def end_in(self, epochs: int) -> None:
        """End after ``epochs`` more epochs (after this one), decaying the rate over them."""
        target = min(self.target_epoch, self.epoch + max(1, int(epochs)))
        self.steps_total -= (self.target_epoch - target) * self.steps_per_epoch
        self.target_epoch = target
        if self.schedule is not None:
            self.schedule.end_at(self.global_step, target * self.steps_per_epoch)

    @property
    def fraction(self) -> float:
        return min(1.0, self.steps_done / max(1, self.steps_total))

    def describe(self, loss: float | None = None, score: float | None = None) -> str:
        text = f"epoch {min(self.epoch + 1, self.target_epoch)}/{self.target_epoch}"
        if loss is not None:
            text += f", loss {loss:.3f}"
        if score is not None:
            text += f", mAP50 {score:.3f}"
        elif math.isfinite(self.best_score):
            text += f", best mAP50 {self.best_score:.3f}"
        return text

    def checkpoint(self) -> dict[str, Any]:
        """A resumable checkpoint of this moment (see :mod:`deepblock_nb.ml.checkpoints`)."""

        def cpu(module: nn.Module) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu() for k, v in module.state_dict().items()}

        extra: dict[str, Any] = {}
        if self.average is not None:  # the average is the model; the trained weights resume
            extra = {"train_state": cpu(self.model), "average_updates": self.average.updates}
        return {
            **extra,
            "model_state": cpu(self.average.module if self.average is not None else self.model),
            "preset": self.built.preset,
            "preset_options": dict(self.built.options),
            "category_ids": list(self.category_ids),
            "tile_size": self.built.tile_size,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_score": self.best_score if math.isfinite(self.best_score) else -1.0,
            "best_select": self.best_select if math.isfinite(self.best_select) else -1.0,
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "config": self.config.to_dict(),
            "history": list(self.history),
            "box_size": self.box_size,
        }


class Schedule:
    """Learning-rate factor per step: linear warm-up, then a cosine decay to 5 %.

    With ``stable`` the rate stays at its peak after the warm-up and decays only
    over the last :data:`COOLDOWN` of the steps, or from the moment
    :meth:`end_at` is called (a plateau of the held-out score): the
    warm-up / stable / decay schedule, which can end early without wasting the
    decay that makes the last epochs count. A callable object, so the scheduler's
    state dict keeps it across a resume.
    """

    def __init__(self, warmup: int, total: int, stable: bool = False) -> None:
        self.warmup, self.total = int(warmup), int(total)
        self.decay_from = self.warmup if not stable else max(self.warmup, round(self.total * (1 - COOLDOWN)))
        self.peak = 1.0  # the factor the decay starts from

    def end_at(self, step: int, total: int) -> None:
        """Decay from ``step`` on (from the factor reached there), ending at step ``total``."""
        self.peak = max(0.05, self(step))
        self.warmup = min(self.warmup, int(step))
        self.decay_from, self.total = int(step), max(int(step) + 1, int(total))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return 0.001 + 0.999 * step / self.warmup
        if step < self.decay_from:
            return 1.0
        t = min(1.0, (step - self.decay_from) / max(1, self.total - self.decay_from))
        return 0.05 + (self.peak - 0.05) * 0.5 * (1 + math.cos(math.pi * t))


def selection_score(map50: float, map50_95: float) -> float:
    """What chooses ``best.pt`` and detects a plateau: the mean of the held-out
    mAP@0.5 and mAP@[.5:.95]. mAP@0.5 alone saturates near 1 on easy data while
    the boxes still get tighter; mAP@[.5:.95] alone stays near 0 for the first
    epochs from scratch, when mAP@0.5 already moves."""
    return 0.5 * (max(map50, 0.0) + max(map50_95, 0.0))


def auto_epochs(samples_per_epoch: int) -> int:
    """The most epochs an automatic run may take: about :data:`AUTO_SAMPLES` tile
    presentations in all, within [:data:`AUTO_MIN_EPOCHS`, :data:`AUTO_MAX_EPOCHS`]
    (15 epochs at ~1000 boxes per category in a few hundred tiles; many more for a
    few dozen images). A plateau of the held-out score usually ends it sooner."""
    n = max(1, int(samples_per_epoch))
    return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, round(AUTO_SAMPLES / n))))


def _targets_to(
    targets: list[dict[str, torch.Tensor]], device: torch.device
) -> list[dict[str, torch.Tensor]]:
    return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]


def train_detector(
    job: JobLike,
    train_items: Sequence[TileItem],
    category_ids: Sequence[int],
    run_dir: str | Path,
    *,
    config: TrainConfig | None = None,
    given: Collection[str] = (),
    model: str | nn.Module = "auto",
    weights: str | Path | None = None,
    device: str | torch.device = "auto",
    resume_from: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    history_sink: Callable[[list[dict[str, Any]]], None] | None = None,
    cache_dir: Path | None = None,
    download: bool | None = None,
) -> TrainResult:
    """Train a detector on tiles; runs in the calling (job) thread.

    Args:
        job: gives ``should_stop`` (checked between batches) and receives progress and history.
        train_items: tiles of the train split (boxes in image pixels).
        category_ids: categories to detect, in label order (label ``i + 1``).
        run_dir: folder for ``last.pt`` and ``best.pt``.
            A fixed part of them (whole images: :func:`~deepblock_nb.ml.data.holdout_split`)
            is held out to score each epoch and to choose ``best.pt``; nothing of
            the evaluate split is read here.
        resume_from: a ``last.pt`` to continue (model, optimizer, scheduler, history);
            ``config.epochs`` more epochs run, and an epoch cut short by a stop
            starts again from its beginning (its steps so far stay learned).
        given: with ``resume_from``, the names of the ``config`` fields the caller
            passed: those replace the run's saved settings (also when equal to a
            default); every other setting keeps its saved value. ``config`` itself
            is never modified.
        history_sink: receives each batch of new history rows (to store them).
        download: fetch missing pretrained weights (None: ``$DEEPBLOCK_DOWNLOAD_WEIGHTS`` decides).

    In a process group (torchrun) every rank calls this with the same tiles and
    settings; only rank 0 writes ``run_dir`` and calls ``history_sink``, and it also
    stops the run when ``run_dir / "STOP"`` appears (see :mod:`deepblock_nb.ml.distributed`).

    Returns:
        The result; the ending (finished, stopped, failed) always leaves ``last.pt``.
        Errors propagate after the checkpoint is written.
    """
    cfg = dataclasses.replace(config) if config is not None else TrainConfig()  # never the caller's
    if cfg.epochs is not None and cfg.epochs < 1:
        raise ModelError(f"epochs must be at least 1, got {cfg.epochs}")
    if not train_items:
        raise ModelError("no training tiles: add images to the train split and label some boxes")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    world, main = ddp.world_size(), ddp.is_main()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    # data first: the held-out images, and the box sizes the model is shaped for
    items = list(train_items)
    keep, held = holdout_split(items, cfg.holdout, cfg.seed, cfg.min_visible)
    score_items = [items[i] for i in held] if held else items
    held_images = {items[i].image_path.name for i in held}
    if held and not any(items[i].image_path.name in held_images for i in keep):
        n_images = len({it.image_path.name for it in items})
        score_on = f"held-out training images ({len(held_images)} of {n_images}, {len(held)} tiles)"
    elif held:
        score_on = f"held-out training tiles ({len(held)} of {len(items)})"
    else:
        score_on = "training tiles (too few to hold out)"
    aug = Augment() if cfg.augment else None
    ds_args: dict[str, Any] = {"min_visible": cfg.min_visible, "cache_dir": cache_dir}
    train_ds = TileDataset([items[i] for i in keep], category_ids, None, aug, seed=cfg.seed, **ds_args)
    score_ds = TileDataset(score_items, category_ids, None, None, **ds_args)
    has_boxes = train_ds.has_boxes()
    if not has_boxes.any():
        raise ModelError("no box of a trained category lies in any training tile; label some boxes first")
    sides = np.concatenate([box_sides(train_ds.target_boxes(int(i))[0]) for i in np.flatnonzero(has_boxes)])
    tile_side = float(np.median([max(it.window[2], it.window[3]) for it in train_ds.items]))

    ckpt: dict[str, Any] | None = None
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        if [int(c) for c in ckpt["category_ids"]] != [int(c) for c in category_ids]:
            raise ModelError(
                f"{resume_from}: trained on category ids {ckpt['category_ids']}, the project now has "
                f"{list(category_ids)}; start a new run (resume=False) to train on the new categories"
            )
        module = build_from_checkpoint(ckpt, model if isinstance(model, nn.Module) else None)
        built = BuiltModel(
            module, str(ckpt["preset"]), dict(ckpt["preset_options"]), int(ckpt["tile_size"]), 0.0, 8
        )
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        saved_cfg = {k: v for k, v in dict(ckpt.get("config") or {}).items() if k in known}
        passed = {k: v for k, v in cfg.to_dict().items() if k in set(given) | {"epochs"}}
        cfg = TrainConfig(**{**saved_cfg, **passed})
        if cfg.epochs is None:
            raise ModelError(f"{resume_from}: say how many more epochs to train (epochs=N)")
    else:
        options: dict[str, Any] = {}
        if not isinstance(model, nn.Module):
            # one magnification for training and prediction: given as a model input
            # side for the typical tile, or chosen from the labelled box sizes
            scale = cfg.tile_size / tile_side if cfg.tile_size else choose_input_scale(sides, tile_side)
            options = {"input_scale": float(scale), "anchor_sizes": anchor_sizes(sides, scale)}
        size = cfg.tile_size or max(32, round(tile_side * options.get("input_scale", 1.0)))
        built = build_model(
            model,
            len(category_ids),
            tile_size=size,
            weights=weights,
            device=dev,
            options=options,
            download=download,
        )
        cfg.tile_size = built.tile_size
    cfg.batch_size = int(cfg.batch_size or built.batch_size)
    if cfg.num_workers is None:
        cfg.num_workers = _auto_workers(dev)
    cfg.lr = float(cfg.lr or built.lr * ddp.lr_scale(world))
    net = ddp.sync_batch_norm(place(built.module, dev), dev)
    net.train()

    per_rank = ddp.shard(epoch_indices(has_boxes, cfg.empty_rate, np.random.default_rng(0)), 0, world)
    steps_per_epoch = math.ceil(len(per_rank) / cfg.batch_size)
    auto = cfg.epochs is None
    epochs = auto_epochs(steps_per_epoch * cfg.batch_size * world) if auto else int(cfg.epochs or 1)
    start_epoch = int(ckpt["epoch"]) if ckpt else 0
    target_epoch = start_epoch + epochs
    total_steps = target_epoch * steps_per_epoch
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(300, max(1, total_steps // 10))
    # a fixed number of epochs: cosine decay over all of them; automatic: the
    # peak rate until the held-out score stops rising, then a short decay
    schedule = Schedule(warmup, total_steps, stable=auto)

    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    state = TrainState(net, optimizer, scheduler, built, list(category_ids), cfg)
    state.epoch, state.target_epoch, state.score_on = start_epoch, target_epoch, score_on
    state.steps_per_epoch, state.schedule = steps_per_epoch, schedule
    state.steps_total = epochs * steps_per_epoch
    state.box_size = float(np.percentile(sides, 95))
    if ckpt:
        optimizer.load_state_dict(ckpt["optimizer_state"])
        for group in optimizer.param_groups:  # a new lr or schedule length applies from now on
            group["initial_lr"] = cfg.lr
        scheduler.load_state_dict(ckpt["scheduler_state"])
        scheduler.base_lrs = [cfg.lr for _ in optimizer.param_groups]
        scheduler.lr_lambdas = [schedule for _ in optimizer.param_groups]
        state.global_step = int(ckpt.get("global_step", 0))
        state.best_score = float(ckpt.get("best_score", -1.0))
        state.best_select = float(ckpt.get("best_select", state.best_score))
        state.history = list(ckpt.get("history") or [])
    if cfg.ema:  # from the model as built (a resumed run: its saved average)
        updates = int(ckpt.get("average_updates", 0)) if ckpt else 0
        state.average = WeightAverage(net, float(cfg.ema) * steps_per_epoch, updates=updates)
    if ckpt and ckpt.get("train_state") is not None:
        net.load_state_dict(ckpt["train_state"])  # training goes on from the trained weights

    hooks: list[Callback] = [HistoryCallback(job, history_sink if main else None), ProgressCallback(job)]
    if main:
        hooks.append(CheckpointCallback(run_dir))
    if auto:
        patience = cfg.patience or max(AUTO_MIN_PATIENCE, epochs // 6)
        # from scratch the score stays flat for a while before it takes off: no
        # plateau is called in the first quarter of the epochs
        hooks.append(PlateauCooldown(patience, min_epochs=start_epoch + epochs // 4))
    elif cfg.patience:
        hooks.append(EarlyStopping(cfg.patience))
    cb = CallbackList([*hooks, *callbacks])
    autocast = amp_dtype(dev) if cfg.amp in (None, True) else None
    scaler = torch.amp.GradScaler(dev.type, enabled=autocast is torch.float16)

    # the user's stop, agreed by every rank at the same step (a collective under DDP)
    stop = ddp.StopSignal(lambda: job.should_stop, run_dir / ddp.STOP_FILE, dev)
    model = ddp.wrap(net, dev)  # forward and backward; ``net`` itself is saved and scored

    def stopping() -> bool:
        return stop.poll() or state._stop

    status, error = "finished", None
    cb.on_train_start(state)
    started = time.perf_counter()
    try:
        epoch = start_epoch
        while epoch < state.target_epoch:  # a plateau may bring the end closer
            if stopping():
                break
            t0 = time.perf_counter()
            train_ds.epoch = epoch
            # seeded by epoch: the same order on every rank, and a new one each epoch
            epoch_order = epoch_indices(has_boxes, cfg.empty_rate, np.random.default_rng((cfg.seed, epoch)))
            order = _batchable(ddp.shard(epoch_order, ddp.rank(), world), cfg.batch_size)
            loader = ThreadLoader(
                train_ds, order.tolist(), cfg.batch_size, collate, num_workers=cfg.num_workers
            )
            losses: list[float] = []
            n_images = 0
            data_seconds = 0.0
            batches = iter(loader)
            while True:
                waited = time.perf_counter()
                batch = next(batches, None)
                data_seconds += time.perf_counter() - waited
                if batch is None or stopping():
                    batches.close()  # type: ignore[attr-defined]
                    break
                images, targets = batch
                images = [im.to(dev, non_blocking=True) for im in images]
                with out_of_memory_as_error(dev, cfg.batch_size, "training"):
                    with torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
                        parts = model(images, _targets_to(targets, dev))
                    loss = sum(parts.values())
                    if not torch.isfinite(loss):
                        raise ModelError(
                            f"the loss became {loss.item()} at epoch {epoch + 1}, step {state.global_step + 1}; "
                            f"try a lower learning rate (lr={cfg.lr:g} now)"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                step_lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                if state.average is not None:
                    state.average.update(net)
                state.global_step += 1
                state.steps_done += 1
                n_images += len(images)
                losses.append(float(loss.item()))
                row: dict[str, Any] = {
                    "kind": "step",
                    "epoch": epoch + 1,
                    "step": state.global_step,
                    "loss": losses[-1],
                    **{f"loss_{k.removeprefix('loss_')}": float(v.item()) for k, v in parts.items()},
                    "lr": step_lr,
                    "seconds": time.perf_counter() - started,
                }
                state.history.append(row)
                cb.on_batch_end(state, row)
            if stopping():
                break
            train_seconds = time.perf_counter() - t0
            epoch_loss = ddp.mean_over_ranks(float(np.mean(losses)) if losses else float("nan"), dev)
            score = None
            if main:  # the other ranks wait for its score
                score = score_model(
                    state.average.module if state.average is not None else net,
                    score_ds,
                    dev,
                    batch_size=cfg.batch_size,
                    num_workers=cfg.num_workers,
                    should_stop=stop.local_request,
                    autocast_dtype=autocast,
                )
            score = ddp.broadcast_object(score)
            if score is None:  # a stop request while scoring
                stop.agreed = True
                break
            state.epoch = epoch + 1
            select = selection_score(*score)
            best = select > state.best_select
            if best:
                state.best_select, state.best_score = select, score[0]
            row = {
                "kind": "epoch",
                "epoch": epoch + 1,
                "step": state.global_step,
                "loss": epoch_loss,
                "score": score[0],
                "score_map": score[1],
                "select": select,
                "score_on": score_on,
                "best": best,
                "seconds": time.perf_counter() - t0,
                "images_per_s": n_images * world / max(train_seconds, 1e-9),  # every rank's
                "data_wait": data_seconds / max(train_seconds, 1e-9),  # share of time the model waited
            }
            state.history.append(row)
            cb.on_epoch_end(state, row)
            epoch += 1
        if state.average is not None and state.steps_done and not stopping() and main:
            final = _score_trained_weights(state, score_ds, dev, autocast, run_dir)
            if final is not None:
                cb.on_record(state, final)
        if job.should_stop or stop.agreed:
            status = "stopped"
    except BaseException as exc:
        status, error = "failed", exc
        raise
    finally:
        train_ds.close()
        score_ds.close()
        cb.on_train_end(state, status, error)
    return TrainResult(
        status,
        state.epoch,
        state.best_score,
        run_dir / "last.pt" if (run_dir / "last.pt").exists() else None,
        run_dir / "best.pt" if (run_dir / "best.pt").exists() else None,
        state.early_stopped,
        state.target_epoch,
    )


def _score_trained_weights(
    state: TrainState, score_ds: TileDataset, dev: torch.device, autocast: Any, run_dir: Path
) -> dict[str, Any] | None:
    """At the end of a run with a weight average: score the trained weights once
    on the held-out tiles, and keep them as ``best.pt`` when they beat every scored
    average (a model still improving fast at the end, which the average lags).
    Returns the history row that says which was kept (None: scoring was stopped)."""
    from deepblock_nb.ml.checkpoints import save_checkpoint

    cfg = state.config
    score = score_model(
        state.model,
        score_ds,
        dev,
        batch_size=int(cfg.batch_size or 8),
        num_workers=int(cfg.num_workers or 0),
        autocast_dtype=autocast,
    )
    state.model.train()
    if score is None:
        return None
    select = selection_score(*score)
    better = select > state.best_select
    row: dict[str, Any] = {
        "kind": "final",
        "epoch": state.epoch,
        "step": state.global_step,
        "trained_score": score[0],
        "trained_score_map": score[1],
        "trained_select": select,
        "kept": "trained weights" if better else "weight average",
        "best": better,
        "score_on": state.score_on,
    }
    if better:
        state.best_select, state.best_score = select, score[0]
        ckpt = state.checkpoint()
        ckpt["model_state"] = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
        ckpt["kept"] = "trained weights"
        save_checkpoint(ckpt, Path(run_dir) / "best.pt")
    state.history.append(row)
    return row


def _auto_workers(device: torch.device) -> int:
    """Reader threads: up to 4 beside an accelerator; on a CPU only the cores torch leaves free."""
    cores = os.cpu_count() or 1
    if device.type != "cpu":
        return min(4, max(1, cores - 1))
    return max(0, min(4, cores - torch.get_num_threads()))


def _batchable(order: np.ndarray, batch_size: int) -> np.ndarray:
    """No batch of one sample: batch norm cannot train on it (a lone last sample
    waits for the next epoch; a single tile is used twice)."""
    if len(order) == 1:
        return np.repeat(order, 2)
    if batch_size > 1 and len(order) % batch_size == 1:
        return order[:-1]
    return order
