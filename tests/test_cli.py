"""The command line as a shell runs it: every command in a subprocess on a real small project."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.demo import synthetic_scene
from tests.conftest import write_png

ROOT = Path(__file__).resolve().parents[1]
CMD = [sys.executable, "-m", "deepblock_nb.cli"]
ENV = {**os.environ, "DEEPBLOCK_DOWNLOAD_WEIGHTS": "0"}
PROGRESS = tuple(f"{kind}: " for kind in ("train", "evaluate", "predict", "import", "demo"))
TINY = ["--epochs", "1", "--tile-size", "64", "--batch-size", "4", "--model", "small", "--seed", "0"]


def _cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, *args], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120, **kwargs
    )  # type: ignore[call-overload]


def _json(done: subprocess.CompletedProcess[str]) -> dict:  # type: ignore[type-arg]
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # the whole of stdout is one JSON object


def _one_line_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith(PROGRESS)]
    assert len(lines) == 1 and lines[0].startswith("deepblock-nb: error: ") and needle in lines[0], (
        done.stderr
    )


def _scenes(folder: Path, n: int, seed: int) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """``n`` 64x64 PNGs with shapes and their exact boxes ``(N, 4)`` xyxy and class indices."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rgb, xyxy, cls = synthetic_scene(rng, 64, 64, n_objects=2, size_range=(12, 24), n_classes=2)
        Image.fromarray(rgb).save(folder / f"s{seed}-{i}.png")
        out.append((folder / f"s{seed}-{i}.png", xyxy, cls))
    return out


def _small_project(path: Path) -> Path:
    """6 labelled train, 2 labelled evaluate and 2 predict images of 64x64, categories disc, square."""
    project = dbn.Project.create(path, categories=["disc", "square"])
    for split, n, seed in (("train", 6, 1), ("evaluate", 2, 2), ("predict", 2, 3)):
        for file, xyxy, cls in _scenes(path.parent / f"src-{split}", n, seed):
            rec = project.add_image(file, split=split)
            if split != "predict" and len(xyxy):
                project.add_boxes(rec, [int(k) + 1 for k in cls], xyxy)
    project.close()
    return path


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    project = dbn.Project.create(tmp_path / "p", categories=["car"])
    rec = project.add_image(write_png(tmp_path / "a.png", 64, 48))
    project.add_box(rec, "car", [2, 2, 30, 30])
    project.close()
    return tmp_path / "p"


def test_train_evaluate_predict_export_on_a_real_project(tmp_path: Path) -> None:
    path = _small_project(tmp_path / "p")
    done = _cli("train", str(path), *TINY, "--no-download", "--json")
    trained = _json(done)
    assert trained["run"] == 1 and trained["status"] == "finished" and trained["epochs"] == 1
    assert "best_score" in trained
    # not a terminal: plain progress lines on stderr, a start and an end, no carriage returns
    assert "\r" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) >= 2 and all(line.startswith("train: ") for line in lines), done.stderr
    assert "finished" in lines[-1]
    with dbn.Project.open(path) as project:
        runs = project.runs()
        assert list(runs["status"]) == ["finished"] and (path / "runs" / "1" / "best.pt").is_file()

    report = _json(_cli("--json", "evaluate", str(path), "--threshold", "0.3"))
    for key in ("mAP50", "mAP", "precision", "recall", "f1", "threshold"):
        assert report[key] is None or 0.0 <= report[key] <= 1.0, key
    assert report["at_threshold"]["threshold"] == pytest.approx(0.3) and report["images"] == 2
    assert {c["name"] for c in report["per_class"]} == {"disc", "square"}

    predicted = _json(_cli("predict", str(path), "--json", "-q"))
    assert [im["name"] for im in predicted["images"]] == ["s3-0.png", "s3-1.png"]
    with dbn.Project.open(path) as project:
        assert project.threshold == pytest.approx(0.3)  # evaluate --threshold set it
        for im in predicted["images"]:
            assert im["boxes"] == len(project.predictions(im["id"])) == sum(im["per_category"].values())

    out = tmp_path / "boxes.csv"
    assert _json(_cli("export", str(path), "--what", "predictions", "--format", "csv", "-o", str(out), "--json")) == {
        "path": str(out), "what": "predictions", "format": "csv"
    }  # fmt: skip
    assert out.read_text().splitlines()[0].startswith("file_name,category")
    coco = tmp_path / "train.json"
    done = _cli("export", str(path), "--split", "train", "-o", str(coco))
    assert done.returncode == 0 and done.stdout.strip() == f"wrote {coco}"
    assert len(json.loads(coco.read_text())["images"]) == 6


def test_predict_on_a_terminal_draws_a_bar_and_keeps_stdout_json(tmp_path: Path) -> None:
    path = _small_project(tmp_path / "p")
    assert _cli("train", str(path), *TINY, "-q").returncode == 0
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*CMD, "predict", str(path), "--images", "s3-1.png", "--json"],
        stdout=subprocess.PIPE, stderr=slave, cwd=ROOT, env=ENV, text=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert [im["name"] for im in json.loads(stdout)["images"]] == ["s3-1.png"]
    assert b"\r" in seen and b"predict: 100%|" in seen, seen  # tqdm's bar, on stderr only


def test_ctrl_c_stops_training_keeps_last_pt_and_exits_130(tmp_path: Path) -> None:
    path = _small_project(tmp_path / "p")
    args = [
        "train",
        str(path),
        "--epochs",
        "400",
        "--tile-size",
        "64",
        "--batch-size",
        "4",
        "--model",
        "small",
    ]
    proc = subprocess.Popen(
        [*CMD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=ENV, text=True
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 90
    for line in proc.stderr:  # the first progress line that shows training under way
        if "epoch" in line or time.monotonic() > deadline:
            break
    assert proc.poll() is None, "training ended before it was interrupted"
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=90) == 130, rest
    assert "Traceback" not in rest and "interrupted" in rest and "--resume 1" in rest
    with dbn.Project.open(path) as project:
        assert list(project.runs()["status"]) == ["stopped"]
    assert (path / "runs" / "1" / "last.pt").is_file()


def test_info_and_demo(tmp_path: Path) -> None:
    path = _small_project(tmp_path / "p")
    info = _json(_cli("info", str(path), "--json"))
    assert info["splits"]["train"] == {"images": 6, "boxes": info["splits"]["train"]["boxes"]}
    with dbn.Project.open(path) as project:
        for split in ("train", "evaluate", "predict"):
            assert info["splits"][split]["images"] == len(project.images(split))
            assert info["splits"][split]["boxes"] == project.box_counts(split)
    assert [c["name"] for c in info["categories"]] == ["disc", "square"] and info["runs"] == []
    text = _cli("info", str(path))
    assert text.returncode == 0 and "6 images" in text.stdout and text.stderr == ""

    demo = _json(_cli("demo", str(tmp_path / "demo"), "--json", "-q"))
    assert (tmp_path / "demo" / "project.db").is_file()
    assert demo["splits"]["train"]["images"] > 0 and demo["splits"]["predict"]["images"] == 1


def test_import_images_by_glob_and_a_coco_file(tmp_path: Path) -> None:
    path = tmp_path / "new"
    scenes = _scenes(tmp_path / "src", 3, seed=4)
    done = _cli("import", str(path), str(tmp_path / "src" / "*.png"), "--reference", "--split", "evaluate")
    _one_line_error(done, "no project here")  # no --create: nothing is created
    assert not path.exists()
    done = _cli("import", str(path), str(tmp_path / "src" / "*.png"), "--reference", "--split", "evaluate",
                "--create", "--categories", "disc,square", "--json")  # fmt: skip
    assert _json(done)["images_added"] == 3
    with dbn.Project.open(path) as project:
        images = project.images("evaluate")
        assert sorted(im.name for im in images) == ["s4-0.png", "s4-1.png", "s4-2.png"]
        assert not any(im.copied for im in images)
    coco = {
        "images": [{"id": i + 1, "file_name": f.name, "width": 64, "height": 64} for i, (f, _, _) in enumerate(scenes)],
        "annotations": [
            {"id": 10 * i + j, "image_id": i + 1, "category_id": int(k) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
             "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            for i, (_, xyxy, cls) in enumerate(scenes) for j, ((x1, y1, x2, y2), k) in enumerate(zip(xyxy, cls))
        ],
        "categories": [{"id": 1, "name": "disc"}, {"id": 2, "name": "square"}],
    }  # fmt: skip
    (tmp_path / "src" / "boxes.json").write_text(json.dumps(coco))
    report = _json(_cli("import", str(path), "--annotations", str(tmp_path / "src" / "boxes.json"), "--json"))
    assert report["boxes_added"] == len(coco["annotations"]) and report["images_matched"] == 3
    with dbn.Project.open(path) as project:
        assert sum(len(project.annotations(im)) for im in project.images()) == len(coco["annotations"])
    bad = _cli(
        "import", str(path), "--annotations", str(tmp_path / "src" / "boxes.json"), "--format", "bogus"
    )
    _one_line_error(bad, "'bogus'")


def test_bad_arguments_exit_2(project_dir: Path) -> None:
    for args in (
        [],
        ["frobnicate", str(project_dir)],
        ["train", str(project_dir), "--epochs", "x"],
        ["export", str(project_dir)],  # -o is required
        ["export", str(project_dir), "--split", "nowhere", "-o", "x.json"],
        ["export", str(project_dir), "--threshold", "0.5", "-o", "x.json"],  # annotations have no scores
        ["import", str(project_dir)],  # nothing to import
    ):
        done = _cli(*args)
        assert done.returncode == 2 and "usage: deepblock-nb" in done.stderr and done.stdout == "", args
    helped = _cli("--help")
    assert helped.returncode == 0 and "exit status" in helped.stdout and "130" in helped.stdout


def test_a_missing_project_is_one_line_and_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for args in (["info"], ["train", *TINY], ["predict"], ["export", "-o", str(tmp_path / "x.json")]):
        _one_line_error(_cli(args[0], str(missing), *args[1:]), "no project here")
        assert not missing.exists()


def test_a_bad_format_is_one_line_naming_it(project_dir: Path) -> None:
    done = _cli("export", str(project_dir), "--format", "bogus", "-o", str(project_dir.parent / "x"))
    _one_line_error(done, "'bogus'")


def test_predict_without_a_trained_run_is_one_line(project_dir: Path) -> None:
    _one_line_error(_cli("predict", str(project_dir)), "no trained model")


def test_predict_on_an_empty_split_is_one_line(project_dir: Path) -> None:
    project = dbn.Project.open(project_dir)
    run = project._store.runs.create("ssdlite", {})
    (project.run_dir(run) / "best.pt").write_bytes(
        b"placeholder: the split is checked before the model loads"
    )
    project.close()
    _one_line_error(_cli("predict", str(project_dir)), "no images in the predict split")


def test_evaluate_and_train_errors_are_one_line(project_dir: Path) -> None:
    _one_line_error(_cli("evaluate", str(project_dir)), "evaluate split")
    _one_line_error(_cli("train", str(project_dir), "--epochs", "0"), "at least 1")
    _one_line_error(_cli("train", str(project_dir), "--model", "nope"), "unknown model preset")


def test_a_failed_job_is_one_line_and_the_project_is_closed(project_dir: Path) -> None:
    project = dbn.Project.open(project_dir)
    rec = project.add_image(write_png(project_dir.parent / "b.png", 64, 48), split="predict")
    run = project._store.runs.create("ssdlite", {})
    (project.run_dir(run) / "best.pt").write_bytes(b"not a checkpoint")
    project.close()
    done = _cli("predict", str(project_dir), "-q")
    _one_line_error(done, "")
    # the project opens again cleanly: nothing was left half-written
    again = dbn.Project.open(project_dir)
    assert again.image(rec.id).name == "b.png"
    again.close()
