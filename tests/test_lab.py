"""`make lab`: it creates the demo project where the quick start opens it, and JupyterLab
(on 127.0.0.1) serves that notebook, notebooks/01_quickstart.ipynb.

What `make lab` runs is read from the Makefile itself (``make -n lab`` prints the recipe
without running it), so this test follows any change to the Makefile. The notebook is
executed top to bottom by tests/test_notebooks.py::test_quickstart.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests._jupyter import ROOT, jupyter_lab

QUICKSTART = "notebooks/01_quickstart.ipynb"


def lab_recipe() -> list[list[str]]:
    """The commands of `make lab` after its setup, each split as a shell would."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    printed = subprocess.run(
        ["make", "--no-print-directory", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    commands = [shlex.split(line, comments=True) for line in printed.splitlines()]
    return [c for c in commands if "deepblock_nb.demo" in c or any(w.endswith("jupyter") for w in c)]


def quickstart_demo_folder(notebook: Path) -> Path:
    """The folder the quick start opens its demo project in (relative to the notebook)."""
    cells = json.loads(notebook.read_text())["cells"]
    source = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    found = re.search(r'create_demo_project\(Path\("([^"]+)"\)\)', source)
    assert found, "the quick start opens its demo project with create_demo_project(Path(...))"
    return notebook.parent / found.group(1)


def test_make_lab_opens_the_quickstart_on_the_demo_project() -> None:
    demo, lab = lab_recipe()
    notebooks = [w for w in lab if w.endswith(".ipynb")]
    assert notebooks == [QUICKSTART], lab
    assert lab[lab.index(next(w for w in lab if w.endswith("jupyter"))) + 1] == "lab"
    # the demo project is created before JupyterLab starts, in the folder the notebook opens
    created = ROOT / demo[demo.index("deepblock_nb.demo") + 1]
    assert created.resolve() == quickstart_demo_folder(ROOT / QUICKSTART).resolve()
    # notebooks/app.ipynb (the App alone) is pointed at the same project
    assert f"DEEPBLOCK_DEMO={created.resolve()}" in lab


def test_jupyterlab_serves_the_quickstart(tmp_path: Path) -> None:
    _, lab = lab_recipe()
    notebook = next(w for w in lab if w.endswith(".ipynb"))
    with jupyter_lab(ROOT, tmp_path) as base:
        with urllib.request.urlopen(f"{base}/api/contents/{notebook}", timeout=10) as r:
            nb = json.loads(r.read())
        assert nb["type"] == "notebook" and nb["name"] == "01_quickstart.ipynb"
        sources = ["".join(c["source"]) for c in nb["content"]["cells"] if c["cell_type"] == "code"]
        app = [s for s in sources if "project.app()" in s]
        assert len(app) == 1 and "create_demo_project" in app[0]
        # the page Binder's urlpath opens (`make lab` passes the file itself, so JupyterLab
        # serves its folder and opens it there)
        with urllib.request.urlopen(f"{base}/lab/tree/{notebook}", timeout=10) as r:
            assert b"JupyterLab" in r.read()
        with urllib.request.urlopen(f"{base}/api/kernelspecs", timeout=10) as r:
            assert "python3" in json.loads(r.read())["kernelspecs"]
