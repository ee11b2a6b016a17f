"""The Labeler shows an image under its display setting and reads it again when it changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import deepblock_nb as dbn
from deepblock_nb.widgets import Labeler
from tests.io.test_display import spread, twelve_bit
from tests.widgets.conftest import settled


def test_the_labeler_follows_the_display_setting(tmp_path: Path) -> None:
    import tifffile

    project = dbn.Project.create(tmp_path / "proj", categories=["blob"])
    tifffile.imwrite(tmp_path / "x.tif", twelve_bit(), tile=(64, 64))
    rec = project.add_image(tmp_path / "x.tif")
    lab = Labeler(project, split="train")
    try:
        lab.show(rec)
        assert lab.view._overview is not None and spread(lab.view._overview) > 100  # the auto window
        viewport = lab.view.viewport
        project.set_display(rec, window=(0, 65535))  # the full uint16 range: nearly black
        settled()
        assert lab.view._overview is not None and spread(lab.view._overview) < 16
        assert lab.view.viewport == viewport and lab.image.id == rec.id
        want = np.floor(twelve_bit()[:4, :4].astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
        assert lab.view._source is not None
        assert np.array_equal(lab.view._source.read_region(0, 0, 4, 4)[..., 0], want)
    finally:
        lab.close()
        project.close()
