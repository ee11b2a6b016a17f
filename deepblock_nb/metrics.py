"""Evaluation scores: ``dbn.metrics.evaluate(ground_truth, predictions) -> EvaluationReport``.

The engine lives in :mod:`deepblock_nb.core.metrics` (numpy only); see there for details.
"""

from deepblock_nb.core.metrics import (
    ClassScores,
    Curves,
    EvaluationError,
    EvaluationReport,
    ThresholdScores,
    evaluate,
)

__all__ = ["ClassScores", "Curves", "EvaluationError", "EvaluationReport", "ThresholdScores", "evaluate"]
