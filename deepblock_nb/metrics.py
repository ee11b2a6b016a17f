"""Evaluation scores: ``dbn.metrics.evaluate(ground_truth, predictions) -> EvaluationReport``, and
``dbn.metrics.errors(ground_truth, predictions) -> ErrorAnalysis`` (the false positives, missed boxes
and confusions at a threshold, with a confusion matrix).

The engine lives in :mod:`deepblock_nb.core.metrics` (numpy only); see there for details.
"""

from deepblock_nb.core.metrics import (
    ClassScores,
    Curves,
    ErrorAnalysis,
    EvaluationError,
    EvaluationReport,
    ThresholdScores,
    errors,
    evaluate,
)

__all__ = [
    "ClassScores",
    "Curves",
    "ErrorAnalysis",
    "EvaluationError",
    "EvaluationReport",
    "ThresholdScores",
    "errors",
    "evaluate",
]
