"""COCO scoring through pycocotools or faster-coco-eval, for the benchmarks (imported
by name: the benchmarks run as scripts, so this folder is on ``sys.path``)."""

from __future__ import annotations

import contextlib
import io
import time
from typing import Any

import numpy as np


def run_cocoapi(
    module: str, dataset: dict[str, Any], res: list[dict[str, Any]]
) -> tuple[np.ndarray, float, float]:
    """(stats, seconds to build the COCO objects, seconds to evaluate) with pycocotools or faster-coco-eval."""
    import copy

    if module == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(res))
        t1 = time.perf_counter()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        t2 = time.perf_counter()
    return np.asarray(ev.stats[:12], float), t1 - t0, t2 - t1


def coco_stats(dataset: dict[str, Any], res: list[dict[str, Any]], module: str = "pycocotools") -> np.ndarray:
    """``(12,)`` COCOeval bbox stats of results ``res`` (xywh) against ``dataset``; zeros when ``res`` is empty."""
    if not res:
        return np.zeros(12)
    return run_cocoapi(module, dataset, res)[0]
