"""mkdocs hook: the example notebooks ``notebooks/0*.ipynb`` become pages of the site.

Each is converted to Markdown with nbconvert (a JupyterLab dependency, so nothing is
added to the workbench's environment), as written, without running it: markdown cells
as they are, code cells as Python blocks. The notebook file itself is published beside
its page for download. The notebooks stay in ``notebooks/``, where JupyterLab, Binder
and the tests open them; a project folder a notebook created beside itself is never taken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_markdown(path: Path) -> str:
    from nbconvert import MarkdownExporter

    exporter = MarkdownExporter()
    exporter.exclude_output = True  # shown as written; tests/test_notebooks.py runs them
    body, _ = exporter.from_filename(str(path))
    note = (
        f"[Download {path.name}]({path.name}){{ .md-button }} "
        f"&nbsp; In a checkout: `notebooks/{path.name}`.\n\n"
    )
    return note + body


def on_files(files: Files, config: Any) -> Files:
    for path in sorted(NOTEBOOKS.glob("0*.ipynb")):
        files.append(File.generated(config, f"notebooks/{path.stem}.md", content=notebook_markdown(path)))
        files.append(File.generated(config, f"notebooks/{path.name}", abs_src_path=str(path)))
    return files
