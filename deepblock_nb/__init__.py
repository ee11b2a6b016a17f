"""deepblock_nb: a JupyterLab workbench for object detection on very large images.

>>> import deepblock_nb as dbn
>>> project = dbn.Project.create("my-project", categories=["car", "person"])

Heavy modules (torch, the widgets) are imported only when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deepblock_nb.errors import (
    AnnotationError,
    ArgumentError,
    ArgumentTypeError,
    CategoryError,
    DecompressionBombError,
    DeepBlockError,
    DependencyError,
    DeviceMemoryError,
    EvaluationError,
    FormatError,
    ImageReadError,
    JobError,
    ModelError,
    PathError,
    ProjectError,
    ProjectExistsError,
    ProjectNotFoundError,
    RecordNotFoundError,
    UnsupportedFormatError,
    WindowError,
)

__version__ = "0.1.0"

__all__ = [
    "AnnotationError",
    "App",
    "ArgumentError",
    "ArgumentTypeError",
    "CategoryError",
    "DecompressionBombError",
    "DeepBlockError",
    "DependencyError",
    "Detections",
    "DeviceMemoryError",
    "EvaluationError",
    "FormatError",
    "ImageReadError",
    "JobError",
    "JobStatus",
    "ModelError",
    "PathError",
    "Project",
    "ProjectError",
    "ProjectExistsError",
    "ProjectNotFoundError",
    "RecordNotFoundError",
    "UnsupportedFormatError",
    "WindowError",
    "metrics",
    "open_image",
]

_LAZY = {
    "Project": ("deepblock_nb.project", "Project"),
    "Detections": ("deepblock_nb.core.detections", "Detections"),
    "JobStatus": ("deepblock_nb.jobs", "JobStatus"),
    "open_image": ("deepblock_nb.io.images", "open_image"),
    "metrics": ("deepblock_nb.metrics", None),
    "App": ("deepblock_nb.widgets", "App"),
}

if TYPE_CHECKING:
    from deepblock_nb import metrics
    from deepblock_nb.core.detections import Detections
    from deepblock_nb.io.images import open_image
    from deepblock_nb.jobs import JobStatus
    from deepblock_nb.project import Project
    from deepblock_nb.widgets import App


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deepblock_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
