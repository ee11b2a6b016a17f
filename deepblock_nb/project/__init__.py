"""The Project: one facade over the data, training and prediction of a project folder.

Every widget action and every cell call goes through these methods.
"""

import importlib
from typing import Any

from deepblock_nb.project._annotations import AnnotationIOMixin, ImportReport
from deepblock_nb.project._core import ProjectCore
from deepblock_nb.project._prediction import PredictionMixin
from deepblock_nb.project._training import TrainingMixin

__all__ = ["ImportReport", "Project"]


class Project(TrainingMixin, PredictionMixin, AnnotationIOMixin, ProjectCore):
    """A deepblock_nb project folder: ``Project.create(path, categories=[...])`` or ``Project.open(path)``.

    Layout on disk::

        project.db   SQLite (WAL): categories, images, boxes, grids, runs, predictions
        images/      imported images (copies; ``copy=False`` keeps a reference)
        cache/       derived tiled caches of images without random access; deletable
        runs/<id>/   config.json, last.pt, best.pt

    Every change is one transaction; a killed kernel leaves everything committed
    before it. The object is safe to use from cells and background jobs at once.
    """

    def app(self) -> Any:
        """The whole workbench in one widget: Preprocess, Divide, Train, Evaluate, Predict."""
        # imported by name: the widgets layer sits above the project
        return importlib.import_module("deepblock_nb.widgets").App(self)
