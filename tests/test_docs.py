"""The documentation site (mkdocs.yml, docs/): it builds with ``mkdocs build --strict``, so a
broken link, a page missing from the navigation or a docstring that no longer matches its
function fails here, and the API reference holds the Project's whole public surface,
methods inherited from its base classes included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._jupyter import ROOT

pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    return out


def test_the_reference_documents_the_public_project_api(site: Path) -> None:
    import deepblock_nb as dbn

    html = (site / "api" / "project" / "index.html").read_text()
    for name in ("train", "predict", "export_predictions", "evaluate", "add_box", "categories"):
        assert f'id="deepblock_nb.Project.{name}"' in html, name
    # every public name, wherever in Project's bases it is defined
    public = [n for n in dir(dbn.Project) if not n.startswith("_")]
    missing = [n for n in public if f'id="deepblock_nb.Project.{n}"' not in html]
    assert missing == [], f"public Project members missing from docs/api/project.md: {missing}"


def test_every_top_level_name_has_a_reference_entry(site: Path) -> None:
    import deepblock_nb as dbn

    pages = "".join(p.read_text() for p in (site / "api").rglob("index.html"))
    # deepblock_nb.NAME, or NAME in the module it comes from (deepblock_nb.errors.FormatError)
    missing = [n for n in dbn.__all__ if not re.search(rf'id="deepblock_nb(\.[a-z_]+)*\.{n}"', pages)]
    assert missing == [], missing


def test_the_notebooks_and_pictures_are_in_the_site(site: Path) -> None:
    for notebook in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        page = site / "notebooks" / notebook.stem / "index.html"
        assert page.is_file(), notebook.name
    for picture in (ROOT / "docs" / "images").glob("*.png"):
        assert (site / "images" / picture.name).is_file(), picture.name
    workflow = (site / "workflow" / "index.html").read_text()
    assert all(f"images/{p.name}" in workflow for p in (ROOT / "docs" / "images").glob("*.png"))
