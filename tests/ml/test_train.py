"""The trainer: learning, stop within one batch, resume, failures, early stopping."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deepblock_nb.core.tiling import tile_windows
from deepblock_nb.errors import ImageReadError, ModelError
from deepblock_nb.jobs import JobQueue, JobStatus
from deepblock_nb.ml.callbacks import Callback
from deepblock_nb.ml.checkpoints import load_checkpoint, load_for_inference
from deepblock_nb.ml.data import TileItem
from deepblock_nb.ml.train import TrainConfig, train_detector

pytest.importorskip("deepblock_nb.core.tiling")


class StandIn:
    """The three things training needs of a job, recorded."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.progress: list[tuple[float, str | None]] = []
        self.stop_now = False

    @property
    def should_stop(self) -> bool:
        return self.stop_now

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        self.progress.append((fraction, message))

    def add_history(self, rows: list[dict]) -> None:
        self.rows.extend(rows)

    def epochs(self) -> list[dict]:
        return [r for r in self.rows if r["kind"] == "epoch"]


def _items(images: list[Any], grid: int = 1) -> list[TileItem]:
    return [
        TileItem(s.path, tuple(int(v) for v in window), s.xyxy, s.category_ids, s.size)
        for s in images
        for window in tile_windows(s.size, grid, grid)
    ]


FAST: dict[str, Any] = {"tile_size": 64, "batch_size": 8, "num_workers": 0}


def test_short_training_loss_falls(shapes_dir: list[Any], tmp_path: Path) -> None:
    job = StandIn()
    cfg = TrainConfig(epochs=4, **{**FAST, "batch_size": 4})
    result = train_detector(
        job, _items(shapes_dir[:16], grid=2), [1, 2], tmp_path / "run", config=cfg, model="small"
    )
    epochs = job.epochs()
    assert result.status == "finished" and [r["epoch"] for r in epochs] == [1, 2, 3, 4]
    assert epochs[-1]["loss"] < 0.9 * epochs[0]["loss"], [r["loss"] for r in epochs]
    assert all(0.0 <= r["score"] <= 1.0 and r["seconds"] > 0 for r in epochs)
    assert epochs[0]["score_on"].startswith("held-out training images (2 of 16")
    steps = [r for r in job.rows if r["kind"] == "step"]
    assert {"loss", "lr", "epoch", "step", "seconds"} <= set(steps[0])
    assert any(k.startswith("loss_") for k in steps[0])
    assert steps[0]["lr"] < 0.01 * max(r["lr"] for r in steps)  # warm-up
    assert job.progress[-1][0] == 1.0
    # with the weight average (the default) the end also scores the trained weights once
    (final,) = [r for r in job.rows if r["kind"] == "final"]
    assert final["kept"] == ("trained weights" if final["best"] else "weight average")
    best = load_checkpoint(tmp_path / "run" / "best.pt")["best_score"]
    candidates = [r["score"] for r in epochs] + ([final["trained_score"]] if final["best"] else [])
    assert best == pytest.approx(max(candidates))


class UntilScore(Callback):
    def __init__(self, target: float) -> None:
        self.target = target

    def on_epoch_end(self, state, row) -> None:  # type: ignore[no-untyped-def]
        if row["score"] >= self.target:
            state.request_stop()


@pytest.mark.slow
def test_training_score_rises(shape_maker: Any, tmp_path: Path) -> None:
    """The small preset from scratch: about 200 steps before the score takes off."""
    images = shape_maker(tmp_path / "shapes", 48, (128, 128), seed=11)
    job = StandIn()
    cfg = TrainConfig(epochs=40, tile_size=128, batch_size=8, num_workers=1)
    train_detector(
        job, _items(images), [1, 2], tmp_path / "run", config=cfg, model="small", callbacks=[UntilScore(0.6)]
    )
    epochs = job.epochs()
    # the weight average (scored each epoch) lags a model taking off; a run that
    # ends by itself also scores the trained weights
    scores = [r["score"] for r in epochs] + [r["trained_score"] for r in job.rows if r["kind"] == "final"]
    assert epochs[-1]["loss"] < 0.5 * epochs[0]["loss"]
    assert max(scores) >= 0.5 and max(scores) > scores[0] + 0.3, scores


class StopAfter(Callback):
    """Asks for a stop from another thread after ``n`` steps and records the steps taken after."""

    def __init__(self, job, n: int) -> None:  # type: ignore[no-untyped-def]
        self.job, self.n, self.steps = job, n, 0

    def on_batch_end(self, state, row) -> None:  # type: ignore[no-untyped-def]
        self.steps += 1
        if self.steps == self.n:
            t = threading.Thread(target=self.job.stop)
            t.start()
            t.join()


def test_stop_from_another_thread_then_resume(shapes_dir: list[Any], tmp_path: Path) -> None:
    queue = JobQueue()
    items = _items(shapes_dir[:8], grid=2)
    run = tmp_path / "run"
    stopper: dict[str, StopAfter] = {}

    def work(job) -> None:  # type: ignore[no-untyped-def]
        stopper["cb"] = StopAfter(job, 3)
        job.result = train_detector(
            job,
            items,
            [1, 2],
            run,
            config=TrainConfig(epochs=3, **FAST),
            model="small",
            callbacks=[stopper["cb"]],
        )

    job = queue.submit("train", work).wait(60)
    assert job.status is JobStatus.STOPPED, job.error
    assert stopper["cb"].steps == 3  # no batch ran after the stop
    ckpt = load_checkpoint(run / "last.pt")
    done = ckpt["epoch"]
    assert ckpt["global_step"] == 3 and done < 3 and ckpt["optimizer_state"]["state"]
    assert load_for_inference(run / "last.pt", "cpu").category_ids == [1, 2]

    resumed = queue.submit(
        "train",
        lambda j: train_detector(
            j, items, [1, 2], run, config=TrainConfig(epochs=2, **FAST), resume_from=run / "last.pt"
        ),
    ).wait(120)
    assert resumed.status is JobStatus.FINISHED, resumed.error
    hist = resumed.history
    assert hist["step"].is_monotonic_increasing and hist["step"].iloc[0] == 1
    steps = hist[hist.kind == "step"]
    assert steps["step"].iloc[3] == 4  # continues after the 3 steps before the stop
    assert hist[hist.kind == "epoch"]["epoch"].tolist() == list(range(1, done + 3))
    after = load_checkpoint(run / "last.pt")
    assert after["epoch"] == done + 2 and after["global_step"] > 3


def test_corrupt_image_fails_the_job_naming_the_file(
    shapes_dir: list[Any], shape_maker: Any, tmp_path: Path
) -> None:
    bad = shape_maker(tmp_path / "bad", 1, seed=5)[0]
    bad.path.write_bytes(bad.path.read_bytes()[:100])
    items = _items(shapes_dir[:6]) + _items([bad])
    job = (
        JobQueue()
        .submit(
            "train",
            lambda j: train_detector(
                j,
                items,
                [1, 2],
                tmp_path / "run",
                config=TrainConfig(epochs=2, holdout=0, **FAST),
                model="small",
            ),
        )
        .wait(60)
    )
    assert job.status is JobStatus.FAILED
    assert isinstance(job.error, ImageReadError) and bad.path.name in str(job.error)
    assert (tmp_path / "run" / "last.pt").is_file()  # the ending keeps a checkpoint


def test_errors_before_training(shapes_dir: list[Any], tmp_path: Path) -> None:
    job = StandIn()
    with pytest.raises(ModelError, match="no training tiles"):
        train_detector(job, [], [1], tmp_path)
    empty = [
        TileItem(s.path, (0, 0, 128, 128), np.zeros((0, 4)), np.zeros(0, np.int64), s.size)
        for s in shapes_dir[:2]
    ]
    with pytest.raises(ModelError, match="no box"):
        train_detector(job, empty, [1], tmp_path, config=TrainConfig(epochs=1, **FAST))


def test_early_stopping_on_held_out_images(shapes_dir: list[Any], tmp_path: Path) -> None:
    job = StandIn()
    cfg = TrainConfig(epochs=6, lr=1e-9, patience=1, **FAST)
    t = time.perf_counter()
    result = train_detector(
        job, _items(shapes_dir[:8]), [1, 2], tmp_path / "r", config=cfg, model="small", device="cpu"
    )
    assert result.early_stopped and result.status == "finished" and result.epochs_done < 6
    assert job.epochs()[0]["score_on"] == "held-out training images (1 of 8, 1 tiles)"
    assert time.perf_counter() - t < 60
    assert torch.get_num_threads() == 2


def test_schedule_fixed_is_cosine_and_stable_holds_until_told() -> None:
    from deepblock_nb.ml.train import Schedule

    fixed = Schedule(10, 100)
    assert fixed(0) < 0.01 and fixed(10) == pytest.approx(1.0) and fixed(100) == pytest.approx(0.05)
    assert fixed(40) < 1.0  # decaying from the end of the warm-up
    stable = Schedule(10, 100, stable=True)
    assert stable(50) == 1.0 and stable(79) == 1.0 and stable(100) == pytest.approx(0.05)
    stable.end_at(30, 40)  # a plateau at step 30: decay over 10 steps
    assert stable(29) == 1.0 and 0.05 < stable(35) < 1.0 and stable(40) == pytest.approx(0.05)
    early = Schedule(10, 100, stable=True)
    early.end_at(5, 15)  # a plateau still in the warm-up: decay from where the rate is
    assert early(5) == pytest.approx(0.001 + 0.999 * 0.5) and early(10) < early(5)
    assert early(15) == pytest.approx(0.05)


def test_auto_epochs_bounds() -> None:
    from deepblock_nb.ml.train import AUTO_MAX_EPOCHS, AUTO_MIN_EPOCHS, auto_epochs

    assert auto_epochs(1) == AUTO_MAX_EPOCHS and auto_epochs(10**6) == AUTO_MIN_EPOCHS
    assert auto_epochs(333) == 15  # ~1000 boxes per category in a few hundred tiles
    assert auto_epochs(0) == AUTO_MAX_EPOCHS


def test_automatic_epochs_train_on_while_nothing_is_learnt(
    shapes_dir: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No epochs given and a flat score of ~0 (lr ~ 0): no plateau is called for a
    model that has learnt nothing; the run goes to its cap (here 12 epochs), the
    rate decaying over the last fifth, and records what it chose."""
    import deepblock_nb.ml.train as train_mod

    monkeypatch.setattr(train_mod, "AUTO_MAX_EPOCHS", 12)
    job = StandIn()
    cfg = TrainConfig(lr=1e-9, patience=2, **FAST)
    result = train_detector(
        job, _items(shapes_dir[:8]), [1, 2], tmp_path / "r", config=cfg, model="small", device="cpu"
    )
    epochs = job.epochs()
    assert result.status == "finished" and not result.early_stopped
    assert result.epochs_done == result.target_epoch == len(epochs) == 12
    assert all({"score", "score_map", "select"} <= set(r) for r in epochs)
    steps = [r for r in job.rows if r["kind"] == "step"]
    lrs = [r["lr"] for r in steps]
    assert lrs[-1] < max(lrs) == lrs[len(lrs) // 2]  # peak in the middle, decayed at the end
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["config"]["epochs"] is None and ckpt["box_size"] > 0
    assert ckpt["preset_options"]["input_scale"] > 0 and len(ckpt["preset_options"]["anchor_sizes"]) == 7
    loaded = load_for_inference(tmp_path / "r" / "best.pt", "cpu")  # the same network rebuilt
    assert type(loaded.model.transform).__name__ == "ScaleTransform"


class _PlateauState:
    """What PlateauCooldown touches of the trainer's state."""

    def __init__(self) -> None:
        self.epoch, self.target_epoch, self.early_stopped, self.ended_in = 0, 100, False, None

    def end_in(self, epochs: int) -> None:
        self.ended_in = epochs


@pytest.mark.parametrize(
    ("scores", "min_epochs", "ends_after"),
    [
        ([], 0, None),  # nothing scored
        ([0.0] * 10, 0, None),  # nothing learnt: never a plateau
        ([0.5, 0.5, 0.5, 0.5], 0, 3),  # learnt, then flat for `patience` epochs
        ([0.5, 0.5, 0.5, 0.5, 0.5], 5, 5),  # not before min_epochs
        ([0.2, 0.4, 0.6, 0.8, 0.9], 0, None),  # still rising
    ],
)
def test_plateau_cooldown(scores: list[float], min_epochs: int, ends_after: int | None) -> None:
    from deepblock_nb.ml.callbacks import PlateauCooldown

    cb, state = PlateauCooldown(patience=2, min_epochs=min_epochs), _PlateauState()
    ended = None
    for k, score in enumerate(scores, start=1):
        state.epoch = k
        cb.on_epoch_end(state, {"select": score})  # type: ignore[arg-type]
        if state.ended_in is not None and ended is None:
            ended = k
    assert ended == ends_after
    if ends_after is not None:
        assert state.early_stopped and state.ended_in == 2  # the decay: at least min_cooldown epochs


class Weights(Callback):
    """The trained weights after the first step and at the end, and the averaged ones at the end."""

    def __init__(self) -> None:
        self.first: dict[str, torch.Tensor] | None = None
        self.trained: dict[str, torch.Tensor] = {}
        self.average: dict[str, torch.Tensor] | None = None

    def on_batch_end(self, state, row) -> None:  # type: ignore[no-untyped-def]
        if self.first is None:
            self.first = {k: v.detach().clone() for k, v in state.model.state_dict().items()}

    def on_train_end(self, state, status, error) -> None:  # type: ignore[no-untyped-def]
        self.trained = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        if state.average is not None:
            self.average = {k: v.detach().clone() for k, v in state.average.module.state_dict().items()}


class StopAt(Callback):
    """Sets the stand-in job's stop flag after ``n`` steps."""

    def __init__(self, job: StandIn, n: int) -> None:
        self.job, self.n = job, n

    def on_batch_end(self, state, row) -> None:  # type: ignore[no-untyped-def]
        self.job.stop_now = self.job.stop_now or state.steps_done >= self.n


class Better(Callback):
    """Makes the weight average look worse than any score, so the end keeps the trained weights."""

    def on_epoch_end(self, state, row) -> None:  # type: ignore[no-untyped-def]
        state.best_select = -1.0


def test_the_end_of_a_run_keeps_the_trained_weights_when_they_beat_the_average(
    shapes_dir: list[Any], tmp_path: Path
) -> None:
    items = _items(shapes_dir[:8], grid=2)
    job, seen = StandIn(), Weights()
    result = train_detector(
        job,
        items,
        [1, 2],
        tmp_path / "run",
        config=TrainConfig(epochs=2, **FAST),
        model="small",
        callbacks=[Better(), seen],
    )
    (final,) = [r for r in job.rows if r["kind"] == "final"]
    assert final["best"] and final["kept"] == "trained weights" and final["epoch"] == 2
    assert final["score_on"] == job.epochs()[-1]["score_on"]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    key = next(k for k, v in seen.trained.items() if v.is_floating_point() and v.numel() > 100)
    assert torch.equal(best["model_state"][key], seen.trained[key])
    assert seen.average is not None and not torch.equal(best["model_state"][key], seen.average[key])
    assert best["best_score"] == pytest.approx(final["trained_score"]) == pytest.approx(result.best_score)
    # last.pt still predicts with the average and resumes from the trained weights
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert torch.equal(last["model_state"][key], seen.average[key])
    # a stopped run ends at once: nothing more is scored
    stopped = StandIn()
    train_detector(
        stopped,
        items,
        [1, 2],
        tmp_path / "stopped",
        config=TrainConfig(epochs=3, **FAST),
        model="small",
        callbacks=[StopAt(stopped, 3)],
    )
    assert not [r for r in stopped.rows if r["kind"] == "final"]


def test_the_saved_model_is_the_weight_average_and_resume_trains_the_trained_weights(
    shapes_dir: list[Any], tmp_path: Path
) -> None:
    items = _items(shapes_dir[:8], grid=2)
    run = tmp_path / "run"
    seen = Weights()
    train_detector(
        StandIn(),
        items,
        [1, 2],
        run,
        config=TrainConfig(epochs=2, ema=1.0, **FAST),
        model="small",
        callbacks=[seen],
    )
    ckpt = load_checkpoint(run / "last.pt")
    assert seen.average is not None and ckpt["average_updates"] == ckpt["global_step"] > 1
    key = next(k for k, v in seen.trained.items() if v.is_floating_point() and v.numel() > 100)
    assert torch.equal(ckpt["model_state"][key], seen.average[key])  # what predicts: the average
    assert torch.equal(ckpt["train_state"][key], seen.trained[key])  # what a resume trains on
    assert not torch.equal(seen.average[key], seen.trained[key])
    # resumed, the first step starts from the trained weights, not from the average
    resumed = Weights()
    train_detector(
        StandIn(),
        items,
        [1, 2],
        run,
        config=TrainConfig(epochs=1, **FAST),
        resume_from=run / "last.pt",
        callbacks=[resumed],
    )
    assert resumed.first is not None
    moved = (resumed.first[key] - seen.trained[key]).abs().max()
    from_average = (resumed.first[key] - seen.average[key]).abs().max()
    assert moved < from_average  # one step away from the trained weights
    after = load_checkpoint(run / "last.pt")
    assert after["average_updates"] == after["global_step"]
    # without averaging the saved model is the trained weights themselves
    plain = Weights()
    train_detector(
        StandIn(),
        items,
        [1, 2],
        tmp_path / "plain",
        config=TrainConfig(epochs=1, ema=None, **FAST),
        model="small",
        callbacks=[plain],
    )
    ck = load_checkpoint(tmp_path / "plain" / "last.pt")
    assert "train_state" not in ck and plain.average is None
    assert torch.equal(ck["model_state"][key], plain.trained[key])
