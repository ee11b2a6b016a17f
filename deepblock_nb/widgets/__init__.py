"""The workbench's widgets (ipywidgets, ipycanvas, bqplot, anywidget); never imports torch.

Every widget takes a Project, calls its methods for every action and follows its
events; ``App(project)`` puts them all in one tabbed widget.
"""

from deepblock_nb.widgets.app import App, CategoryEditor, ImportPanel
from deepblock_nb.widgets.download import DownloadButton
from deepblock_nb.widgets.labeler import Labeler
from deepblock_nb.widgets.predict import PredictPanel
from deepblock_nb.widgets.scorecard import EvaluatePanel, Scorecard
from deepblock_nb.widgets.statistics import Statistics
from deepblock_nb.widgets.tiling import TilingControls
from deepblock_nb.widgets.training import TrainingPanel
from deepblock_nb.widgets.webcam import Webcam

__all__ = [
    "App",
    "CategoryEditor",
    "DownloadButton",
    "EvaluatePanel",
    "ImportPanel",
    "Labeler",
    "PredictPanel",
    "Scorecard",
    "Statistics",
    "TilingControls",
    "TrainingPanel",
    "Webcam",
]
