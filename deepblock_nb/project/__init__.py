"""The Project: one facade over the data, training and prediction of a project folder.

``_project.py`` holds the facade (argument checks, events); the store's
repositories hold the data (``deepblock_nb.store``); ``_training.py``,
``_prediction.py`` and ``_annotations.py`` are the services it composes.
"""

from deepblock_nb.project._annotations import ImportReport
from deepblock_nb.project._project import Project

__all__ = ["ImportReport", "Project"]
