from __future__ import annotations

import numpy as np
import pytest

from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import ArgumentError, ArgumentTypeError


def _det(n: int, conf: bool = True) -> Detections:
    xyxy = np.arange(4 * n, dtype=float).reshape(n, 4) + np.array([0, 0, 1, 1])
    return Detections(xyxy, np.arange(n) + 1, np.linspace(0.1, 0.9, n) if conf else None, np.arange(n) + 10)


@pytest.mark.parametrize("n", [0, 1, 5])
def test_shapes_dtypes_and_len(n: int) -> None:
    d = _det(n)
    assert len(d) == n and d.xyxy.shape == (n, 4) and d.xyxy.dtype == np.float64
    assert d.class_id.dtype == np.int64 and d.confidence is not None and d.confidence.shape == (n,)


def test_validation_rejects_bad_shapes() -> None:
    with pytest.raises(ArgumentError, match=r"\(N, 4\)"):
        Detections(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ArgumentError, match="class_id"):
        Detections(np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(ArgumentError, match="confidence"):
        Detections(np.zeros((1, 4)), np.zeros(1), np.zeros(2))
    with pytest.raises(ArgumentError, match="integers"):
        Detections(np.zeros((1, 4)), np.array([1.5]))


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (([[0, 0, 1, 1], [0, 0, 1]], [1, 2]), ArgumentError, "xyxy"),  # ragged rows
        (([["a", 0, 1, 1]], [1]), ArgumentError, "xyxy"),
        (([[0, 0, 1, 1]], ["car"]), ArgumentTypeError, "class_id"),  # names instead of ids
        (([[0, 0, 1, 1]], [None]), ArgumentTypeError, "class_id"),
        (([[0, 0, 1, 1]], [1], ["high"]), ArgumentTypeError, "confidence"),
        (([[0, 0, 1, 1]], [np.nan]), ArgumentError, "integers"),
    ],
)
def test_bad_values_raise_our_errors(args, error, match) -> None:
    with pytest.raises(error, match=match):
        Detections(*args)


def test_empty_merge_and_mask_indexing() -> None:
    e = Detections.empty()
    assert len(e) == 0 and e.confidence is None
    assert Detections.empty(with_confidence=True).confidence is not None
    m = Detections.merge([_det(2), _det(3), Detections.empty(with_confidence=True)])
    assert len(m) == 5 and m.confidence is not None and m.ids is None  # empty() has no ids
    assert Detections.merge([]) == Detections.empty()
    mixed = Detections.merge([_det(2), _det(1, conf=False)])
    assert mixed.confidence is None
    d = _det(4)
    sub = d[d.confidence > 0.5]  # type: ignore[operator]
    assert len(sub) == 2 and sub.ids.tolist() == [12, 13]  # type: ignore[union-attr]
    assert d[1].class_id.tolist() == [2] and len(d[1:3]) == 2


def test_xywh_area_offset_and_frame() -> None:
    d = Detections.from_xywh([[10, 20, 5, 4]], [3], [0.5])
    assert d.xyxy.tolist() == [[10, 20, 15, 24]] and d.xywh.tolist() == [[10, 20, 5, 4]]
    assert d.area.tolist() == [20.0]
    assert d.with_offset(100, 200).xyxy.tolist() == [[110, 220, 115, 224]]
    assert d.xyxy.tolist() == [[10, 20, 15, 24]]  # unchanged
    f = d.to_frame(names={3: "car"})
    assert list(f.columns) == ["x1", "y1", "x2", "y2", "class_id", "category", "confidence"]
    assert f.loc[0, "category"] == "car"
    assert len(Detections.empty().to_frame()) == 0


def test_iteration_is_refused_to_avoid_per_box_objects() -> None:
    with pytest.raises(ArgumentTypeError):
        list(_det(2))  # type: ignore[call-overload]
