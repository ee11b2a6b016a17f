from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepblock_nb as dbn
from tests.conftest import write_png


# -- create / open -------------------------------------------------------------
def test_create_then_open_keeps_everything(tmp_path: Path, png: Path) -> None:
    p = dbn.Project.create(tmp_path / "p", categories=["car", "person"])
    rec = p.add_image(png)
    box = p.add_box(rec, "car", [1.5, 2.25, 10, 20])
    p.close()
    q = dbn.Project.open(tmp_path / "p")
    assert [c.name for c in q.categories] == ["car", "person"]
    assert [im.name for im in q.images()] == ["photo.png"]
    ann = q.annotations(rec.id)
    assert ann.ids.tolist() == [box] and ann.xyxy.tolist() == [[1.5, 2.25, 10, 20]]
    assert (tmp_path / "p" / "images" / "photo.png").is_file()
    for sub in ("images", "cache", "runs"):
        assert (tmp_path / "p" / sub).is_dir()
    q.close()


def test_create_refuses_existing_and_open_refuses_missing(tmp_path: Path) -> None:
    dbn.Project.create(tmp_path / "p").close()
    with pytest.raises(dbn.ProjectExistsError, match="already exists"):
        dbn.Project.create(tmp_path / "p")
    with pytest.raises(dbn.ProjectNotFoundError, match="no project here"):
        dbn.Project.open(tmp_path / "elsewhere")


def test_open_corrupt_database_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "project.db").write_bytes(b"\x00garbage" * 512)
    with pytest.raises(dbn.ProjectError, match="project.db"):
        dbn.Project.open(tmp_path / "p")


# -- categories -----------------------------------------------------------------
def test_categories_add_rename_recolor_remove(project: dbn.Project) -> None:
    truck = project.add_category("truck", color="#123456")
    assert truck.id >= 1 and truck.color == "#123456"
    assert project.rename_category(truck, "lorry").name == "lorry"
    assert project.recolor_category("lorry", "#abcdef").color == "#abcdef"
    with pytest.raises(dbn.CategoryError, match="already exists"):
        project.add_category("car")
    with pytest.raises(dbn.CategoryError, match="already exists"):
        project.rename_category("lorry", "person")
    with pytest.raises(dbn.CategoryError, match="not a hex colour"):
        project.add_category("bus", color="blue")
    project.remove_category("lorry")
    assert [c.name for c in project.categories] == ["car", "person"]
    with pytest.raises(dbn.RecordNotFoundError, match="lorry"):
        project.category("lorry")


def test_removing_a_category_with_boxes_needs_force(project: dbn.Project, png: Path) -> None:
    rec = project.add_image(png)
    project.add_box(rec, "car", [0, 0, 5, 5])
    project.add_box(rec, "person", [0, 0, 6, 6])
    with pytest.raises(dbn.CategoryError, match="force=True"):
        project.remove_category("car")
    assert len(project.annotations(rec)) == 2
    project.remove_category("car", force=True)
    assert project.annotations(rec).class_id.tolist() == [project.category("person").id]


# -- images -----------------------------------------------------------------------
def test_add_image_reads_header_and_copies(project: dbn.Project, png: Path) -> None:
    rec = project.add_image(png, split="evaluate")
    assert (rec.width, rec.height, rec.split, rec.copied) == (64, 48, "evaluate", True)
    assert rec.path == project.path / "images" / "photo.png"
    assert rec.path.read_bytes() == png.read_bytes()
    assert rec.hash and rec.size == png.stat().st_size
    assert project.images("evaluate") == [rec] and project.images("train") == []


def test_add_image_by_reference_keeps_the_original(project: dbn.Project, png: Path) -> None:
    before = png.read_bytes()
    rec = project.add_image(png, copy=False)
    assert not rec.copied and rec.path == png.resolve()
    assert not (project.path / "images" / "photo.png").exists()
    project.remove_image(rec)
    assert png.read_bytes() == before  # a referenced original is never deleted


def test_add_image_from_bytes_and_from_a_frame(project: dbn.Project, png: Path) -> None:
    up = project.add_image(png.read_bytes(), split="predict", name="upload.png")
    assert (up.width, up.height) == (64, 48)
    frame = np.zeros((30, 40, 3), np.uint8)
    frame[5:10, 5:20] = 255
    rec = project.add_image(frame, split="predict")
    assert (rec.width, rec.height) == (40, 30) and rec.name.endswith(".png")
    with project.open_image(rec) as src:
        assert np.array_equal(src.read_region(0, 0, 40, 30), frame)
    with pytest.raises(dbn.ImageReadError, match="uint8"):
        project.add_image(np.zeros((4, 4), np.float32), split="predict")


def test_unicode_and_spaces_in_names(project: dbn.Project, tmp_path: Path) -> None:
    f = write_png(tmp_path / "dossier été" / "vue aérienne 北京.png")
    rec = project.add_image(f)
    assert rec.name == "vue aérienne 北京.png"
    assert project.image("vue aérienne 北京.png").id == rec.id


def test_add_images_is_all_or_nothing(project: dbn.Project, tmp_path: Path) -> None:
    good = [write_png(tmp_path / f"g{i}.png", seed=i) for i in range(3)]
    bad = tmp_path / "broken.png"
    bad.write_bytes(good[0].read_bytes()[:60])  # truncated
    with pytest.raises(dbn.ImageReadError, match="broken.png"):
        project.add_images([*good, bad])
    assert project.images() == []
    assert [p.name for p in (project.path / "images").iterdir()] == []


@pytest.mark.parametrize(
    ("content", "name", "match"),
    [
        (b"", "empty.png", "empty.png"),
        (b"hello, I am text\n" * 20, "notes.png", "notes.png"),
    ],
)
def test_bad_files_are_refused_with_their_name(
    project: dbn.Project, tmp_path: Path, content: bytes, name: str, match: str
) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(dbn.ImageReadError, match=match):
        project.add_image(f)
    assert project.images() == []


def test_duplicate_names_and_escaping_names_are_refused(project: dbn.Project, png: Path) -> None:
    project.add_image(png)
    with pytest.raises(dbn.PathError, match="already has an image named"):
        project.add_image(png)
    with pytest.raises(dbn.PathError, match="path separator"):
        project.add_image(png, name="../outside.png")
    assert len(project.images()) == 1
    assert not (project.path / "outside.png").exists()
    assert project.add_image(png, name="photo-2.png").name == "photo-2.png"


def test_remove_image_removes_boxes_and_file(project: dbn.Project, png: Path) -> None:
    rec = project.add_image(png)
    project.add_box(rec, "car", [0, 0, 4, 4])
    project.remove_image(rec)
    assert project.images() == [] and not rec.path.exists()
    assert project._db.scalar("SELECT count(*) FROM annotations") == 0


# -- boxes --------------------------------------------------------------------------
def test_boxes_add_update_delete(project: dbn.Project, png: Path) -> None:
    rec = project.add_image(png)
    a = project.add_box(rec, "car", [1, 2, 30, 40])
    b = project.add_box(rec, project.category("person"), (0.5, 0.5, 1.5, 1.5))
    det = project.annotations(rec)
    assert det.ids.tolist() == [a, b] and det.confidence is None
    assert det.class_id.tolist() == [project.category("car").id, project.category("person").id]
    project.update_box(a, xyxy=[2, 3, 4, 5], category="person")
    det = project.annotations(rec)
    assert det.xyxy[0].tolist() == [2, 3, 4, 5] and det.class_id[0] == project.category("person").id
    project.delete_box(b)
    assert project.annotations(rec).ids.tolist() == [a]
    with pytest.raises(dbn.RecordNotFoundError):
        project.delete_box(b)


@pytest.mark.parametrize(
    ("xyxy", "match"),
    [
        ([10, 10, 5, 20], "inverted"),
        ([10, 10, 10, 20], "inverted or empty"),
        ([100, 100, 120, 120], "outside the image"),
        ([-20, -20, -1, -1], "outside the image"),
        ([0, 0, float("nan"), 5], "finite"),
    ],
)
def test_bad_boxes_are_refused(project: dbn.Project, png: Path, xyxy: list[float], match: str) -> None:
    rec = project.add_image(png)
    with pytest.raises(dbn.AnnotationError, match=match):
        project.add_box(rec, "car", xyxy)
    assert len(project.annotations(rec)) == 0


def test_boxes_partly_outside_are_clipped(project: dbn.Project, png: Path) -> None:
    rec = project.add_image(png)  # 64 x 48
    project.add_box(rec, "car", [-5, 40, 10, 60])
    assert project.annotations(rec).xyxy.tolist() == [[0, 40, 10, 48]]


def test_unknown_category_is_refused(project: dbn.Project, png: Path) -> None:
    rec = project.add_image(png)
    with pytest.raises(dbn.RecordNotFoundError, match="bicycle"):
        project.add_box(rec, "bicycle", [0, 0, 1, 1])


def test_add_boxes_in_one_call(project: dbn.Project, png: Path) -> None:
    rec = project.add_image(png)
    xyxy = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5.5]])
    ids = project.add_boxes(rec, ["car", "person", "car"], xyxy)
    det = project.annotations(rec)
    assert det.ids.tolist() == ids.tolist() and np.array_equal(det.xyxy, xyxy)
    assert project.box_counts() == {"car": 2, "person": 1}


# -- grid ---------------------------------------------------------------------------
def test_grid_divides_without_touching_the_file(project: dbn.Project, tmp_path: Path) -> None:
    f = write_png(tmp_path / "big.png", width=300, height=200)
    before = f.read_bytes()
    rec = project.add_image(f)
    assert project.tiles(rec) == [(0, 0, 300, 200)]
    project.set_grid(rec, 2, 3)
    tiles = project.tiles(rec)
    assert len(tiles) == 6 and sum(w * h for _, _, w, h in tiles) == 300 * 200
    assert project.image(rec).grid == dbn.store.Grid(2, 3, 0.0)
    assert project.suggest_grid(rec, tile_size=100) == (2, 3)
    with pytest.raises(ValueError):
        project.set_grid(rec, 0, 3)
    assert rec.path.read_bytes() != b"" and f.read_bytes() == before
    project.clear_grid(rec)
    assert project.tiles(rec) == [(0, 0, 300, 200)]


# -- events and threshold -----------------------------------------------------------
def test_events_are_emitted_after_changes(project: dbn.Project, png: Path) -> None:
    seen: list[tuple[str, str]] = []
    off = project.on("annotations", lambda topic, **kw: seen.append((topic, kw["action"])))
    project.on("images", lambda topic, **kw: seen.append((topic, kw["action"])))
    project.on("threshold", lambda topic, **kw: seen.append((topic, str(kw["value"]))))
    rec = project.add_image(png)
    box = project.add_box(rec, "car", [0, 0, 2, 2])
    off()
    project.delete_box(box)
    project.threshold = 0.25
    assert seen == [("images", "added"), ("annotations", "added"), ("threshold", "0.25")]
    assert project.threshold == 0.25
    with pytest.raises(ValueError):
        project.threshold = 1.5
    with pytest.raises(ValueError, match="unknown event topic"):
        project.on("nonsense", print)


def test_a_failing_listener_does_not_break_the_change(project: dbn.Project, png: Path) -> None:
    def bad(**_: object) -> None:
        raise RuntimeError("listener bug")

    project.on("images", bad)
    rec = project.add_image(png)
    assert project.image(rec.id).name == "photo.png"


# -- threads --------------------------------------------------------------------------
def test_two_writers_and_a_reader_lose_nothing(project: dbn.Project, tmp_path: Path) -> None:
    recs = [project.add_image(write_png(tmp_path / f"t{i}.png", seed=i)) for i in range(2)]
    n = 300
    errors: list[BaseException] = []
    ids: list[list[int]] = [[], []]

    def writer(k: int) -> None:
        try:
            for i in range(n):
                ids[k].append(
                    project.add_box(recs[k], "car" if i % 2 else "person", [i % 50, 0, i % 50 + 5, 5])
                )
        except BaseException as exc:
            errors.append(exc)

    stop = threading.Event()
    reads = [0]

    def reader() -> None:
        try:
            while not stop.is_set():
                for r in recs:
                    project.annotations(r)
                project.images()
                reads[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    rt = threading.Thread(target=reader)
    rt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    rt.join()
    assert errors == []
    assert reads[0] > 0
    for k in range(2):
        assert project.annotations(recs[k]).ids.tolist() == ids[k]
        assert len(ids[k]) == n


def test_bytes_upload_of_a_jpeg(project: dbn.Project) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (10, 200, 30)).save(buf, format="JPEG")
    rec = project.add_image(buf.getvalue(), split="predict", name="cam.jpg")
    assert (rec.width, rec.height) == (20, 10) and rec.format.upper() in ("JPEG", "JPG")
