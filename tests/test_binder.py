"""binder/: what Binder (repo2docker) builds, installed here into a fresh virtual environment.

Checked here: binder/requirements.txt installs into an empty venv (pip's cache and this
machine's package indexes, nothing from the main .venv), binder/postBuild creates the demo
project where the quick start opens it, and a Jupyter kernel of that venv starts, imports
deepblock_nb and torch, and opens the project.

Not checked here (this machine reaches PyPI only): PyTorch's CPU wheel index. Its
``--extra-index-url`` line is taken out before installing, so torch and torchvision come
at the same pins from this machine's own wheels (a CUDA build that runs on the CPU)
instead of the ``+cpu`` builds Binder gets. repo2docker itself (its base image, its
Python, running postBuild as the notebook user) is not run either.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests._jupyter import ROOT

BINDER = ROOT / "binder"
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def requirement_lines() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def makefile_torch_pins() -> list[str]:
    match = re.search(r"^TORCH\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile pins torch in its TORCH variable"
    return match.group(1).split()


def test_requirements_take_torch_from_the_cpu_index_at_the_makefile_pins() -> None:
    lines = requirement_lines()
    assert CPU_INDEX in lines
    pins = makefile_torch_pins()
    assert [p.split("==")[0] for p in pins] == ["torch", "torchvision"]
    assert all(pin in lines for pin in pins), (pins, lines)
    assert any(re.fullmatch(r"-e \.(\[[a-z,]+\])?", line) for line in lines), "the package itself"


def test_post_build_creates_the_project_the_quickstart_opens() -> None:
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "repo2docker runs postBuild only when it is executable"
    cells = json.loads((ROOT / "notebooks" / "01_quickstart.ipynb").read_text())["cells"]
    source = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    folder = re.search(r'create_demo_project\(Path\("([^"]+)"\)\)', source)
    assert folder, "the quick start opens its demo project with create_demo_project(Path(...))"
    assert f"python -m deepblock_nb.demo notebooks/{folder.group(1)}" in post_build.read_text()


KERNEL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        code = (
            "import json, sys, torch, torchvision, deepblock_nb as dbn\\n"
            "p = dbn.Project.open(%r)\\n"
            "print(json.dumps({'prefix': sys.prefix, 'torch': torch.__version__, "
            "'images': len(p.images()), 'categories': [c.name for c in p.categories]}))\\n"
            "p.close()"
        ) % sys.argv[1]
        out = []
        reply = kc.execute_interactive(
            code, timeout=300, output_hook=lambda m: out.append(m["content"].get("text", ""))
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        print("".join(out).strip().splitlines()[-1])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    """
)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_binder_environment_installs_and_runs_a_kernel(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    requirements = tmp_path / "requirements.txt"
    # the CPU index is unreachable here: the rest of the file as it is
    requirements.write_text("\n".join(line for line in requirement_lines() if line != CPU_INDEX) + "\n")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = str(venv / "bin" / "python")
        start = time.perf_counter()
        # from the repository root, as repo2docker does, so that "-e ." is this checkout
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "-r", str(requirements)],
            check=True, cwd=ROOT, env=env, timeout=2000,
        )  # fmt: skip
        installed = time.perf_counter() - start

        home = tmp_path / "repo"  # postBuild runs in the repository root; a scratch one here
        (home / "notebooks").mkdir(parents=True)
        subprocess.run(["bash", str(BINDER / "postBuild")], check=True, cwd=home, env=env, timeout=600)
        project = home / "notebooks" / "quickstart_demo"
        assert (project / "project.db").is_file()

        ran = subprocess.run(
            [python, "-c", KERNEL_SCRIPT, str(project)],
            check=True, cwd=home, env=env, timeout=600, capture_output=True, text=True,
        )  # fmt: skip
        seen = json.loads(ran.stdout.strip().splitlines()[-1])
        assert Path(seen["prefix"]).resolve() == venv.resolve(), "the kernel runs in the Binder venv"
        assert seen["torch"].split("+")[0] == makefile_torch_pins()[0].split("==")[1]
        assert seen["images"] > 0 and seen["categories"] == ["disc", "square", "triangle"]
        print(f"binder requirements installed into a fresh venv in {installed:.0f} s")
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # several GB of torch
