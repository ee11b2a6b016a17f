"""The package's surface: fast import, no torch or widgets unless used, a CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import deepblock_nb as dbn

ROOT = Path(__file__).resolve().parents[1]


def test_import_does_not_load_torch_or_widget_libraries() -> None:
    code = (
        "import sys, deepblock_nb as dbn; dbn.Project; dbn.Detections; dbn.metrics; "
        "heavy = [m for m in ('torch', 'torchvision', 'ipywidgets', 'ipycanvas', 'bqplot') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def test_public_surface_and_errors() -> None:
    for name in dbn.__all__:
        assert getattr(dbn, name) is not None
    for err in (dbn.ImageReadError, dbn.FormatError, dbn.AnnotationError, dbn.PathError, dbn.ProjectError):
        assert issubclass(err, dbn.DeepBlockError)


def test_cli_info_and_bad_project(tmp_path: Path) -> None:
    dbn.Project.create(tmp_path / "p", categories=["car"]).close()
    ok = subprocess.run(
        [sys.executable, "-m", "deepblock_nb.cli", "info", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ok.returncode == 0 and "car" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "deepblock_nb.cli", "info", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 1 and "no project here" in bad.stderr
