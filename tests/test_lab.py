"""`make lab`: JupyterLab starts on 127.0.0.1 and serves the workbench notebook;
the notebook itself runs top to bottom on a fresh demo project."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from tests._jupyter import ROOT, jupyter_lab


def test_jupyterlab_serves_the_workbench(tmp_path: Path) -> None:
    with jupyter_lab(ROOT, tmp_path) as base:
        with urllib.request.urlopen(f"{base}/api/contents/notebooks/workbench.ipynb", timeout=10) as r:
            nb = json.loads(r.read())
        assert nb["type"] == "notebook"
        sources = "".join("".join(c["source"]) for c in nb["content"]["cells"])
        assert "create_demo_project" in sources
        with urllib.request.urlopen(f"{base}/lab", timeout=10) as r:
            assert b"JupyterLab" in r.read()
        with urllib.request.urlopen(f"{base}/api/kernelspecs", timeout=10) as r:
            assert "python3" in json.loads(r.read())["kernelspecs"]


@pytest.mark.slow
def test_workbench_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "workbench.ipynb", as_version=4)
    os.environ["DEEPBLOCK_DEMO"] = str(tmp_path / "demo")
    os.environ["DEEPBLOCK_DEMO_EPOCHS"] = "1"
    try:
        NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        os.environ.pop("DEEPBLOCK_DEMO", None)
        os.environ.pop("DEEPBLOCK_DEMO_EPOCHS", None)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert errors == []
    assert (tmp_path / "demo" / "predictions.json").is_file()
