"""Every bad argument of the public API ends in a DeepBlockError that says what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.errors import DeepBlockError
from tests.conftest import write_png


class Ctx:
    def __init__(self, project: dbn.Project, image: Any, box: int, tmp: Path) -> None:
        self.p, self.image, self.box, self.tmp = project, image, box, tmp


@pytest.fixture
def ctx(tmp_path: Path):  # type: ignore[no-untyped-def]
    project = dbn.Project.create(tmp_path / "proj", categories=["car", "person"])
    rec = project.add_image(write_png(tmp_path / "src" / "a.png", 64, 48))
    box = project.add_box(rec, "car", [2, 2, 20, 20])
    yield Ctx(project, rec, box, tmp_path)
    project.close()


def _set_threshold(c: Ctx, value: Any) -> None:
    c.p.threshold = value


CASES: list[tuple[str, Callable[[Ctx], Any], str]] = [
    ("create over a file", lambda c: dbn.Project.create(c.tmp / "src" / "a.png"), "already exists"),
    ("open a missing project", lambda c: dbn.Project.open(c.tmp / "nothing"), "no project here"),
    ("empty category name", lambda c: c.p.add_category("  "), "must not be empty"),
    ("category name not a string", lambda c: c.p.add_category(5), "is a string"),  # type: ignore[arg-type]
    ("duplicate category", lambda c: c.p.add_category("car"), "already exists"),
    ("colour not hex", lambda c: c.p.add_category("bus", color="red"), "hex colour"),
    ("unknown category", lambda c: c.p.category("bus"), "no category"),
    ("category of a wrong type", lambda c: c.p.category(2.5), "record, id or name"),  # type: ignore[arg-type]
    ("rename onto another", lambda c: c.p.rename_category("car", "person"), "already exists"),
    ("remove a used category", lambda c: c.p.remove_category("car"), "force=True"),
    ("unknown image", lambda c: c.p.image("nope.png"), "no image"),
    ("image of a wrong type", lambda c: c.p.image(1.5), "record, id or name"),  # type: ignore[arg-type]
    ("missing image file", lambda c: c.p.add_image(c.tmp / "missing.png"), "no such image file"),
    ("bytes that are no image", lambda c: c.p.add_image(b"not an image at all", name="x.png"), "x.png"),
    ("empty frame", lambda c: c.p.add_image(np.zeros((0, 0, 3), np.uint8)), "empty"),
    ("float frame", lambda c: c.p.add_image(np.zeros((4, 4), np.float32)), "uint8"),
    ("add_images given one path", lambda c: c.p.add_images(str(c.tmp / "src" / "a.png")), "a list"),
    (
        "names and images differ",
        lambda c: c.p.add_images([c.tmp / "src" / "a.png"], names=["a", "b"]),
        "names",
    ),
    ("unknown split", lambda c: c.p.add_image(c.tmp / "src" / "a.png", split="test"), "unknown split"),
    ("same name twice", lambda c: c.p.add_image(c.tmp / "src" / "a.png"), "already has an image"),
    ("inverted box", lambda c: c.p.add_box(c.image, "car", [10, 10, 5, 5]), "inverted"),
    ("box of three numbers", lambda c: c.p.add_box(c.image, "car", [1, 2, 3]), "4 numbers"),
    ("box of words", lambda c: c.p.add_box(c.image, "car", ["a", "b", "c", "d"]), "numbers"),
    ("box outside the image", lambda c: c.p.add_box(c.image, "car", [100, 100, 120, 120]), "outside"),
    ("box of an unknown category", lambda c: c.p.add_box(c.image, "bus", [1, 1, 5, 5]), "no category"),
    (
        "categories and boxes differ",
        lambda c: c.p.add_boxes(c.image, ["car", "car"], [[1, 1, 5, 5]]),
        "categories for",
    ),
    ("unknown box", lambda c: c.p.update_box(99999, [1, 1, 5, 5]), "no box"),
    ("box id of a wrong type", lambda c: c.p.delete_box("1"), "its id"),  # type: ignore[arg-type]
    ("grid of zero rows", lambda c: c.p.set_grid(c.image, 0, 2), "rows"),
    ("grid overlap too large", lambda c: c.p.set_grid(c.image, 2, 2, overlap=1.5), "overlap"),
    ("grid larger than the image", lambda c: c.p.set_grid(c.image, 100, 2), "under 1 pixel"),
    ("suggest a grid for no tile size", lambda c: c.p.suggest_grid(c.image, tile_size=0), "tile"),
    ("set an unknown split", lambda c: c.p.set_split(c.image, "holdout"), "unknown split"),
    ("threshold above 1", lambda c: _set_threshold(c, 1.5), r"\[0, 1\]"),
    ("threshold not a number", lambda c: _set_threshold(c, "high"), "number"),
    ("predictions at a bad threshold", lambda c: c.p.predictions(c.image, threshold=-1), r"\[0, 1\]"),
    ("zero epochs", lambda c: c.p.train(epochs=0), "at least 1"),
    ("fractional epochs", lambda c: c.p.train(epochs=2.5), "whole number"),  # type: ignore[arg-type]
    ("unknown training option", lambda c: c.p.train(speed=3), "unknown training option"),
    ("unknown model preset", lambda c: c.p.train(model="yolo-v99"), "unknown model preset"),
    ("resume without runs", lambda c: c.p.train(resume=True), "no training run"),
    ("predict without a model", lambda c: c.p.predict(), "no trained model"),
    ("predict an unknown run", lambda c: c.p.predict(run=42), "no run"),
    ("evaluate without evaluate images", lambda c: c.p.evaluate(), "evaluate split"),
    ("unknown annotation format", lambda c: c.p.export_annotations(c.tmp / "o", format="xml"), "unknown"),
    ("import an unknown format", lambda c: c.p.import_annotations(c.tmp / "o.x", format="csvx"), "unknown"),
    ("import a missing file", lambda c: c.p.import_annotations(c.tmp / "none.json"), "none.json"),
    ("unknown prediction format", lambda c: c.p.export_predictions(c.tmp / "o", format="xml"), "unknown"),
    ("statistics of an unknown split", lambda c: c.p.statistics(split="all"), "unknown split"),
    ("box counts of an unknown split", lambda c: c.p.box_counts(split="all"), "unknown split"),
    ("unknown event topic", lambda c: c.p.on("everything", print), "unknown event topic"),
    ("predict with batch size 0", lambda c: c.p.predict(images=[c.image], batch_size=0), "batch_size"),
]


@pytest.mark.parametrize(("what", "call", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_arguments_raise_a_deepblock_error(
    ctx: Ctx, what: str, call: Callable[[Ctx], Any], message: str
) -> None:
    categories, images = ctx.p.categories, ctx.p.images()
    boxes = ctx.p.annotations(ctx.image).xyxy.copy()
    with pytest.raises(DeepBlockError, match=message):
        call(ctx)
    # nothing already in the project was lost or half-written
    assert ctx.p.categories == categories and ctx.p.images() == images
    assert np.array_equal(ctx.p.annotations(ctx.image).xyxy, boxes)
