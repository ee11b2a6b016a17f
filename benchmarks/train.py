"""Training benchmark: prints ratios measured in one run on this machine.

1. Throughput: our trainer's images/s against a bare torchvision training loop
   (torch DataLoader reading the same tiles, same model, batch and tile size),
   measured in alternating rounds so both see the same machine load. Also the
   share of time the model waits for data, with 0, 1 and 2 reader threads.
2. Learning speed: wall time until mAP@0.5 >= 0.9 on a generated data set
   (shapes on textured backgrounds, evaluated on separate images), for our
   trainer (small preset, from scratch) and for Ultralytics YOLO11n from scratch
   on the same images and time budget (optional, benchmark-only dependency,
   run offline).

Usage::

    python benchmarks/train.py            # about 8-9 minutes on 2 CPU cores
    python benchmarks/train.py --quick    # 4-6 minutes; one throughput round, and
                                          # 90 s budgets in which neither model
                                          # reaches mAP50 0.9 on 2 cores

Other processes on the machine distort the figures (torch's worker threads stall
when the cores are oversubscribed); run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from deepblock_nb.core.tiling import tile_windows  # noqa: E402
from deepblock_nb.ml.callbacks import Callback  # noqa: E402
from deepblock_nb.ml.data import TileItem, collate  # noqa: E402
from deepblock_nb.ml.models import build_model  # noqa: E402
from deepblock_nb.ml.train import TrainConfig, train_detector  # noqa: E402
from tests.ml.conftest import ShapeImage, make_shapes  # noqa: E402


class Quiet:
    """A job stand-in that keeps the history rows."""

    should_stop = False

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        pass

    def add_history(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)


def tiles(images: list[ShapeImage], grid: int) -> list[TileItem]:
    return [
        TileItem(s.path, tuple(int(v) for v in window), s.xyxy, s.category_ids, s.size)
        for s in images
        for window in tile_windows(s.size, grid, grid)
    ]


class BareTiles(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """What a hand-written loop does: open the file, crop the tile, resize, to tensor."""

    def __init__(self, items: list[TileItem], size: int) -> None:
        self.items, self.size = items, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from deepblock_nb.core.tiling import clip_boxes_to_window

        it = self.items[i]
        x, y, w, h = it.window
        with Image.open(it.image_path) as im:
            crop = im.convert("RGB").crop((x, y, x + w, y + h)).resize((self.size, self.size))
        local, idx = clip_boxes_to_window(it.xyxy, it.window, 0.5)
        s = self.size / w
        image = torch.from_numpy(np.array(crop)).permute(2, 0, 1).float() / 255
        return image, {
            "boxes": torch.from_numpy(local * s).float().reshape(-1, 4),
            "labels": torch.from_numpy(it.category_ids[idx]).long(),
        }


def bare_loop(items: list[TileItem], size: int, batch: int, steps: int, workers: int) -> float:
    """images/s of a plain torchvision loop (AdamW, no augmentation, no hooks)."""
    torch.manual_seed(0)
    model = build_model("small", 2, tile_size=size).module.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loader = torch.utils.data.DataLoader(
        BareTiles(items, size),
        batch_size=batch,
        shuffle=True,
        collate_fn=collate,
        num_workers=workers,
        drop_last=True,
    )
    done, n = 0, 0
    t0 = time.perf_counter()
    while done < steps:
        for images, targets in loader:
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            n += len(images)
            if done >= steps:
                break
    return n / (time.perf_counter() - t0)


def ours(
    items: list[TileItem], size: int, batch: int, epochs: int, workers: int | None, run: Path
) -> dict[str, float]:
    """images/s of train_detector (augmentation on), excluding the per-epoch score, and data wait."""
    job = Quiet()
    cfg = TrainConfig(epochs=epochs, tile_size=size, batch_size=batch, num_workers=workers, empty_rate=0.0)
    train_detector(job, items, [1, 2], run, config=cfg, model="small")
    ep = [r for r in job.rows if r["kind"] == "epoch"]
    steps = [r for r in job.rows if r["kind"] == "step"]
    train_s = sum(r["seconds"] for r in ep)
    return {
        "images_per_s": float(np.mean([r["images_per_s"] for r in ep])),
        "data_wait": float(np.mean([r["data_wait"] for r in ep])),
        "steps": len(steps),
        "epoch_seconds": train_s / len(ep),
        "workers": cfg.num_workers or 0,
    }


def throughput(tmp: Path, quick: bool) -> None:
    print("\n== 1. throughput: small preset, 256 px tiles, batch 8 ==", flush=True)
    images = make_shapes(
        tmp / "tp", 16 if quick else 24, (512, 512), objects=(4, 10), object_px=(24, 64), seed=1
    )
    items = tiles(images, 2)
    rounds = 1 if quick else 2
    epochs = 1 if quick else 2
    ratios, waits = [], {}
    for r in range(rounds):
        o = ours(items, 256, 8, epochs, None, tmp / f"run_tp{r}")
        steps = int(o["steps"])
        b = bare_loop(items, 256, 8, steps, 0)
        ratios.append(o["images_per_s"] / b)
        print(
            f"round {r + 1}: ours {o['images_per_s']:.1f} img/s ({o['workers']} reader threads, data wait "
            f"{100 * o['data_wait']:.0f}%), bare torchvision loop {b:.1f} img/s (DataLoader, 0 workers) "
            f"-> ratio {ratios[-1]:.2f}",
            flush=True,
        )
    for workers in (0, 1, 2):
        o = ours(items, 256, 8, 1, workers, tmp / f"run_w{workers}")
        waits[workers] = o
        print(
            f"ours with {workers} reader threads: {o['images_per_s']:.1f} img/s, "
            f"model waits for data {100 * o['data_wait']:.0f}% of the time",
            flush=True,
        )
    print(f"RESULT throughput ratio ours / bare: {np.median(ratios):.2f} (target >= 0.9)")


class Until(Callback):
    """Stops at mAP@0.5 >= target or after ``budget`` seconds; records when the target was met."""

    def __init__(self, target: float, budget: float) -> None:
        self.target, self.budget = target, budget
        self.start = time.perf_counter()
        self.reached: float | None = None
        self.best = 0.0

    def on_train_start(self, state: Any) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, state: Any, row: dict[str, Any]) -> None:
        elapsed = time.perf_counter() - self.start
        self.best = max(self.best, row["score"])
        print(
            f"  ours epoch {row['epoch']}: {elapsed:.0f} s, loss {row['loss']:.2f}, mAP50 {row['score']:.3f}",
            flush=True,
        )
        if row["score"] >= self.target and self.reached is None:
            self.reached = elapsed
            state.request_stop()
        if elapsed > self.budget:
            state.request_stop()


def write_yolo(root: Path, split: str, images: list[ShapeImage]) -> None:
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for s in images:
        w, h = s.size
        (root / "images" / split / s.path.name).write_bytes(s.path.read_bytes())
        lines = [
            f"{c - 1} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            for (x1, y1, x2, y2), c in zip(s.xyxy, s.category_ids)
        ]
        (root / "labels" / split / f"{s.path.stem}.txt").write_text("\n".join(lines))


def yolo(
    train: list[ShapeImage], val: list[ShapeImage], size: int, budget: float, tmp: Path
) -> tuple[float | None, float]:
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(tmp / "yolo_cfg")
    try:
        from ultralytics import YOLO, settings
    except ImportError:
        print("  ultralytics is not installed: YOLO11n skipped")
        return None, float("nan")
    settings.update({"sync": False})
    root = tmp / "yolo_ds"
    write_yolo(root, "train", train)
    write_yolo(root, "val", val)
    (root / "data.yaml").write_text(
        f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: square\n  1: disc\n"
    )
    model = YOLO("yolo11n.yaml")  # from scratch: no weights file
    model.train(
        data=str(root / "data.yaml"),
        epochs=1000,
        time=budget / 3600,
        imgsz=size,
        batch=8,
        device="cpu",
        workers=2,
        pretrained=False,
        amp=False,
        plots=False,
        project=str(tmp / "yolo_runs"),
        name="b",
        exist_ok=True,
        verbose=False,
        patience=1000,
    )
    import csv

    with open(tmp / "yolo_runs" / "b" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    reached, best = None, 0.0
    for r in rows:
        m = float(r["metrics/mAP50(B)"])
        best = max(best, m)
        print(f"  yolo epoch {r['epoch']}: {float(r['time']):.0f} s, mAP50 {m:.3f}")
        if m >= 0.9 and reached is None:
            reached = float(r["time"])
    return reached, best


def learning(tmp: Path, quick: bool) -> None:
    budget = 90.0 if quick else 210.0
    size = 256
    print(
        f"\n== 2. time to mAP50 >= 0.9 (budget {budget:.0f} s each, {size} px, from scratch) ==", flush=True
    )
    kw = {"objects": (1, 4), "object_px": (28, 64)}
    train = make_shapes(tmp / "lt", 96, (size, size), seed=21, **kw)  # type: ignore[arg-type]
    val = make_shapes(tmp / "lv", 24, (size, size), seed=22, **kw)  # type: ignore[arg-type]
    until = Until(0.9, budget)
    cfg = TrainConfig(epochs=60, tile_size=size, batch_size=8, num_workers=2)
    train_detector(
        Quiet(),
        tiles(train, 1),
        [1, 2],
        tmp / "run_learn",
        config=cfg,
        model="small",
        eval_items=tiles(val, 1),
        callbacks=[until],
    )
    y_reached, y_best = yolo(train, val, size, budget, tmp)

    def fmt(t: float | None, best: float) -> str:
        return f"{t:.0f} s" if t is not None else f"not reached in the budget (best mAP50 {best:.3f})"

    print(f"RESULT ours (small preset): {fmt(until.reached, until.best)}")
    print(f"RESULT YOLO11n from scratch: {fmt(y_reached, y_best)}")
    if until.reached and y_reached:
        print(f"RESULT time ratio ours / YOLO11n: {until.reached / y_reached:.2f} (below 1: ours is faster)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one throughput round and 90 s learning budgets")
    parser.add_argument("--only", choices=["throughput", "learning"], default=None)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, device cpu")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        if args.only in (None, "throughput"):
            throughput(tmp, args.quick)
        if args.only in (None, "learning"):
            learning(tmp, args.quick)
    print(f"\ntotal {math.ceil(time.perf_counter() - t0)} s")


if __name__ == "__main__":
    main()
