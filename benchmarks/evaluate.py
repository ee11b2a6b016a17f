"""Benchmark: deepblock_nb.metrics.evaluate against pycocotools and faster-coco-eval.

    python benchmarks/evaluate.py            # 5,000 images, 20 boxes and 100 predictions each, 20 classes
    python benchmarks/evaluate.py --quick    # 500 images

Prints the time of each engine on the same boxes, the speed ratios and the largest
difference in any of the twelve COCO summary numbers. Times cover the evaluation
itself (ours: ``evaluate`` from lists of Detections, including its input handling;
pycocotools and faster-coco-eval: ``evaluate``, ``accumulate`` and ``summarize`` on
COCO objects already built, building them is reported apart).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _coco import run_cocoapi

from deepblock_nb.core.detections import Detections
from deepblock_nb.metrics import evaluate


def make_case(
    n_images: int, n_gt: int, n_pred: int, n_classes: int, seed: int = 0
) -> tuple[list[Detections], list[Detections]]:
    """Random images of 1000x1000 px: ground truth of all sizes; predictions are jittered
    copies of ground-truth boxes (some duplicated, some with the wrong class) and random boxes."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n_images):
        side = np.exp(rng.uniform(np.log(8), np.log(400), (n_gt, 2)))  # [G,2] small..large
        xy = rng.uniform(0, 1000, (n_gt, 2)) - side / 2
        g_xyxy = np.c_[xy, xy + side]
        g_cls = rng.integers(1, n_classes + 1, n_gt)
        n_true = n_pred // 2
        src = rng.integers(0, n_gt, n_true)
        jitter = rng.normal(0, 0.12, (n_true, 4)) * np.c_[side[src], side[src]]
        t_xyxy = g_xyxy[src] + jitter
        t_xyxy[:, 2:] = np.maximum(t_xyxy[:, 2:], t_xyxy[:, :2] + 1)
        t_cls = np.where(rng.random(n_true) < 0.9, g_cls[src], rng.integers(1, n_classes + 1, n_true))
        n_rand = n_pred - n_true
        r_side = np.exp(rng.uniform(np.log(8), np.log(400), (n_rand, 2)))
        r_xy = rng.uniform(0, 1000, (n_rand, 2))
        p_xyxy = np.r_[t_xyxy, np.c_[r_xy, r_xy + r_side]]
        p_cls = np.r_[t_cls, rng.integers(1, n_classes + 1, n_rand)]
        score = np.r_[rng.beta(4, 2, n_true), rng.beta(2, 4, n_rand)].round(3)  # rounded: ties
        gts.append(Detections(g_xyxy, g_cls))
        preds.append(Detections(p_xyxy, p_cls, score))
    return gts, preds


def coco_dicts(
    gts: list[Detections], preds: list[Detections], cat_ids: list[int]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The same boxes as a COCO ground-truth dataset and a results list (xywh, area = w*h)."""
    anns: list[dict[str, Any]] = []
    res: list[dict[str, Any]] = []
    for i, (g, p) in enumerate(zip(gts, preds)):
        for b, c in zip(g.xywh.tolist(), g.class_id.tolist()):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": c,
                    "bbox": b,
                    "area": b[2] * b[3],
                    "iscrowd": 0,
                }
            )
        for b, c, s in zip(p.xywh.tolist(), p.class_id.tolist(), p.confidence.tolist()):  # type: ignore[union-attr]
            res.append({"image_id": i + 1, "category_id": c, "bbox": b, "score": s})
    dataset = {
        "images": [{"id": i + 1, "width": 1000, "height": 1000} for i in range(len(gts))],
        "annotations": anns,
        "categories": [{"id": c, "name": str(c)} for c in cat_ids],
    }
    return dataset, res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 images instead of 5,000")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="runs of our engine (median used)")
    args = parser.parse_args()
    n_images = args.images or (500 if args.quick else 5000)
    n_gt, n_pred, n_classes = 20, 100, 20
    print(f"{n_images} images, {n_gt} ground-truth boxes and {n_pred} predictions each, {n_classes} classes")
    gts, preds = make_case(n_images, n_gt, n_pred, n_classes)

    ours_t = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        report = evaluate(gts, preds)
        ours_t.append(time.perf_counter() - t0)
    ours = float(np.median(ours_t))
    print(f"deepblock_nb      evaluate {ours:8.3f} s   (median of {args.repeat}, best {min(ours_t):.3f} s)")

    dataset, res = coco_dicts(gts, preds, list(range(1, n_classes + 1)))
    results = {}
    for module in ("pycocotools", "faster_coco_eval"):
        try:
            stats, load, took = run_cocoapi(module, dataset, res)
        except ImportError:
            print(f"{module:17s} not installed")
            continue
        results[module] = (stats, took)
        print(f"{module:17s} evaluate {took:8.3f} s   (+{load:.3f} s building COCO objects)")
    for module, (stats, took) in results.items():
        diff = float(np.max(np.abs(report.stats - stats)))
        print(f"vs {module:17s} speed-up {took / ours:6.2f}x   largest summary difference {diff:.3g}")
    print("stats", np.array2string(report.stats, precision=4))


if __name__ == "__main__":
    main()
