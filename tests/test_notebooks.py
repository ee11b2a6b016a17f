"""The notebooks we ship (notebooks/0*.ipynb), each executed headless with nbclient in a
temporary folder, with assertions on what their cells print and show.

Cells whose outputs are checked carry the tag ``check`` (and a second tag naming what
they hold); such a cell prints one JSON line that the test parses.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests._jupyter import ROOT

NOTEBOOKS = ROOT / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def run_notebook(name: str, tmp_path: Path, timeout: int = 600) -> tuple[Any, float]:
    """Copy ``notebooks/<name>`` into ``tmp_path`` and execute it there (its working folder),
    so everything it writes lands in ``tmp_path``. Returns the executed notebook and seconds."""
    import nbformat
    from nbclient import NotebookClient

    copy = tmp_path / name
    shutil.copy(NOTEBOOKS / name, copy)
    nb = nbformat.read(copy, as_version=4)
    start = time.perf_counter()
    # the kernel gets the environment a user's JupyterLab would give it: a MPLBACKEND
    # set for headless runs (Agg) would make plt.show() print nothing
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    try:
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute(env=env)
    finally:
        nbformat.write(nb, copy)  # the executed notebook, to read after a failure
    seconds = time.perf_counter() - start
    errors = [o for c in code_cells(nb) for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    return nb, seconds


def code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def tagged(nb: Any, tag: str) -> Any:
    cells = [c for c in code_cells(nb) if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"one cell tagged {tag!r} expected, found {len(cells)}"
    return cells[0]


def stdout(cell: Any) -> str:
    return "".join(
        o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"
    )


def printed_json(nb: Any, tag: str) -> dict[str, Any]:
    """The last line of the tagged cell's stdout that parses as a JSON object."""
    for line in reversed(stdout(tagged(nb, tag)).splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise AssertionError(f"no JSON line printed by the cell tagged {tag!r}")


def mime_types(cell: Any) -> set[str]:
    return {
        m
        for o in cell.outputs
        if o.output_type in ("display_data", "execute_result")
        for m in o.get("data", {})
    }


def test_every_shipped_notebook_is_tested() -> None:
    shipped = sorted(p.name for p in NOTEBOOKS.glob("0*.ipynb"))
    source = Path(__file__).read_text()
    assert shipped and all(f'"{name}"' in source for name in shipped)


@pytest.mark.slow
def test_quickstart(tmp_path: Path) -> None:
    nb, seconds = run_notebook("01_quickstart.ipynb", tmp_path, timeout=900)
    assert WIDGET_VIEW in mime_types(tagged(nb, "app"))
    ev = printed_json(nb, "evaluate")
    assert ev["map50"] > 0.8 and 0 < ev["recall"] <= 1 and 0 < ev["f1"] <= 1
    assert printed_json(nb, "predict")["boxes"] > 10
    assert "image/png" in mime_types(tagged(nb, "plot"))
    assert (tmp_path / "quickstart_demo" / "project.db").is_file()
    print(f"01_quickstart.ipynb ran in {seconds:.0f} s")


@pytest.mark.slow
def test_large_images(tmp_path: Path) -> None:
    nb, seconds = run_notebook("02_large_images.ipynb", tmp_path)
    pred = printed_json(nb, "predict")
    assert pred["width"] == 8192 and 0.3 * pred["objects"] < pred["boxes"] < 3 * pred["objects"]
    assert "image/png" in mime_types(tagged(nb, "plot"))
    print(f"02_large_images.ipynb ran in {seconds:.0f} s")


def test_programmatic(tmp_path: Path) -> None:
    nb, seconds = run_notebook("03_programmatic.ipynb", tmp_path)
    ev = printed_json(nb, "evaluate")
    assert 0 <= ev["map50"] <= 1 and ev["classes"] == ["disc", "square", "triangle"]
    exports = printed_json(nb, "exports")
    # every format holds the same boxes: the predictions at the project's threshold
    assert exports["coco"] == exports["csv"] == exports["geojson"] == exports["predicted"]
    assert exports["annotations"] > 50 and exports["predicted"] > 0
    for tag in ("curves", "per_class_plot"):
        assert "image/png" in mime_types(tagged(nb, tag))
    assert (tmp_path / "programmatic_work" / "exports" / "predictions.csv").is_file()
    print(f"03_programmatic.ipynb ran in {seconds:.0f} s")


def test_bring_your_own_model(tmp_path: Path) -> None:
    nb, seconds = run_notebook("04_bring_your_own_model.ipynb", tmp_path)
    custom, preset = printed_json(nb, "custom"), printed_json(nb, "preset")
    assert custom["run"] != preset["run"]
    assert custom["boxes"] >= 0 and preset["boxes"] >= 0
    runs = printed_json(nb, "runs")
    assert runs["models"] == ["custom", "ssdlite"] and not {"failed", "stopped"} & set(runs["status"])
    assert (tmp_path / "byom_work" / "ssdlite_coco_layout.pth").is_file()
    print(f"04_bring_your_own_model.ipynb ran in {seconds:.0f} s")


def test_scientific_and_geo(tmp_path: Path) -> None:
    nb, seconds = run_notebook("05_scientific_and_geo.ipynb", tmp_path)
    default = printed_json(nb, "default_display")
    assert default["default_bands"] == [0, 1, 2]
    assert default["default_contrast"] > 60  # the auto window stretches a dim 12-bit signal
    chosen = printed_json(nb, "chosen_display")
    assert chosen["false_colour_contrast"] > 60 and chosen["red_inside_object"] > 200  # band 3 as red
    for tag in ("default_display", "chosen_display"):
        assert "image/png" in mime_types(tagged(nb, tag))
    # UTM 33N, 5 km west of the central meridian (15 E), northing 4,650 km: about 14.94 E, 42.0 N
    box = printed_json(nb, "annotation_lonlat")
    assert 14.9 < box["lon"] < 15.0 and 41.9 < box["lat"] < 42.1
    preds = printed_json(nb, "prediction_lonlat")
    if preds["features"]:
        assert 14.9 < preds["lon"] < 15.0 and 41.9 < preds["lat"] < 42.1
    print(f"05_scientific_and_geo.ipynb ran in {seconds:.0f} s")
