"""The training score: COCO mAP of a model on held-out tiles, in one place."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from deepblock_nb.core.detections import Detections
from deepblock_nb.ml._loader import ThreadLoader
from deepblock_nb.ml.data import TileDataset, collate

__all__ = ["coco_map", "score_model"]


def coco_map(ground_truth: Sequence[Detections], predictions: Sequence[Detections]) -> tuple[float, float]:
    """COCO ``(mAP@0.5, mAP@[.5:.95])`` over images (lists aligned by image); -1 without ground truth."""
    from deepblock_nb.core.metrics import evaluate

    report = evaluate(list(ground_truth), list(predictions))
    return float(report.map50), float(report.map)


@torch.no_grad()
def score_model(
    model: nn.Module,
    dataset: TileDataset,
    device: torch.device,
    *,
    batch_size: int = 8,
    num_workers: int = 2,
    should_stop: Callable[[], bool] = lambda: False,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[float, float] | None:
    """``(mAP@0.5, mAP@[.5:.95])`` of ``model`` on every tile of ``dataset`` (no augmentation).

    Boxes are compared in the frame of the tile as the dataset gives it. Returns
    None when a stop was requested before the end.
    """
    was_training = model.training
    model.eval()
    gts: list[Detections] = []
    preds: list[Detections] = []
    try:
        loader = ThreadLoader(dataset, range(len(dataset)), batch_size, collate, num_workers=num_workers)
        for images, targets in loader:
            if should_stop():
                return None
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                out = model([im.to(device, non_blocking=True) for im in images])
            for t, o in zip(targets, out):
                gts.append(Detections(t["boxes"].double().numpy(), t["labels"].numpy()))
                preds.append(
                    Detections(
                        o["boxes"].detach().float().cpu().double().numpy(),
                        o["labels"].detach().cpu().numpy(),
                        o["scores"].detach().float().cpu().double().numpy(),
                    )
                )
    finally:
        model.train(was_training)
    return coco_map(gts, preds)
