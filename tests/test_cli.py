"""The command line as a script runs it: one line and a non-zero status on any error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import deepblock_nb as dbn
from tests.conftest import write_png

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deepblock_nb.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def _one_line_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], done.stderr


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    project = dbn.Project.create(tmp_path / "p", categories=["car"])
    rec = project.add_image(write_png(tmp_path / "a.png", 64, 48))
    project.add_box(rec, "car", [2, 2, 30, 30])
    project.close()
    return tmp_path / "p"


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
    _one_line_error(_cli("info", str(project_dir.parent / "missing")), "no project here")


def test_a_failed_job_is_one_line_and_the_project_is_closed(project_dir: Path) -> None:
    project = dbn.Project.open(project_dir)
    rec = project.add_image(write_png(project_dir.parent / "b.png", 64, 48), split="predict")
    run = project._store.runs.create("ssdlite", {})
    (project.run_dir(run) / "best.pt").write_bytes(b"not a checkpoint")
    project.close()
    done = _cli("predict", str(project_dir))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    # the project opens again cleanly: nothing was left half-written
    again = dbn.Project.open(project_dir)
    assert again.image(rec.id).name == "b.png"
    again.close()
