"""The trainer: a plain loop over tile batches, with hooks for everything else.

The default recipe: AdamW (weight decay 1e-4), the preset's learning rate
(2e-3 for the small preset from scratch, 1e-3 on an ImageNet MobileNet, 2e-4 for
the ResNet-50 detectors), linear warm-up over the first steps then a cosine decay
to 5 % of it, flips, scale jitter and colour jitter, gradient clipping at 10,
each tile resized so its longer side is the preset's ``tile_size`` (320 for the
small presets), tiles without boxes at 0.25 per tile with boxes, and mixed
precision on CUDA.

How many epochs: with about 1000 boxes per category, 15 epochs is a good start.
With fewer boxes use more epochs (30-50 for ~200 boxes per category); with many
more boxes, fewer epochs (5-10 for ~10 000 per category). Watch the training
score: when it stops rising, more epochs will not help; more labelled boxes will.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepblock_nb.errors import ModelError
from deepblock_nb.ml._loader import ThreadLoader
from deepblock_nb.ml._score import score_model
from deepblock_nb.ml.callbacks import (
    Callback,
    CallbackList,
    CheckpointCallback,
    EarlyStopping,
    HistoryCallback,
    JobLike,
    ProgressCallback,
)
from deepblock_nb.ml.checkpoints import build_from_checkpoint, load_checkpoint
from deepblock_nb.ml.data import Augment, TileDataset, TileItem, collate, epoch_indices, holdout_split
from deepblock_nb.ml.device import amp_dtype, resolve_device
from deepblock_nb.ml.models import BuiltModel, build_model

__all__ = ["TrainConfig", "TrainResult", "TrainState", "train_detector"]


@dataclass
class TrainConfig:
    """Settings of one training run; None means "the preset's default".

    Attributes:
        epochs: epochs to run in this call (on resume: more epochs on top).
        batch_size: tiles per step.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        tile_size: model input side, pixels.
        warmup_steps: linear warm-up steps (default: a tenth of the steps, at most 300).
        empty_rate: tiles without boxes per tile with boxes, per epoch.
        holdout: fraction of training tiles held out for the score when the
            evaluate split has no labels.
        patience: early stopping after this many epochs without a better score.
        augment: True for the default augmentation, False for none.
        num_workers: threads reading tiles ahead of the model; None: as many as
            the cores left over by the model allow (none when it trains on all
            CPU cores, where a reader only competes with it).
        amp: mixed precision; None: on CUDA only.
        seed: makes sampling and augmentation repeatable.
        grad_clip: largest gradient norm.
        min_visible: a box belongs to a tile when this fraction of it is inside.
    """

    epochs: int = 15
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
    best_score: float = -math.inf
    early_stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    score_on: str = ""
    _stop: bool = False

    def request_stop(self) -> None:
        self._stop = True

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
        return {
            "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "preset": self.built.preset,
            "preset_options": dict(self.built.options),
            "category_ids": list(self.category_ids),
            "tile_size": self.built.tile_size,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_score": self.best_score if math.isfinite(self.best_score) else -1.0,
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "config": self.config.to_dict(),
            "history": list(self.history),
        }


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return 0.001 + 0.999 * step / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    return factor


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
    model: str | nn.Module = "auto",
    weights: str | Path | None = None,
    eval_items: Sequence[TileItem] | None = None,
    device: str | torch.device = "auto",
    resume_from: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    history_sink: Callable[[list[dict[str, Any]]], None] | None = None,
    cache_dir: Path | None = None,
) -> TrainResult:
    """Train a detector on tiles; runs in the calling (job) thread.

    Args:
        job: gives ``should_stop`` (checked between batches) and receives progress and history.
        train_items: tiles of the train split (boxes in image pixels).
        category_ids: categories to detect, in label order (label ``i + 1``).
        run_dir: folder for ``last.pt`` and ``best.pt``.
        eval_items: labelled tiles of the evaluate split for the per-epoch score;
            None or empty: a fixed held-out part of ``train_items``.
        resume_from: a ``last.pt`` to continue (model, optimizer, scheduler, history);
            ``config.epochs`` more epochs run, and an epoch cut short by a stop
            starts again from its beginning (its steps so far stay learned).
        history_sink: receives each batch of new history rows (to store them).

    Returns:
        The result; the ending (finished, stopped, failed) always leaves ``last.pt``.
        Errors propagate after the checkpoint is written.
    """
    cfg = config or TrainConfig()
    if cfg.epochs < 1:
        raise ModelError(f"epochs must be at least 1, got {cfg.epochs}")
    if not train_items:
        raise ModelError("no training tiles: add images to the train split and label some boxes")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

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
        saved_cfg = dict(ckpt.get("config") or {})
        cfg = TrainConfig(**{**saved_cfg, **{k: v for k, v in cfg.to_dict().items() if k in _explicit(cfg)}})
    else:
        built = build_model(model, len(category_ids), tile_size=cfg.tile_size, weights=weights, device=dev)
        cfg.tile_size = built.tile_size
    cfg.batch_size = int(cfg.batch_size or built.batch_size)
    if cfg.num_workers is None:
        cfg.num_workers = _auto_workers(dev)
    cfg.lr = float(cfg.lr or built.lr)
    net = built.module.to(dev)
    net.train()

    # data: training tiles and the tiles that score each epoch
    items = list(train_items)
    scored = [it for it in (eval_items or []) if len(it.xyxy)]
    if scored:
        keep, held = list(range(len(items))), list[int]()
        score_items = list(eval_items or [])
        score_on = f"evaluate split ({len(score_items)} tiles)"
    else:
        keep, held = holdout_split(items, cfg.holdout)
        score_items = [items[i] for i in held] if held else items
        score_on = (
            f"held-out training tiles ({len(held)})" if held else "training tiles (too few to hold out)"
        )
    aug = Augment() if cfg.augment else None
    ds_args: dict[str, Any] = {"min_visible": cfg.min_visible, "cache_dir": cache_dir}
    train_ds = TileDataset(
        [items[i] for i in keep], category_ids, built.tile_size, aug, seed=cfg.seed, **ds_args
    )
    score_ds = TileDataset(score_items, category_ids, built.tile_size, None, **ds_args)
    has_boxes = train_ds.has_boxes()
    if not has_boxes.any():
        raise ModelError("no box of a trained category lies in any training tile; label some boxes first")

    steps_per_epoch = math.ceil(
        len(epoch_indices(has_boxes, cfg.empty_rate, np.random.default_rng(0))) / cfg.batch_size
    )
    start_epoch = int(ckpt["epoch"]) if ckpt else 0
    target_epoch = start_epoch + cfg.epochs
    total_steps = target_epoch * steps_per_epoch
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(300, max(1, total_steps // 10))

    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(warmup, total_steps))
    state = TrainState(net, optimizer, scheduler, built, list(category_ids), cfg)
    state.epoch, state.target_epoch, state.score_on = start_epoch, target_epoch, score_on
    state.steps_total = cfg.epochs * steps_per_epoch
    if ckpt:
        optimizer.load_state_dict(ckpt["optimizer_state"])
        for group in optimizer.param_groups:  # a new lr or schedule length applies from now on
            group["initial_lr"] = cfg.lr
        scheduler.load_state_dict(ckpt["scheduler_state"])
        scheduler.base_lrs = [cfg.lr for _ in optimizer.param_groups]
        scheduler.lr_lambdas = [_schedule(warmup, total_steps) for _ in optimizer.param_groups]
        state.global_step = int(ckpt.get("global_step", 0))
        state.best_score = float(ckpt.get("best_score", -1.0))
        state.history = list(ckpt.get("history") or [])

    hooks: list[Callback] = [
        HistoryCallback(job, history_sink),
        ProgressCallback(job),
        CheckpointCallback(run_dir),
    ]
    if cfg.patience:
        hooks.append(EarlyStopping(cfg.patience))
    cb = CallbackList([*hooks, *callbacks])
    autocast = amp_dtype(dev) if cfg.amp in (None, True) else None
    scaler = torch.amp.GradScaler(dev.type, enabled=autocast is torch.float16)

    def stopping() -> bool:
        return job.should_stop or state._stop

    status, error = "finished", None
    cb.on_train_start(state)
    started = time.perf_counter()
    try:
        for epoch in range(start_epoch, target_epoch):
            if stopping():
                break
            t0 = time.perf_counter()
            train_ds.epoch = epoch
            order = _batchable(
                epoch_indices(has_boxes, cfg.empty_rate, np.random.default_rng((cfg.seed, epoch))),
                cfg.batch_size,
            )
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
                with torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
                    parts = net(images, _targets_to(targets, dev))
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
            score = score_model(
                net,
                score_ds,
                dev,
                batch_size=cfg.batch_size,
                num_workers=cfg.num_workers,
                should_stop=stopping,
                autocast_dtype=autocast,
            )
            if score is None:
                break
            state.epoch = epoch + 1
            best = score > state.best_score
            if best:
                state.best_score = score
            row = {
                "kind": "epoch",
                "epoch": epoch + 1,
                "step": state.global_step,
                "loss": float(np.mean(losses)) if losses else float("nan"),
                "score": score,
                "score_on": score_on,
                "best": best,
                "seconds": time.perf_counter() - t0,
                "images_per_s": n_images / max(train_seconds, 1e-9),
                "data_wait": data_seconds / max(train_seconds, 1e-9),  # share of time the model waited
            }
            state.history.append(row)
            cb.on_epoch_end(state, row)
        if job.should_stop:
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
    )


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


def _explicit(cfg: TrainConfig) -> set[str]:
    """Fields of ``cfg`` that differ from the defaults (what a resume call changes)."""
    default = TrainConfig()
    return {k for k, v in cfg.to_dict().items() if getattr(default, k) != v} | {"epochs"}
