from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import ProjectError
from deepblock_nb.store import Database, Predictions, Runs
from deepblock_nb.store.schema import SCHEMA_VERSION


def test_new_database_is_wal_with_schema_version(tmp_path: Path) -> None:
    db = Database(tmp_path / "p.db", create=True)
    assert db.schema_version == SCHEMA_VERSION
    assert db.scalar("PRAGMA journal_mode") == "wal"
    db.close()
    again = Database(tmp_path / "p.db")
    assert again.schema_version == SCHEMA_VERSION
    again.close()


def test_missing_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no project database"):
        Database(tmp_path / "nothing.db")


def test_garbage_file_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "p.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ProjectError, match=r"p\.db.*not a readable"):
        Database(bad)


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "p.db"
    cx = sqlite3.connect(other)
    cx.execute("CREATE TABLE t (x)")
    cx.commit()
    cx.close()
    with pytest.raises(ProjectError, match="not a project"):
        Database(other)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = Database(tmp_path / "p.db", create=True)
    with db.write() as cx:
        cx.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.close()
    with pytest.raises(ProjectError, match="newer deepblock_nb"):
        Database(tmp_path / "p.db")


def test_write_rolls_back_on_error(tmp_path: Path) -> None:
    db = Database(tmp_path / "p.db", create=True)
    with pytest.raises(RuntimeError), db.write() as cx:
        cx.execute("INSERT INTO categories(name, color) VALUES ('a', '#000')")
        raise RuntimeError("boom")
    assert db.scalar("SELECT count(*) FROM categories") == 0
    db.close()


def _db_with_image(tmp_path: Path) -> Database:
    db = Database(tmp_path / "p.db", create=True)
    with db.write() as cx:
        cx.execute("INSERT INTO categories(id, name, color) VALUES (1, 'a', '#000'), (2, 'b', '#fff')")
        cx.execute(
            "INSERT INTO images(id, name, path, copied, hash, size, width, height, format, split, added) "
            "VALUES (1, 'x.png', 'images/x.png', 1, 'h', 1, 10, 10, 'PNG', 'predict', 0)"
        )
    return db


def test_runs_history_predictions_evaluations(tmp_path: Path) -> None:
    db = _db_with_image(tmp_path)
    runs, preds = Runs(db), Predictions(db)
    run = runs.create("tiny", {"epochs": 2, "lr": 0.01})
    runs.update(run, status="finished", best_score=0.5, epochs_done=2, finished=True)
    r = runs.get(run)
    assert r is not None and r["status"] == "finished" and r["config"] == {"epochs": 2, "lr": 0.01}
    assert runs.last_id() == run
    runs.add_history(run, [{"epoch": 1, "loss": np.float32(0.5)}, {"epoch": 2, "loss": 0.25}])
    runs.add_history(run, [{"epoch": 3, "loss": 0.125}])
    assert [h["epoch"] for h in runs.history(run)] == [1, 2, 3]
    det = Detections(np.array([[0, 0, 5, 5], [1, 1, 2, 2.5]]), np.array([1, 2]), np.array([0.9, 0.1]))
    preds.replace(1, run, det)
    got = preds.of_image(1)
    assert np.array_equal(got.xyxy, det.xyxy) and np.array_equal(got.confidence, det.confidence)
    assert len(preds.of_image(1, min_score=0.5)) == 1
    preds.replace(1, run, det[np.array([False, True])])  # replaces, not appends
    assert len(preds.of_image(1)) == 1
    runs.save_evaluation(run, {"map50": 0.75})
    assert runs.evaluations(run)[0]["report"] == {"map50": 0.75}
    preds.clear()
    assert len(preds.of_image(1)) == 0
    db.close()


def test_current_predictions_follow_the_last_store_even_when_empty(tmp_path: Path) -> None:
    db = _db_with_image(tmp_path)
    runs, preds = Runs(db), Predictions(db)
    first, second = runs.create("a", {}), runs.create("b", {})
    det = Detections(np.array([[0, 0, 5, 5]]), np.array([1]), np.array([0.9]))
    assert preds.current_run(1) == (False, None) and len(preds.of_image(1)) == 0
    preds.replace(1, first, det)
    assert preds.current_run(1) == (True, first) and len(preds.of_image(1)) == 1
    empty = det[np.zeros(1, bool)]
    preds.replace(1, second, empty)  # the newer run found nothing: nothing is current
    assert preds.current_run(1) == (True, second)
    assert len(preds.of_image(1)) == 0
    assert len(preds.of_image(1, run_id=first)) == 1  # the older run's boxes stay, not current
    preds.clear(1)
    assert preds.current_run(1) == (False, None) and len(preds.of_image(1, run_id=first)) == 0
    db.close()


def test_after_commit_runs_after_the_outer_commit_and_never_after_a_rollback(tmp_path: Path) -> None:
    db = Database(tmp_path / "p.db", create=True)
    seen: list[str] = []
    db.after_commit(lambda: seen.append("outside"))  # no transaction: at once
    assert seen == ["outside"]
    with db.write():
        with db.write():
            db.after_commit(lambda: seen.append(f"inner {db.scalar('SELECT count(*) FROM categories')}"))
            db.cx.execute("INSERT INTO categories(name, color) VALUES ('a', '#000')")
        assert seen == ["outside"]  # not yet: the outer transaction is open
    assert seen == ["outside", "inner 1"]
    with pytest.raises(RuntimeError), db.write():
        db.after_commit(lambda: seen.append("rolled back"))
        raise RuntimeError("boom")
    assert seen == ["outside", "inner 1"]
    db.close()


def test_a_thread_connection_is_closed_when_its_thread_ends(tmp_path: Path) -> None:
    db = Database(tmp_path / "p.db", create=True)
    assert db.open_connections == 1  # this thread's, from the migration

    def read() -> None:
        db.scalar("SELECT count(*) FROM categories")

    for _ in range(20):
        t = threading.Thread(target=read)
        t.start()
        t.join()
    assert db.open_connections == 1
    db.close()
    assert db.open_connections == 0


def test_a_version_1_project_migrates_with_its_current_predictions(tmp_path: Path) -> None:
    from deepblock_nb.store import Images
    from deepblock_nb.store.database import _statements
    from deepblock_nb.store.schema import MIGRATIONS

    path = tmp_path / "old.db"
    cx = sqlite3.connect(path)
    for statement in _statements(MIGRATIONS[0]):
        cx.execute(statement)
    cx.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    cx.execute("INSERT INTO categories(id, name, color) VALUES (1, 'a', '#000')")
    cx.execute(
        "INSERT INTO images(id, name, path, copied, hash, size, width, height, format, split, added) "
        "VALUES (1, 'x.png', 'images/x.png', 1, 'h', 1, 10, 10, 'PNG', 'predict', 0)"
    )
    cx.execute("INSERT INTO runs(id, model, config, status, created) VALUES (1, 'm', '{}', 'finished', 0)")
    cx.execute("INSERT INTO runs(id, model, config, status, created) VALUES (2, 'm', '{}', 'finished', 0)")
    for run in (1, 2):
        cx.execute(
            "INSERT INTO predictions(image_id, run_id, category_id, x1, y1, x2, y2, score) "
            "VALUES (1, ?, 1, 0, 0, 5, 5, 0.9)",
            (run,),
        )
    cx.commit()
    cx.close()
    db = Database(path)
    assert db.schema_version == SCHEMA_VERSION
    assert Predictions(db).current_run(1) == (True, 2)  # the newest row's run, as before
    image = Images(db, tmp_path).by_id(1)
    assert image is not None and not image.reviewed
    db.close()


def test_a_schema_5_project_migrates_to_microns_per_pixel(tmp_path: Path) -> None:
    from deepblock_nb.store import Images
    from deepblock_nb.store.database import _statements
    from deepblock_nb.store.schema import MIGRATIONS

    path = tmp_path / "old.db"
    cx = sqlite3.connect(path)
    for sql in MIGRATIONS[:5]:  # the path every schema-5 project was built by
        for statement in _statements(sql):
            cx.execute(statement)
    cx.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '5')")
    cx.execute(
        "INSERT INTO images(id, name, path, copied, hash, size, width, height, format, split, added, display) "
        "VALUES (1, 'x.svs', 'images/x.svs', 1, 'h', 1, 10, 10, 'tiff', 'train', 0, NULL)"
    )
    cx.commit()
    cx.close()
    db = Database(path)
    assert db.schema_version == SCHEMA_VERSION
    images = Images(db, tmp_path)
    old = images.by_id(1)
    assert old is not None and old.mpp is None  # NULL: unknown
    entry = {"name": "y.svs", "stored": "images/y.svs", "copied": True, "hash": "h2", "size": 2}
    entry.update(width=4, height=4, format="aperio", mpp=(0.25, 0.5))
    (new_id,) = images.insert([entry], "train")
    assert images.by_id(new_id).mpp == (0.25, 0.5)  # type: ignore[union-attr]
    assert db.scalar("SELECT mpp_y FROM images WHERE id = ?", (new_id,)) == 0.5
    db.close()
    again = Database(path)
    assert again.schema_version == SCHEMA_VERSION and Images(again, tmp_path).by_id(new_id).mpp == (0.25, 0.5)  # type: ignore[union-attr]
    again.close()


def test_a_schema_6_project_gains_proposals_and_keeps_its_boxes(tmp_path: Path) -> None:
    from deepblock_nb.store import Annotations, Proposals
    from deepblock_nb.store.database import _statements
    from deepblock_nb.store.schema import MIGRATIONS

    path = tmp_path / "old.db"
    cx = sqlite3.connect(path)
    for sql in MIGRATIONS[:6]:  # the path every schema-6 project was built by
        for statement in _statements(sql):
            cx.execute(statement)
    cx.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '6')")
    cx.execute("INSERT INTO categories(id, name, color) VALUES (1, 'car', '#ff0000')")
    cx.execute(
        "INSERT INTO images(id, name, path, copied, hash, size, width, height, format, split, added) "
        "VALUES (1, 'x.png', 'images/x.png', 1, 'h', 1, 10, 10, 'png', 'train', 0)"
    )
    cx.execute("INSERT INTO annotations(image_id, category_id, x1, y1, x2, y2) VALUES (1, 1, 1, 1, 5, 5)")
    cx.commit()
    cx.close()
    db = Database(path)
    assert db.schema_version == SCHEMA_VERSION
    assert Annotations(db).of_image(1).xyxy.tolist() == [[1.0, 1.0, 5.0, 5.0]]
    props = Proposals(db)
    assert len(props.of_image(1).xyxy) == 0 and props.counts()["open"] == 0
    db.close()
