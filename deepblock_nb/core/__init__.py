"""Pure numpy geometry: boxes, tiling, metrics. Imports nothing above numpy."""

from deepblock_nb.core.detections import Detections

__all__ = ["Detections"]
