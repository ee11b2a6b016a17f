"""The model presets by name: one line on each and their default training settings.

Plain data, without torch: ``ml.models`` builds its registry from these entries
(adding how each model is built), and the widgets list them without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AUTO", "AUTO_SUMMARY", "PRESET_INFO", "PresetInfo", "preset_summaries"]

#: the name ``project.train(model=...)`` takes to let the device decide
AUTO = "auto"
AUTO_SUMMARY = (
    "small on a CPU; Faster R-CNN ResNet50 on a CUDA GPU when its COCO or ImageNet weights are available"
)


@dataclass(frozen=True)
class PresetInfo:
    """A preset's name, one line on it, and its default tile size (pixels), lr and batch size."""

    name: str
    summary: str
    tile_size: int = 512
    lr: float = 1e-3
    batch_size: int = 8


PRESET_INFO: tuple[PresetInfo, ...] = (
    PresetInfo("small", "fast on a CPU; uses MobileNet/SSDlite weights when cached or fetchable", 320, 2e-3),
    PresetInfo("ssdlite", "SSDlite-MobileNetV3 (COCO / ImageNet / scratch)", 320, 2e-3),
    PresetInfo("fcos_mobilenet_v2", "FCOS + MobileNetV2-FPN", 320, 1e-3),
    PresetInfo("fcos_mobilenet_v3", "FCOS + MobileNetV3-FPN", 320, 1e-3),
    PresetInfo("fasterrcnn_mobilenet_v3", "Faster R-CNN + MobileNetV3-Large-FPN", 512, 1e-3),
    PresetInfo("fasterrcnn_resnet50_v2", "Faster R-CNN + ResNet50-FPN v2 (accurate, GPU)", 640, 2e-4),
    PresetInfo("retinanet_resnet50_v2", "RetinaNet + ResNet50-FPN v2 (GPU)", 640, 2e-4),
    PresetInfo("fcos_resnet50", "FCOS + ResNet50-FPN (GPU)", 640, 2e-4),
)


def preset_summaries(include_auto: bool = True) -> dict[str, str]:
    """``{name: one line}`` for every preset, ``"auto"`` first when ``include_auto``."""
    out = {AUTO: AUTO_SUMMARY} if include_auto else {}
    out.update((p.name, p.summary) for p in PRESET_INFO)
    return out
