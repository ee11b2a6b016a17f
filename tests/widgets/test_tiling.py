"""TilingControls: suggest, preview, apply and clear a grid through the project."""

from __future__ import annotations

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.widgets import TilingControls
from deepblock_nb.widgets.tiling import grid_lines
from tests.widgets.conftest import settled


def test_suggest_preview_apply_clear(wproject: dbn.Project) -> None:
    big = wproject.images("predict")[0]  # 1600 x 1200
    tc = TilingControls(wproject, image=big)
    assert tc.image.id == big.id
    assert tc.preview_lines == 0
    tc.tile_size.value = 500
    tc.suggest_button.click()
    assert (tc.rows.value, tc.cols.value) == wproject.suggest_grid(big, tile_size=500) == (3, 4)
    assert tc.preview_lines == 2 + 3  # inner edges only, not yet applied
    assert wproject.image(big).grid is None
    tc.overlap.value = 0.1
    assert tc.preview_lines == 2 * (2 + 3)  # each cut becomes two edges
    tc.apply_button.click()
    grid = wproject.image(big).grid
    assert grid is not None and (grid.rows, grid.cols) == (3, 4) and np.isclose(grid.overlap, 0.1)
    assert "12 tiles" in tc.status.value
    tc.clear_button.click()
    assert wproject.image(big).grid is None
    assert "no grid" in tc.status.value


def test_grid_set_elsewhere_is_shown_and_bad_values_report_errors(wproject: dbn.Project) -> None:
    small = wproject.images("train")[0]  # 400 x 300
    tc = TilingControls(wproject, image=small)
    wproject.set_grid(small, 2, 2)
    settled()  # the "grid" event is shown on the UI thread
    assert "2 x 2 grid" in tc.status.value
    tc.rows.value = 301  # more rows than pixels
    assert "Error" in tc.status.value or "pixel" in tc.status.value
    tc.apply_button.click()
    assert wproject.image(small).grid.rows == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("wh", "rows", "cols", "overlap", "nx", "ny"),
    [((100, 50), 1, 1, 0.0, 2, 2), ((100, 50), 2, 4, 0.0, 5, 3), ((100, 50), 1, 2, 0.2, 4, 2)],
)
def test_grid_lines_match_the_tiles(
    wh: tuple, rows: int, cols: int, overlap: float, nx: int, ny: int
) -> None:
    xs, ys = grid_lines(wh, rows, cols, overlap)
    assert len(xs) == nx and len(ys) == ny
    assert xs[0] == 0 and xs[-1] == wh[0] and ys[0] == 0 and ys[-1] == wh[1]


def test_a_small_image_fills_the_preview(tmp_path) -> None:  # type: ignore[no-untyped-def]
    project = dbn.Project.create(tmp_path / "p", categories=["a"])
    rgb = np.random.default_rng(0).integers(0, 255, (100, 128, 3), dtype=np.uint8)
    rec = project.add_image(rgb, name="small.png")
    panel = TilingControls(project)
    panel.image_list.value = rec.id
    settled()
    ov = panel._overview
    assert ov is not None and ov.shape[:2] == (300, 384)  # enlarged 3 times: within 480 px
    np.testing.assert_array_equal(ov[::3, ::3], rgb)
    panel.close()
    project.close()
