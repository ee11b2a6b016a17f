"""PredictPanel: uploads and webcam frames become predict images; the slider filters stored predictions."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.widgets import PredictPanel
from deepblock_nb.widgets.predict import unique_name
from tests.widgets.conftest import seed_predictions, settled, wait_until


def _png(w: int = 64, h: int = 48, value: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _upload_entry(name: str, data: bytes) -> dict:
    return {
        "name": name,
        "type": "image/png",
        "size": len(data),
        "content": memoryview(data),
        "last_modified": 0,
    }


def test_upload_adds_predict_images_with_free_names(wproject: dbn.Project) -> None:
    panel = PredictPanel(wproject)
    data = _png()
    # the browser sends the files as a state update of the FileUpload widget
    panel.upload.set_state(
        {"value": [_upload_entry("shot.png", data), _upload_entry("shot.png", _png(value=10))]}
    )
    names = [r.name for r in wproject.images("predict")]
    assert "shot.png" in names and "shot-2.png" in names
    rec = wproject.image("shot-2.png")
    assert (rec.width, rec.height, rec.split) == (64, 48, "predict")
    assert panel.image.name == "shot-2.png"
    assert panel.upload.value == ()


def test_a_bad_upload_reports_an_error(wproject: dbn.Project) -> None:
    panel = PredictPanel(wproject)
    n = len(wproject.images())
    panel.upload.set_state({"value": [_upload_entry("notes.png", b"this is not an image")]})
    assert len(wproject.images()) == n
    assert "notes.png" in panel.status.value and "color:#c0392b" in panel.status.value


def test_several_uploads_land_from_files_and_a_corrupt_one_is_named(
    wproject: dbn.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel = PredictPanel(wproject)
    before = [r.name for r in wproject.images("predict")]
    added_from: list[object] = []
    real_add = wproject.add_image

    def spy(source: object, *args: object, **kwargs: object) -> object:
        added_from.append(source)  # what the panel hands the project: a file, not bytes
        return real_add(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(wproject, "add_image", spy)
    a, b = _png(64, 48, 10), _png(80, 60, 200)
    # as ipywidgets 8 gives it: a tuple of dicts, content as memoryview
    panel.upload.set_state(
        {
            "value": (
                _upload_entry("a.png", a),
                _upload_entry("b.png", b),
                _upload_entry("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40),
            )
        }
    )
    assert panel.upload.value == ()  # the widget no longer holds the bytes
    names = [r.name for r in wproject.images("predict")]
    assert names == [*before, "a.png", "b.png"]
    assert [(r.width, r.height) for r in wproject.images("predict")[-2:]] == [(64, 48), (80, 60)]
    assert (wproject.path / "images" / "b.png").read_bytes() == b  # copied whole from its staged file
    assert len(added_from) == 3 and all(isinstance(s, Path) and s.is_absolute() for s in added_from)
    assert all(str(s).startswith(str(wproject.path / "cache" / "uploads")) for s in added_from)
    assert not any(Path(s).exists() for s in added_from)  # staged files are removed afterwards
    # one error line naming the bad file, the others reported as added
    lines = panel.status.value.split("<br>")
    assert len(lines) == 2 and "a.png (64 x 48), b.png (80 x 60)" in lines[0]
    assert "broken.png" in lines[1] and "color:#c0392b" in lines[1] and "cache" not in lines[1]
    assert panel.image.name == "b.png"
    # the same names again: free names, nothing refused
    panel.upload.set_state({"value": (_upload_entry("a.png", a),)})
    assert [r.name for r in wproject.images("predict")][-1] == "a-2.png"


def test_remove_the_shown_image(wproject: dbn.Project) -> None:
    panel = PredictPanel(wproject)
    big = panel.image
    panel.upload.set_state({"value": (_upload_entry("extra.png", _png()),)})
    extra = panel.image
    assert extra.name == "extra.png"
    seed_predictions(wproject, extra, np.array([[1, 1, 9, 9]], float), [1], [0.9])
    panel.remove_button.click()
    assert [r.name for r in wproject.images("predict")] == [big.name]
    assert not (wproject.path / "images" / "extra.png").exists()
    assert panel.image.id == big.id and "removed extra.png" in panel.status.value
    panel.remove_button.click()
    assert wproject.images("predict") == [] and panel.image is None
    panel.remove_button.click()  # nothing left: said, not raised
    assert "no image to remove" in panel.status.value
    assert len(wproject.images("train")) == 2


def test_webcam_frame_message_adds_an_image(wproject: dbn.Project) -> None:
    panel = PredictPanel(wproject)
    png = _png(32, 24)
    panel.webcam._handle_custom_msg({"event": "frame", "width": 32, "height": 24}, [memoryview(png)])
    assert panel.webcam.frames == 1
    rec = panel.image
    assert rec.name.startswith("webcam-") and (rec.width, rec.height) == (32, 24) and rec.split == "predict"
    panel.webcam._handle_custom_msg({"event": "error", "message": "NotAllowedError"}, [])
    assert panel.webcam.error == "NotAllowedError"


def test_threshold_slider_filters_stored_predictions_and_follows_the_project(wproject: dbn.Project) -> None:
    big = wproject.images("predict")[0]
    panel = PredictPanel(wproject)
    assert panel.image.id == big.id
    boxes = np.array([[10, 10, 50, 50], [100, 100, 200, 220], [300, 300, 400, 380], [5, 600, 90, 700]], float)
    seed_predictions(wproject, big, boxes, [1, 2, 3, 1], [0.2, 0.45, 0.7, 0.95])
    panel.threshold.value = 50  # percent
    assert wait_until(lambda: panel.shown == 2)
    assert np.isclose(wproject.threshold, 0.5)
    panel.threshold.value = 10
    settled()  # the "threshold" event redraws on the UI thread
    assert panel.shown == 4 and np.isclose(wproject.threshold, 0.1)
    assert "4 boxes at threshold 10 %" in panel.info.value
    panel.threshold.value = 90
    settled()
    assert panel.shown == 1
    wproject.threshold = 0.4  # from a cell: the slider follows, in percent
    settled()
    assert panel.threshold.value == 40 and panel.shown == 3
    t = threading.Thread(target=lambda: setattr(wproject, "threshold", 0.6))
    t.start()
    t.join()
    settled()
    assert panel.threshold.value == 60 and panel.shown == 2


def test_clear_and_export(wproject: dbn.Project) -> None:
    big = wproject.images("predict")[0]
    panel = PredictPanel(wproject)
    seed_predictions(wproject, big, np.array([[10, 10, 50, 50], [60, 60, 90, 90]], float), [1, 2], [0.9, 0.8])
    panel.threshold.value = 50
    assert wait_until(lambda: panel.shown == 2)
    sent: list[tuple[dict[str, Any], list[bytes]]] = []
    for button in (panel.download_json, panel.download_csv):
        button.send = lambda content, buffers=None: sent.append((content, [bytes(b) for b in buffers or []]))
    panel.download_json._on_message(panel.download_json, {"event": "request"}, [])  # the page's click
    path = wproject.path / "exports" / "predictions.json"
    records = json.loads(path.read_text())
    assert len(records) == 2 and {r["category_id"] for r in records} == {1, 2}
    ((content, (data,)),) = sent
    assert content == {"event": "file", "name": "predictions.json", "mime": "application/json"}
    assert json.loads(data) == records and "saved predictions.json" in panel.download_json.status
    panel.threshold.value = 85  # the download follows the threshold
    panel.download_csv.click()
    rows = sent[-1][1][0].decode().strip().splitlines()
    assert sent[-1][0]["name"] == "predictions.csv" and len(rows) == 2  # a header and the 0.9 box
    assert panel.download_json.downloads == panel.download_csv.downloads == 1
    panel.clear_button.click()
    assert len(wproject.predictions(big, threshold=0.0)) == 0
    assert wait_until(lambda: panel.shown == 0)


def test_predict_without_a_model_reports_it(wproject: dbn.Project) -> None:
    panel = PredictPanel(wproject)
    panel.predict_button.click()
    assert panel.job is None
    assert "color:#c0392b" in panel.status.value


@pytest.mark.parametrize(
    ("name", "taken", "expected"),
    [
        ("a.png", set(), "a.png"),
        ("a.png", {"a.png"}, "a-2.png"),
        ("a.png", {"a.png", "a-2.png"}, "a-3.png"),
        ("b", {"b"}, "b-2"),
    ],
)
def test_unique_name(name: str, taken: set, expected: str) -> None:
    assert unique_name(name, taken) == expected


def test_the_slider_follows_evaluations_without_becoming_the_users_choice(wproject: dbn.Project) -> None:
    from tests.ml.rect_scene import RectangleDetector
    from tests.project.test_prediction import TIMEOUT, _add_run, _frame, _png_bytes

    rgb, truth = _frame()  # a "disc" scored 0.78 and a "square" scored 0.24 by the detector
    for k in range(2):
        rec = wproject.add_image(_png_bytes(rgb), split="evaluate", name=f"eval{k}.png")
        wproject.add_boxes(rec, [1, 2], truth.xyxy)
    _add_run(wproject)

    def evaluate() -> None:  # the "threshold" event comes from the job's worker thread
        job = wproject.evaluate(model=RectangleDetector()).wait(TIMEOUT)
        assert job.status is dbn.JobStatus.FINISHED, job.error

    def label_squares(on: bool) -> None:
        for name in ("eval0.png", "eval1.png"):
            boxes = wproject.annotations(name)
            if on:
                wproject.add_box(name, 2, truth.xyxy[1])
            else:
                wproject.delete_box(int(boxes.ids[boxes.class_id == 2][0]))  # type: ignore[index]

    panel = PredictPanel(wproject)
    assert panel.threshold.value == 50
    evaluate()  # best F1 at 0.23
    settled()
    assert panel.threshold.value == 23 and wproject.threshold == 0.23
    # following the project was not a choice of the user's: the next evaluation still moves it
    label_squares(False)
    evaluate()  # the squares are false positives now: best F1 at 0.78
    settled()
    assert panel.threshold.value == 78 and wproject.threshold == 0.78
    later = PredictPanel(wproject)  # a new panel starts there, and building it chooses nothing
    assert later.threshold.value == 78
    # a person's move is the user's choice: both panels follow it, evaluations no longer move it
    panel.threshold.value = 40
    settled()
    assert wproject.threshold == 0.4 and later.threshold.value == 40
    label_squares(True)
    evaluate()  # best F1 back at 0.23
    settled()
    assert wproject.evaluations()[-1].best_threshold == 0.23
    assert wproject.threshold == 0.4 and panel.threshold.value == 40


def test_a_download_error_is_shown_and_nothing_is_sent() -> None:
    from deepblock_nb.widgets.download import DownloadButton

    def broken() -> tuple[str, bytes, str]:
        raise OSError("disk full")

    button = DownloadButton(broken, "Download JSON")
    sent: list[Any] = []
    button.send = lambda content, buffers=None: sent.append(content)
    button.click()
    assert sent == [] and button.status == "download failed: disk full" and not button.busy
    with pytest.raises(dbn.DeepBlockError, match="provider must be callable"):
        DownloadButton("not a function")  # type: ignore[arg-type]


def test_download_geojson(wproject: dbn.Project) -> None:
    big = wproject.images("predict")[0]
    panel = PredictPanel(wproject)
    seed_predictions(wproject, big, np.array([[10, 10, 50, 50], [60, 60, 90, 90]], float), [1, 2], [0.9, 0.3])
    panel.threshold.value = 50
    sent: list[tuple[dict[str, Any], list[bytes]]] = []
    panel.download_geojson.send = lambda content, buffers=None: sent.append(
        (content, [bytes(b) for b in buffers or []])
    )
    assert panel.download_geojson.description == "Download GeoJSON"
    panel.download_geojson._on_message(panel.download_geojson, {"event": "request"}, [])  # the page's click
    ((content, (data,)),) = sent
    assert content == {"event": "file", "name": "predictions.geojson", "mime": "application/geo+json"}
    doc = json.loads(data)
    assert doc == json.loads((wproject.path / "exports" / "predictions.geojson").read_text())
    (feature,) = doc["features"]  # the 0.3 box is under the threshold
    assert feature["properties"]["score"] == 0.9 and feature["properties"]["crs"] == "pixel"
    assert big.name in doc["note"]  # a JPEG: pixel coordinates, and the file says so
    assert "saved predictions.geojson" in panel.download_geojson.status
    panel.close()
