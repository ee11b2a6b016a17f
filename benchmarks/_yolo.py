"""Ultralytics YOLO11n from scratch, offline: the peer that the training benchmarks
measure against (benchmark-only dependency, AGPL; imported by name: the benchmarks
run as scripts, so this folder is on ``sys.path``)."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Labelled(Protocol):
    """An image file with its boxes: ``xyxy`` ``(N, 4)`` pixels, ``category_ids`` ``(N,)`` >= 1."""

    path: Path
    size: tuple[int, int]  # (width, height)
    xyxy: np.ndarray
    category_ids: np.ndarray


@dataclass
class YoloRun:
    model: Any  # the ultralytics YOLO object, holding the best weights after training
    rows: list[dict[str, str]]  # results.csv: one row per epoch (epoch, time, metrics/mAP50(B), ...)
    seconds: float  # wall time of the whole ``train`` call, final validation included


def write_yolo(root: Path, split: str, images: Sequence[Labelled]) -> None:
    """``root/images/<split>`` and ``root/labels/<split>``: category id ``c`` becomes YOLO class ``c - 1``."""
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


def train_yolo(
    train: Sequence[Labelled],
    val: Sequence[Labelled],
    names: Sequence[str],
    size: int,
    budget_s: float,
    tmp: Path,
    batch: int = 8,
    workers: int = 2,
) -> YoloRun | None:
    """Train YOLO11n from scratch (``yolo11n.yaml``, no weights file) on CPU for ``budget_s`` seconds.

    Ultralytics' ``time=`` budget (hours) sets the epochs after the first one so
    that its schedule ends in time. Returns None when ultralytics is not installed.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(tmp / "yolo_cfg")
    try:
        from ultralytics import YOLO, settings
    except ImportError:
        print("  ultralytics is not installed: YOLO11n skipped")
        return None
    settings.update({"sync": False})
    root = tmp / "yolo_ds"
    write_yolo(root, "train", train)
    write_yolo(root, "val", val)
    lines = "".join(f"  {i}: {n}\n" for i, n in enumerate(names))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{lines}")
    model = YOLO("yolo11n.yaml")  # from scratch: no weights file
    t0 = time.perf_counter()
    model.train(
        data=str(root / "data.yaml"),
        epochs=1000,
        time=budget_s / 3600,
        imgsz=size,
        batch=batch,
        device="cpu",
        workers=workers,
        pretrained=False,
        amp=False,  # the AMP check would download yolo11n.pt
        plots=False,
        project=str(tmp / "yolo_runs"),
        name="b",
        exist_ok=True,
        verbose=False,
        patience=1000,
    )
    seconds = time.perf_counter() - t0
    with open(tmp / "yolo_runs" / "b" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    return YoloRun(model, rows, seconds)


def predict_coco(
    model: Any, images: Sequence[Labelled], image_ids: Sequence[int], size: int, conf: float = 0.001
) -> list[dict[str, Any]]:
    """A COCO results list (``bbox`` xywh, ``category_id`` = YOLO class + 1) of ``model`` on ``images``."""
    results: list[dict[str, Any]] = []
    for s, image_id in zip(images, image_ids):
        (r,) = model.predict(str(s.path), imgsz=size, conf=conf, device="cpu", verbose=False, max_det=300)
        xyxy = r.boxes.xyxy.cpu().numpy()
        for (x1, y1, x2, y2), c, score in zip(
            xyxy.tolist(), r.boxes.cls.cpu().numpy().tolist(), r.boxes.conf.cpu().numpy().tolist()
        ):
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(c) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    return results
