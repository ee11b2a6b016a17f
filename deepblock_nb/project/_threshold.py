"""The prediction threshold of a project: the user's, else the newest evaluation's best-F1 one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deepblock_nb.core.metrics import DEFAULT_THRESHOLD
from deepblock_nb.project._checks import check_threshold

if TYPE_CHECKING:
    from deepblock_nb.store import Database

__all__ = ["EVALUATED_THRESHOLD_KEY", "USER_THRESHOLD_KEY", "ThresholdSetting"]

USER_THRESHOLD_KEY = "threshold"
EVALUATED_THRESHOLD_KEY = "evaluated_threshold"


class ThresholdSetting:
    """``project.threshold`` (a mixin of :class:`~deepblock_nb.Project`)."""

    if TYPE_CHECKING:  # what it uses of the Project
        _db: Database

        def _emit(self, topic: str, **payload: Any) -> None: ...

    @property
    def threshold(self) -> float:
        """The confidence threshold (the slider) applied to stored predictions.

        The user's value once one is set (``project.threshold = 0.7``, or a move of the Predict slider); until
        then the best-F1 threshold of the newest evaluation (``report.best_threshold``), so each evaluation
        moves it; before any, 0.5. Both are kept in the project. ``project.threshold = None`` forgets the
        user's value and follows the evaluations again.
        """
        user = self._db.get_meta(USER_THRESHOLD_KEY)
        if user is not None:
            return float(user)
        evaluated = self._db.get_meta(EVALUATED_THRESHOLD_KEY)
        return DEFAULT_THRESHOLD if evaluated is None else float(evaluated)

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        if value is not None:
            value = check_threshold(value)
        self._db.set_meta(USER_THRESHOLD_KEY, value)  # None is stored as JSON null: not set
        self._emit("threshold", value=self.threshold)

    def _set_evaluated_threshold(self, value: float) -> None:
        """Record the newest evaluation's best-F1 threshold (joins the caller's transaction)
        and announce the effective threshold after the commit when it moved."""
        before = self.threshold
        self._db.set_meta(EVALUATED_THRESHOLD_KEY, float(value))
        after = self.threshold
        if after != before:
            self._emit("threshold", value=after)
