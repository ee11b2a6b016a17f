"""`make lab`: JupyterLab starts on 127.0.0.1 and serves the workbench notebook;
the notebook itself runs top to bottom on a fresh demo project."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_jupyterlab_serves_the_workbench(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--allow-root",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={ROOT}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
    }
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    err = server.stderr.read().decode() if server.stderr else ""
                    pytest.fail(f"jupyter lab did not start: {err[-2000:]}")
                time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/api/contents/notebooks/workbench.ipynb", timeout=10) as r:
            nb = json.loads(r.read())
        assert nb["type"] == "notebook"
        sources = "".join("".join(c["source"]) for c in nb["content"]["cells"])
        assert "create_demo_project" in sources
        with urllib.request.urlopen(f"{base}/lab", timeout=10) as r:
            assert b"JupyterLab" in r.read()
        with urllib.request.urlopen(f"{base}/api/kernelspecs", timeout=10) as r:
            assert "python3" in json.loads(r.read())["kernelspecs"]
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


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
