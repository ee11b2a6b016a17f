"""The JupyterLab 4 extensions of the widget libraries are installed, prebuilt, and match the Python side."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ipycanvas import MultiCanvas

from deepblock_nb.widgets import Webcam

LABEXTENSIONS = Path(sys.prefix) / "share" / "jupyter" / "labextensions"


def _satisfies(version: str, spec: str) -> bool:
    """A small semver check for the ranges widget libraries use: ``^0.14``, ``^0.6.1``, ``~0.11.*``."""
    have = [int(p) for p in version.split("-")[0].split(".")[:3]]
    op, want_s = spec[0], spec[1:].replace(".*", "")
    want = [int(p) for p in want_s.split(".")]
    want += [0] * (3 - len(want))
    if op == "~":
        return have[:2] == want[:2] and have >= want
    if op == "^":
        fixed = 1 if want[0] else 2  # ^0.x fixes the minor version
        return have[:fixed] == want[:fixed] and have >= want
    return have == want


@pytest.mark.parametrize(
    ("spec", "version", "ok"),
    [
        ("^0.14", "0.14.3", True),
        ("^0.14", "0.15.0", False),
        ("~0.11.*", "0.11.0", True),
        ("^0.6.1", "0.6.0", False),
    ],
)
def test_satisfies(spec: str, version: str, ok: bool) -> None:
    assert _satisfies(version, spec) is ok


def _widgets() -> list[object]:
    import bqplot

    return [MultiCanvas(), bqplot.Figure(), Webcam()]


@pytest.mark.parametrize("index", range(3), ids=["ipycanvas", "bqplot", "anywidget"])
def test_labextension_is_prebuilt_and_compatible(index: int) -> None:
    widget = _widgets()[index]
    module, spec = widget._model_module, widget._model_module_version  # type: ignore[attr-defined]
    package = LABEXTENSIONS / module / "package.json"
    assert package.is_file(), f"no JupyterLab extension for {module} under {LABEXTENSIONS}"
    meta = json.loads(package.read_text())
    assert _satisfies(meta["version"], spec), f"{module} extension {meta['version']} does not satisfy {spec}"
    build = meta.get("jupyterlab", {}).get("_build", {})
    assert build.get("load"), f"{module}: the extension is not prebuilt (no jupyterlab._build.load)"
    assert (package.parent / build["load"]).is_file()
    # built for JupyterLab 4: it shares the @jupyter-widgets/base 6 of jupyterlab_widgets 3
    shared = json.dumps(meta.get("jupyterlab", {}).get("sharedPackages", {}))
    assert "@jupyter-widgets/base" in shared or module == "anywidget"
