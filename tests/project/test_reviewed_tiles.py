"""Reviewed tiles: ``project.set_reviewed(image, tile=...)``, the schema-4 table and its
migration, the training tiles they allow, and Evaluate restricted to them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import deepblock_nb as dbn
from deepblock_nb.errors import ArgumentError, ArgumentTypeError, DeepBlockError, RecordNotFoundError
from deepblock_nb.ml.checkpoints import save_checkpoint
from deepblock_nb.ml.models import CUSTOM
from tests.conftest import write_png
from tests.ml.rect_scene import RectangleDetector

TIMEOUT = 300
# the four windows of a 2 x 2 grid over a 64 x 64 image
T0, T1, T2, T3 = (0, 0, 32, 32), (32, 0, 32, 32), (0, 32, 32, 32), (32, 32, 32, 32)


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = dbn.Project.create(tmp_path / "proj", categories=["red", "blue"])
    yield p
    p.close()


def _image(project: dbn.Project, tmp_path: Path, name: str, grid: bool = True, seed: int = 0) -> Any:
    rec = project.add_image(write_png(tmp_path / name, 64, 64, seed=seed))
    return project.set_grid(rec, 2, 2) if grid else rec


def _events(project: dbn.Project) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    project.on("images", lambda topic, **payload: seen.append((topic, payload)))
    return seen


def _windows(project: dbn.Project) -> dict[str, set[tuple[int, ...]]]:
    ids = [c.id for c in project.categories]
    out: dict[str, set[tuple[int, ...]]] = {}
    for item in project._training._tile_items("train", ids):
        out.setdefault(Path(item.image_path).name, set()).add(tuple(item.window))
    return out


# -- API ----------------------------------------------------------------------------------
def test_tiles_are_marked_by_index_or_row_col_kept_as_windows_and_unmarked(
    project: dbn.Project, tmp_path: Path
) -> None:
    rec = _image(project, tmp_path, "a.png")
    seen = _events(project)
    assert project.reviewed_tiles(rec) == []
    new = project.set_reviewed(rec, tile=3)
    assert not new.reviewed  # a tile is not the whole image
    assert project.reviewed_tiles(rec) == [T3]
    project.set_reviewed(rec, tile=(0, 1))
    project.set_reviewed(rec, True, tile=np.int64(3))  # again: no duplicate
    assert project.reviewed_tiles(rec) == [T1, T3]  # top to bottom
    assert [(p["action"], [r.id for r in p["images"]]) for _, p in seen] == [("tile_reviewed", [rec.id])] * 3

    project.close()
    project = dbn.Project.open(tmp_path / "proj")
    assert project.reviewed_tiles("a.png") == [T1, T3]  # stored
    # a new grid does not change what was reviewed; a tile of it within the tolerance unmarks
    project.set_grid(rec, 2, 2, overlap=0.05)  # windows grow by 2 px into their neighbours
    assert project.tiles(rec)[3] == (30, 30, 34, 34)
    project.set_reviewed(rec, False, tile=3)
    assert project.reviewed_tiles(rec) == [T1]
    project.set_reviewed(rec, False, tile=0)  # not marked: nothing to remove
    assert project.reviewed_tiles(rec) == [T1]
    project.remove_image(rec)  # its reviewed tiles go with it
    assert len(project._store.reviews.of_image(rec.id)) == 0
    project.close()


@pytest.mark.parametrize(
    ("tile", "error", "match"),
    [
        (4, ArgumentError, "has 4 tiles"),
        (-1, ArgumentError, "has 4 tiles"),
        ((2, 0), ArgumentError, "outside it"),
        ((0, -1), ArgumentError, "outside it"),
        ("1", ArgumentTypeError, "a tile is an index"),
        (1.0, ArgumentTypeError, "a tile is an index"),
        (True, ArgumentTypeError, "a tile is an index"),
        ([0, 1], ArgumentTypeError, "a tile is an index"),
        ((0, 1, 2), ArgumentTypeError, "a tile is an index"),
    ],
)
def test_a_bad_tile_is_refused_and_changes_nothing(
    project: dbn.Project, tmp_path: Path, tile: Any, error: type[DeepBlockError], match: str
) -> None:
    rec = _image(project, tmp_path, "a.png")
    project.set_reviewed(rec, tile=0)
    seen = _events(project)
    with pytest.raises(error, match=match):
        project.set_reviewed(rec, tile=tile)
    assert issubclass(error, DeepBlockError)
    assert project.reviewed_tiles(rec) == [T0] and not project.image(rec.id).reviewed and seen == []


def test_a_tile_of_an_image_without_grid_and_other_bad_calls_are_refused(
    project: dbn.Project, tmp_path: Path
) -> None:
    rec = _image(project, tmp_path, "a.png", grid=False)
    seen = _events(project)
    with pytest.raises(ArgumentError, match=r"'a.png' has no grid.*set_grid"):
        project.set_reviewed(rec, tile=0)
    with pytest.raises(ArgumentError, match="True or False"):
        project.set_reviewed(rec, "yes", tile=0)  # type: ignore[arg-type]
    with pytest.raises(RecordNotFoundError):
        project.set_reviewed("nothing.png", tile=0)
    assert project.reviewed_tiles(rec) == [] and seen == []
    assert not project.image(rec.id).reviewed


def test_a_schema_3_project_opens_with_the_reviewed_tiles_table(tmp_path: Path) -> None:
    from deepblock_nb.store.database import _statements
    from deepblock_nb.store.schema import MIGRATIONS, SCHEMA_VERSION

    folder = tmp_path / "old"
    (folder / "images").mkdir(parents=True)
    write_png(folder / "images" / "x.png", 64, 64)
    cx = sqlite3.connect(folder / "project.db")
    for sql in MIGRATIONS[:3]:  # the path every schema-3 project was built by
        for statement in _statements(sql):
            cx.execute(statement)
    cx.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '3')")
    cx.execute(
        "INSERT INTO images(id, name, path, copied, hash, size, width, height, format, split, grid_rows, "
        "grid_cols, grid_overlap, added, reviewed) "
        "VALUES (1, 'x.png', 'images/x.png', 1, 'h', 1, 64, 64, 'PNG', 'train', 2, 2, 0.0, 0, 5.0)"
    )
    cx.commit()
    assert cx.execute("SELECT 1 FROM sqlite_master WHERE name = 'reviewed_tiles'").fetchone() is None
    cx.close()

    project = dbn.Project.open(folder)
    assert project.schema_version == SCHEMA_VERSION >= 4
    assert project.image("x.png").reviewed  # schema 3's column kept
    assert project.reviewed_tiles("x.png") == []
    project.set_reviewed("x.png", tile=(1, 0))
    assert project.reviewed_tiles("x.png") == [T2]
    project.close()


# -- training ---------------------------------------------------------------------------------
def test_training_tiles_follow_the_reviewed_tiles(project: dbn.Project, tmp_path: Path) -> None:
    labelled = _image(project, tmp_path, "labelled.png")
    project.add_box(labelled, "red", [5, 5, 20, 20])  # in tile 0 only
    partial = _image(project, tmp_path, "partial.png", seed=1)
    project.add_box(partial, "red", [5, 5, 20, 20])
    negatives = _image(project, tmp_path, "negatives.png", seed=2)
    whole = _image(project, tmp_path, "whole.png", seed=3)
    _image(project, tmp_path, "untouched.png", seed=4)
    project.set_reviewed(whole)
    project.set_reviewed(whole, tile=1)  # the whole image wins
    assert set(_windows(project)) == {"labelled.png", "partial.png", "whole.png"}  # as before

    project.set_reviewed(partial, tile=3)
    project.set_reviewed(negatives, tile=1)
    assert _windows(project) == {
        "labelled.png": {T0, T1, T2, T3},  # boxes, no reviewed tiles: every tile
        "partial.png": {T0, T3},  # the tile holding its box and the reviewed one
        "negatives.png": {T1},  # no boxes: its reviewed tile, a true negative
        "whole.png": {T0, T1, T2, T3},
    }

    # a finer grid: the tiles holding the box and the four inside the reviewed window
    project.set_grid(partial, 4, 4)
    inside = {(x, y, 16, 16) for x in (32, 48) for y in (32, 48)}
    holding = {(x, y, 16, 16) for x in (0, 16) for y in (0, 16)}
    assert _windows(project)["partial.png"] == inside | holding
    # windows reaching 2 px past the reviewed one still lie inside it; 3 px do not
    project.set_grid(negatives, 2, 2, overlap=0.05)
    assert _windows(project)["negatives.png"] == {(30, 0, 34, 34)}
    project.set_grid(negatives, 2, 2, overlap=0.1)
    assert "negatives.png" not in _windows(project)


def test_a_training_run_reads_only_the_allowed_tiles(
    project: dbn.Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepblock_nb.ml import train as train_module
    from deepblock_nb.ml.data import TileDataset

    partial = _image(project, tmp_path, "partial.png", seed=1)
    project.add_box(partial, "red", [5, 5, 20, 20])
    project.set_reviewed(partial, tile=3)
    negatives = _image(project, tmp_path, "negatives.png", seed=2)
    project.set_reviewed(negatives, tile=(0, 1))
    _image(project, tmp_path, "untouched.png", seed=4)

    read: set[tuple[str, tuple[int, ...]]] = set()
    given: list[set[tuple[str, tuple[int, ...]]]] = []
    real_read, real_train = TileDataset._read, train_module.train_detector

    def reading(self: TileDataset, it: Any, window: tuple[int, int, int, int]) -> Any:
        read.add((Path(it.image_path).name, tuple(window)))
        return real_read(self, it, window)

    def training(job: Any, items: Any, *args: Any, **kwargs: Any) -> Any:
        given.append({(Path(i.image_path).name, tuple(i.window)) for i in items})
        return real_train(job, items, *args, **kwargs)

    monkeypatch.setattr(TileDataset, "_read", reading)
    monkeypatch.setattr(train_module, "train_detector", training)
    job = project.train(
        epochs=1, model="small", tile_size=64, batch_size=8, num_workers=0, augment=False, holdout=0.0,
        empty_rate=10.0,
    )  # fmt: skip
    job.wait(TIMEOUT, raise_on_error=True)
    expected = {("partial.png", T0), ("partial.png", T3), ("negatives.png", T1)}
    assert given == [expected]
    assert read == expected  # every tile the trainer read, and no other


# -- evaluate ---------------------------------------------------------------------------------
def _scene(path: Path) -> Path:
    from PIL import Image

    rgb = np.full((200, 300, 3), 255, np.uint8)
    rgb[20:60, 30:90] = (255, 200, 10)  # class 1, score 0.78, in the left tile of a 1 x 2 grid
    rgb[120:180, 200:260] = (5, 60, 255)  # class 2, score 0.24, in the right tile
    Image.fromarray(rgb).save(path)
    return path


def _add_run(project: dbn.Project, module: torch.nn.Module) -> int:
    run_id = project._store.runs.create(CUSTOM, {})
    save_checkpoint(
        {
            "model_state": module.state_dict(),
            "preset": CUSTOM,
            "preset_options": {},
            "category_ids": [c.id for c in project.categories],
            "tile_size": 256,
            "epoch": 1,
            "best_score": 1.0,
        },
        project.run_dir(run_id) / "best.pt",
    )
    project._store.runs.update(run_id, status="finished", finished=True)
    return run_id


def test_evaluate_counts_an_image_with_reviewed_tiles_only_inside_them(
    project: dbn.Project, tmp_path: Path
) -> None:
    labelled = project.add_image(_scene(tmp_path / "l.png"), split="evaluate", name="labelled.png")
    project.add_box(labelled, "red", [30, 20, 90, 60])
    project.add_box(labelled, "blue", [200, 120, 260, 180])
    tiled = project.add_image(_scene(tmp_path / "t.png"), split="evaluate", name="tiled.png")
    project.set_grid(tiled, 1, 2)  # left (0, 0, 150, 200), right (150, 0, 150, 200)
    # a box nothing is found for, outside the reviewed tile: it must not count as missed
    project.add_box(tiled, "red", [160, 10, 190, 40])
    run = _add_run(project, RectangleDetector())

    def evaluate() -> Any:
        job = project.evaluate(run=run, model=RectangleDetector())
        return job.wait(TIMEOUT, raise_on_error=True).result

    report = evaluate()  # no reviewed tile: all of "tiled.png" counts
    assert report.recall == pytest.approx(2 / 3) and report.precision == pytest.approx(0.5)

    project.set_reviewed(tiled, tile=0)
    report = evaluate()
    # inside the left tile: the red rectangle there is a false positive; the right tile (the
    # blue rectangle, the box not found) is left out
    assert report.recall == pytest.approx(1.0) and report.precision == pytest.approx(2 / 3)
    errors = project.evaluation_errors(threshold=0.1)
    assert errors["kind"].tolist() == ["false positive"]
    assert errors["name"].tolist() == ["tiled.png"]
    assert np.allclose(errors["predicted_xyxy"].iloc[0], [30, 20, 90, 60])

    project.set_reviewed(tiled)  # the whole image: everything on it counts again
    report = evaluate()
    assert report.recall == pytest.approx(2 / 3) and report.precision == pytest.approx(0.5)
