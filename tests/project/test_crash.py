"""A kernel killed with SIGKILL while writing boxes leaves a sound project."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import deepblock_nb as dbn
from tests.conftest import write_png

CHILD = textwrap.dedent(
    """
    import sys
    import deepblock_nb as dbn
    p = dbn.Project.open(sys.argv[1])
    img = p.images()[0]
    i = 0
    while True:
        box = p.add_box(img, "car", [i % 60, 0, i % 60 + 3, 3])
        print(box, flush=True)  # printed only after the call returned
        i += 1
    """
)


def test_sigkill_while_writing_keeps_every_returned_box(tmp_path: Path) -> None:
    p = dbn.Project.create(tmp_path / "p", categories=["car"])
    p.add_image(write_png(tmp_path / "a.png"))
    p.close()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "p")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert child.stdout is not None
    returned: list[int] = []
    deadline = time.time() + 60
    while len(returned) < 400 and time.time() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        returned.append(int(line))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    returned += [int(x) for x in child.stdout.read().split()]  # lines already written
    assert len(returned) >= 400

    cx = sqlite3.connect(tmp_path / "p" / "project.db")
    assert cx.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cx.close()
    q = dbn.Project.open(tmp_path / "p")
    stored = set(q.annotations(q.images()[0]).ids.tolist())
    assert set(returned) <= stored
    assert len(stored) - len(returned) <= 1  # at most the call in flight
    q.close()
