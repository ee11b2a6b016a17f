"""The pure view <-> image geometry of the canvas widgets."""

from __future__ import annotations

import numpy as np
import pytest

from deepblock_nb.errors import ArgumentError
from deepblock_nb.widgets._viewport import (
    MAX_SCALE,
    Viewport,
    box_from_drag,
    choose_level,
    convert,
    fit,
    hit_test,
    pan,
    render_plan,
    zoom_at,
)


@pytest.mark.parametrize(
    ("vp", "view_xy", "image_xy"),
    [
        (Viewport((100, 50), (200, 100), 2.0, 0.0, 0.0), (0, 0), (0, 0)),
        (Viewport((100, 50), (200, 100), 2.0, 0.0, 0.0), (200, 100), (100, 50)),
        (Viewport((1000, 1000), (100, 100), 0.5, 10.0, 20.0), (50, 50), (110, 120)),
        (Viewport((10, 10), (800, 600), 8.0, -5.0, 0.0), (40, 8), (0, 1)),
    ],
)
def test_convert_points(vp: Viewport, view_xy: tuple, image_xy: tuple) -> None:
    np.testing.assert_allclose(convert(vp, view_xy, "image"), image_xy)
    np.testing.assert_allclose(convert(vp, image_xy, "view"), view_xy)


def test_convert_boxes_and_empty_and_bad_shape() -> None:
    vp = Viewport((100, 100), (50, 50), 0.5, 10, 20)
    boxes = np.array([[10, 20, 30, 60], [0, 0, 100, 100]], float)
    back = convert(vp, convert(vp, boxes, "view"), "image")
    np.testing.assert_allclose(back, boxes)
    assert convert(vp, np.zeros((0, 4)), "view").shape == (0, 4)
    with pytest.raises(ArgumentError, match="shape"):
        convert(vp, [1, 2, 3], "view")
    with pytest.raises(ArgumentError, match="to must be"):
        convert(vp, [1, 2], "canvas")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("image_wh", "canvas_wh"),
    [((400, 300), (800, 560)), ((3000, 2000), (800, 560)), ((1, 1), (800, 560)), ((100, 1000), (800, 560))],
)
def test_fit_shows_whole_image_centred(image_wh: tuple, canvas_wh: tuple) -> None:
    vp = fit(image_wh, canvas_wh)
    corners = convert(vp, [[0, 0], list(image_wh)], "view")
    assert corners.min() >= -1e-9
    assert corners[1, 0] <= canvas_wh[0] + 1e-9 and corners[1, 1] <= canvas_wh[1] + 1e-9
    # touches two opposite canvas edges along one axis, centred along both
    centre = convert(vp, [image_wh[0] / 2, image_wh[1] / 2], "view")
    np.testing.assert_allclose(centre, [canvas_wh[0] / 2, canvas_wh[1] / 2])
    assert np.isclose(corners[1, 0] - corners[0, 0], canvas_wh[0]) or np.isclose(
        corners[1, 1] - corners[0, 1], canvas_wh[1]
    )


def test_zoom_keeps_anchor_fixed_and_clamps_scale() -> None:
    vp = fit((3000, 2000), (800, 560))
    anchor = (200.0, 150.0)
    before = convert(vp, anchor, "image")
    z = zoom_at(vp, 3.0, anchor)
    assert np.isclose(z.scale, vp.scale * 3)
    np.testing.assert_allclose(convert(z, anchor, "image"), before)
    deep = vp
    for _ in range(40):
        deep = zoom_at(deep, 2.0)
    assert deep.scale == MAX_SCALE
    far = vp
    for _ in range(40):
        far = zoom_at(far, 0.5)
    assert np.isclose(far.scale, vp.fit_scale / 2)


def test_pan_moves_image_with_the_drag_and_stays_in_sight() -> None:
    vp = zoom_at(fit((1000, 1000), (100, 100)), 4.0)
    p = pan(vp, 10, -20)
    # the image point under (50, 50) moved to (60, 30)
    np.testing.assert_allclose(convert(p, convert(vp, (50, 50), "image"), "view"), (60, 30))
    gone = pan(vp, 1e6, 1e6)
    centre = convert(gone, (50, 50), "image")
    assert 0 <= centre[0] <= 1000 and 0 <= centre[1] <= 1000


def test_box_from_drag_sorts_clips_and_refuses_tiny() -> None:
    vp = Viewport((100, 80), (400, 320), 4.0, 0.0, 0.0)
    box = box_from_drag(vp, (40, 80), (8, 4))
    assert box is not None
    np.testing.assert_allclose(box, [2, 1, 10, 20])
    box = box_from_drag(vp, (-50, -50), (1000, 1000))
    assert box is not None
    np.testing.assert_allclose(box, [0, 0, 100, 80])
    assert box_from_drag(vp, (10, 10), (11, 40)) is None  # under 1 image pixel wide
    assert box_from_drag(vp, (-100, 10), (-10, 50)) is None  # wholly outside
    assert box_from_drag(Viewport((100, 80), (50, 40), 0.5), (10, 10), (11, 20)) is None  # 2 view px


def test_hit_test_smallest_box_and_empty() -> None:
    boxes = np.array([[0, 0, 100, 100], [10, 10, 20, 20], [50, 50, 60, 60]], float)
    assert hit_test(boxes, (15, 15)) == 1
    assert hit_test(boxes, (80, 20)) == 0
    assert hit_test(boxes, (200, 200)) == -1
    assert hit_test(np.zeros((0, 4)), (1, 1)) == -1
    assert hit_test(boxes, (20, 20)) == 1  # on the edge counts


def test_choose_level() -> None:
    levels = [(8000, 6000), (4000, 3000), (2000, 1500), (1000, 750)]
    assert choose_level(levels, 2.0) == 0
    assert choose_level(levels, 1.0) == 0
    assert choose_level(levels, 0.5) == 1
    assert choose_level(levels, 0.3) == 1
    assert choose_level(levels, 0.1) == 3
    assert choose_level([(10, 10)], 0.01) == 0


def test_render_plan_reads_only_the_visible_part_at_the_needed_level() -> None:
    levels = [(40000, 30000), (10000, 7500), (2500, 1875)]
    overview = (2048, 1536)
    vp = fit((40000, 30000), (800, 600))
    plan = render_plan(vp, levels, overview)
    assert plan is not None and plan.level is None  # zoomed out: the overview is enough
    assert plan.dest == (0, 0, 800, 600)
    z = zoom_at(vp, 10.0, (100, 100))  # scale 0.2: the quarter-size level is enough
    plan = render_plan(z, levels, overview)
    assert plan is not None and plan.level == 1
    x, y, w, h = plan.source
    assert w * h <= (2 * 800) * (2 * 600)  # bounded by the canvas, not the image
    z = zoom_at(vp, 20.0, (100, 100))  # scale 0.4: only full resolution will do
    plan = render_plan(z, levels, overview)
    assert plan is not None and plan.level == 0 and plan.source[2:] == (2000, 1500)
    # the planned source maps back onto the planned canvas rectangle
    plan = render_plan(zoom_at(vp, 10.0, (100, 100)), levels, overview)
    assert plan is not None and plan.level is not None
    z = zoom_at(vp, 10.0, (100, 100))
    x, y, w, h = plan.source
    lw = levels[plan.level][0]
    f = lw / 40000
    d = convert(z, (x / f, y / f, (x + w) / f, (y + h) / f), "view")
    assert abs(d[0] - plan.dest[0]) <= 1 and abs(d[2] - (plan.dest[0] + plan.dest[2])) <= 1


def test_render_plan_falls_back_to_overview_when_a_read_is_too_big_and_none_outside() -> None:
    vp = zoom_at(fit((40000, 30000), (800, 600)), 3.0)  # scale ~0.06 > overview's 0.05
    plan = render_plan(vp, [(40000, 30000)], (2048, 1536), max_read_pixels=1_000_000)
    assert plan is not None and plan.level is None
    plan = render_plan(vp, [(40000, 30000)], (2048, 1536), max_read_pixels=10**9)
    assert plan is not None and plan.level == 0
    outside = Viewport((100, 100), (50, 50), 1.0, 500.0, 500.0)
    assert render_plan(outside, [(100, 100)], (100, 100)) is None
    tiny = fit((1, 1), (800, 600))
    plan = render_plan(tiny, [(1, 1)], (1, 1))
    assert plan is not None and plan.source == (0, 0, 1, 1)
