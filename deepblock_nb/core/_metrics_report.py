"""``EvaluationReport``: the result of an evaluation, renderable and serialisable.

pandas and matplotlib are imported only by the methods that need them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.errors import DeepBlockError

if TYPE_CHECKING:
    import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_CLASS_COLUMNS = ("gt", "ap", "ap50", "precision", "recall", "f1", "tp", "fp", "fn")

#: ``EvaluationReport.threshold_rule`` values: the headline is at the best-F1 threshold
#: (``evaluate(threshold=None)``), or at the threshold the caller gave.
BEST_F1 = "best F1"
GIVEN = "given"


@dataclass(frozen=True)
class ThresholdScores:
    """Precision, recall, F1 and counts over all categories (micro-averaged) at one threshold.

    A prediction counts when its confidence is >= ``threshold``; matching is at the
    report's ``iou_threshold``; a ratio with a zero denominator is 0.0.
    """

    threshold: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdScores:
        return cls(
            float(data["threshold"]),
            float(data["precision"]),
            float(data["recall"]),
            float(data["f1"]),
            int(data["tp"]),
            int(data["fp"]),
            int(data["fn"]),
        )


@dataclass(eq=False)
class ClassScores:
    """Per-category figures, one entry per evaluated category (sorted by id).

    ``ap``/``ap50`` follow COCO (area all, largest maxDets) and are NaN for a category
    without ground truth; precision, recall, F1 and the counts are at the report's
    confidence and IoU thresholds.
    """

    class_id: IntArray
    name: list[str]
    gt: IntArray
    ap: FloatArray
    ap50: FloatArray
    precision: FloatArray
    recall: FloatArray
    f1: FloatArray
    tp: IntArray
    fp: IntArray
    fn: IntArray


@dataclass(eq=False)
class Curves:
    """Curves per category (rows follow ``ClassScores.class_id``).

    Attributes:
        recall: ``(R,)`` recall points 0, 0.01, ..., 1 (COCO's recall thresholds).
        precision: ``(K, R)`` COCO-interpolated precision at IoU 0.5 (area all, largest
            maxDets); NaN rows for categories without ground truth.
        confidence: ``(C,)`` confidence thresholds 0, 0.01, ..., 1.
        precision_conf, recall_conf, f1_conf: ``(K, C)`` at each confidence threshold,
            at the report's IoU threshold.
        precision_conf_all, recall_conf_all, f1_conf_all: ``(C,)`` over all categories.
    """

    recall: FloatArray
    precision: FloatArray
    confidence: FloatArray
    precision_conf: FloatArray
    recall_conf: FloatArray
    f1_conf: FloatArray
    precision_conf_all: FloatArray
    recall_conf_all: FloatArray
    f1_conf_all: FloatArray


@dataclass(eq=False)
class EvaluationReport:
    """Scores of predictions against ground truth over a set of images.

    The twelve COCO numbers (``map`` ... ``ar_large``) equal pycocotools' ``COCOeval``
    bbox stats, -1 where it gives -1 (no ground truth in that area range).
    ``precision``, ``recall``, ``f1`` and the TP/FP/FN counts (the headline) are over
    all categories (micro-averaged) for predictions with confidence >= ``threshold``
    at IoU ``iou_threshold``; a ratio with a zero denominator is 0.0. ``best_threshold``
    is the threshold of the confidence grid 0, 0.01, ..., 1 that maximises that F1
    (``best_f1``; of equal F1 the highest threshold).

    ``threshold_rule`` says where ``threshold`` comes from: ``"best F1"`` (it is
    ``best_threshold``, the default of :func:`~deepblock_nb.core.metrics.evaluate`) or
    ``"given"`` (the caller's). ``at_threshold`` holds the same overall figures at a
    second threshold (the user's slider, say), or ``None`` when none was asked for.
    """

    map: float
    map50: float
    map75: float
    map_small: float
    map_medium: float
    map_large: float
    ar1: float
    ar10: float
    ar100: float
    ar_small: float
    ar_medium: float
    ar_large: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    threshold: float
    iou_threshold: float
    best_threshold: float
    best_f1: float
    n_images: int
    max_dets: tuple[int, ...]
    classes: ClassScores = field(repr=False)
    curves: Curves = field(repr=False)
    threshold_rule: str = GIVEN
    at_threshold: ThresholdScores | None = None

    @property
    def threshold_label(self) -> str:
        """Where the headline figures are, in words: "at 0.16, the best-F1 threshold"."""
        if self.threshold_rule == BEST_F1:
            return f"at {self.threshold:.2f}, the best-F1 threshold"
        return f"at the given threshold {self.threshold:.2f}"

    @property
    def stats(self) -> FloatArray:
        """``(12,)`` the COCO summary numbers in ``COCOeval.stats`` order."""
        return np.array([getattr(self, n) for n in _STAT_FIELDS])

    @property
    def per_class(self) -> pd.DataFrame:
        """One row per category (index: category id): name, gt count, AP, AP50, precision, recall, F1, TP, FP, FN."""
        import pandas as pd

        c = self.classes
        data: dict[str, Any] = {"name": c.name}
        data.update({col: getattr(c, col) for col in _CLASS_COLUMNS})
        return pd.DataFrame(data, index=pd.Index(c.class_id, name="class_id"))

    def to_frame(self) -> pd.DataFrame:
        """``per_class`` plus a row ``"all"`` with the overall figures (AP = mAP).

        A last column ``threshold`` says at which confidence threshold each row's
        precision, recall, F1 and counts are. With ``at_threshold``, a further row
        ``"all at <t>"`` (class id -2, no AP) gives the overall figures there.
        """
        import pandas as pd

        frame = self.per_class
        rows: list[dict[str, Any]] = [
            {
                "name": "all",
                "gt": int(self.classes.gt.sum()),
                "ap": self.map,
                "ap50": self.map50,
                "precision": self.precision,
                "recall": self.recall,
                "f1": self.f1,
                "tp": self.tp,
                "fp": self.fp,
                "fn": self.fn,
            }
        ]
        at = self.at_threshold
        if at is not None:
            rows.append(
                {
                    "name": f"all at {at.threshold:.2f}",
                    "gt": int(self.classes.gt.sum()),
                    "ap": math.nan,
                    "ap50": math.nan,
                    **{n: getattr(at, n) for n in ("precision", "recall", "f1", "tp", "fp", "fn")},
                }
            )
        total = pd.DataFrame(rows, index=pd.Index([-1, -2][: len(rows)], name="class_id"))
        out = pd.concat([frame, total])
        out["threshold"] = [self.threshold] * (len(frame) + 1) + ([at.threshold] if at is not None else [])
        return out

    def plot(self) -> Any:
        """A matplotlib figure: precision-recall (IoU 0.5) and F1-vs-confidence per category.

        The arrays behind it are in ``curves``; a widget may draw them with bqplot.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DeepBlockError(
                "report.plot() needs matplotlib: pip install matplotlib "
                "(or draw report.curves with another plotting library)"
            ) from exc
        cv, c = self.curves, self.classes
        fig, (ax_pr, ax_f1) = plt.subplots(1, 2, figsize=(11, 4.2))
        for k, name in enumerate(c.name):
            if not np.all(np.isnan(cv.precision[k])):
                ax_pr.plot(cv.recall, cv.precision[k], lw=1, label=f"{name} AP50={c.ap50[k]:.3f}")
            ax_f1.plot(cv.confidence, cv.f1_conf[k], lw=1, label=name)
        ax_f1.plot(cv.confidence, cv.f1_conf_all, lw=2.5, color="k", label="all")
        ax_f1.axvline(
            self.best_threshold, color="k", ls=":", lw=1, label=f"best F1 {self.best_threshold:.2f}"
        )
        if self.threshold_rule != BEST_F1:
            ax_f1.axvline(
                self.threshold, color="tab:blue", ls="--", lw=1, label=f"headline {self.threshold:.2f}"
            )
        if self.at_threshold is not None:
            t = self.at_threshold.threshold
            ax_f1.axvline(t, color="tab:red", ls="--", lw=1, label=f"your threshold {t:.2f}")
        ax_pr.set(
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1),
            ylim=(0, 1.02),
            title=f"Precision-recall, IoU 0.5 (mAP50 {self.map50:.3f})",
        )
        ax_f1.set(
            xlabel="confidence threshold",
            ylabel="F1",
            xlim=(0, 1),
            ylim=(0, 1.02),
            title=f"F1 vs confidence (best {self.best_f1:.3f} at {self.best_threshold:.2f})\n"
            f"precision, recall, F1 {self.threshold_label}",
        )
        if len(c.name) <= 20:
            ax_pr.legend(fontsize=7, loc="lower left")
            ax_f1.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        plt.close(fig)  # returned, not shown twice in a notebook
        return fig

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN written as ``None``); see :meth:`from_dict`."""
        out: dict[str, Any] = {"version": 1}
        for f in fields(self):
            if f.name in _NESTED:
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else _plain(value)
        out["classes"] = {f.name: _plain(getattr(self.classes, f.name)) for f in fields(ClassScores)}
        out["curves"] = {f.name: _plain(getattr(self.curves, f.name)) for f in fields(Curves)}
        out["threshold_rule"] = self.threshold_rule
        out["at_threshold"] = None if self.at_threshold is None else self.at_threshold.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        """Rebuild a report written by :meth:`to_dict`.

        A report written before ``threshold_rule`` and ``at_threshold`` existed reads
        as ``"given"`` (it was scored at the caller's threshold) and ``None``.
        """
        if data.get("version") != 1:
            raise DeepBlockError(f"evaluation record has unknown version {data.get('version')!r}; expected 1")
        int_cols = {"class_id", "gt", "tp", "fp", "fn"}
        columns: dict[str, Any] = {}
        for f in fields(ClassScores):
            raw = data["classes"][f.name]
            columns[f.name] = (
                list(raw) if f.name == "name" else _array(raw, np.int64 if f.name in int_cols else np.float64)
            )
        classes = ClassScores(**columns)
        arrays = {f.name: _array(data["curves"][f.name], np.float64) for f in fields(Curves)}
        for name in ("precision", "precision_conf", "recall_conf", "f1_conf"):  # (K, ·) even when K = 0
            width = len(arrays["recall"] if name == "precision" else arrays["confidence"])
            arrays[name] = arrays[name].reshape(-1, width)
        curves = Curves(**arrays)
        scalars = {f.name: data[f.name] for f in fields(cls) if f.name not in _NESTED}
        scalars["max_dets"] = tuple(int(m) for m in scalars["max_dets"])
        for name in ("tp", "fp", "fn", "n_images"):
            scalars[name] = int(scalars[name])
        for name, value in scalars.items():
            if name not in ("tp", "fp", "fn", "n_images", "max_dets"):
                scalars[name] = math.nan if value is None else float(value)
        at = data.get("at_threshold")
        return cls(
            **scalars,
            classes=classes,
            curves=curves,
            threshold_rule=str(data.get("threshold_rule", GIVEN)),
            at_threshold=None if at is None else ThresholdScores.from_dict(at),
        )


_NESTED = ("classes", "curves", "threshold_rule", "at_threshold")  # not plain numbers in to_dict

_STAT_FIELDS = (
    "map", "map50", "map75", "map_small", "map_medium", "map_large",
    "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large",
)  # fmt: skip


def _plain(value: Any) -> Any:
    """numpy values to JSON-ready Python values, NaN to None."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return [_plain(v) for v in value.tolist()] if value.ndim == 1 else [_plain(r) for r in value]
        return value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def _array(values: Any, dtype: type) -> Any:
    if dtype is np.float64:
        return np.array(_nan(values), dtype=np.float64)
    return np.array(values, dtype=dtype)


def _nan(values: Any) -> Any:
    if isinstance(values, list):
        return [_nan(v) for v in values]
    return math.nan if values is None else values
