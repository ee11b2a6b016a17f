"""Training on several processes (torchrun, DistributedDataParallel) on the CPU with Gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.errors import ArgumentError
from deepblock_nb.jobs import JobStatus
from deepblock_nb.ml import distributed
from deepblock_nb.ml.checkpoints import load_checkpoint
from tests.ml.conftest import make_shapes

FAST = {"tile_size": 64, "batch_size": 4, "num_workers": 0, "holdout": 0.25}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    """16 train images of 96 px, squares and discs."""
    project = dbn.Project.create(tmp_path / "proj", categories=["square", "disc"])
    ids = [c.id for c in project.categories]  # square, disc
    for s in make_shapes(tmp_path / "src", 16, (96, 96), seed=5, object_px=(20, 36)):
        rec = project.add_image(s.path, split="train")
        project.add_boxes(rec, [ids[int(c) - 1] for c in s.category_ids], s.xyxy)
    yield project
    project.close()


def _children_gone(pids: list[int]) -> bool:
    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        stat = Path(f"/proc/{pid}/stat")
        return not (stat.exists() and stat.read_text().split()[2] == "Z")

    return not any(alive(p) for p in pids)


def _ranks_of(run_dir: Path) -> list[int]:
    """Processes whose command line trains ``run_dir``'s run under torchrun."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"deepblock_nb.cli" in cmdline and str(run_dir.parents[1]).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


# -- helpers without processes ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "world", "per_rank"),
    [(0, 2, 0), (1, 2, 1), (5, 2, 3), (6, 3, 2), (7, 1, 7)],
)
def test_shard_gives_every_rank_as_many_indices(n: int, world: int, per_rank: int) -> None:
    order = np.random.default_rng(0).permutation(n).astype(np.int64)
    parts = [distributed.shard(order, r, world) for r in range(world)]
    assert all(len(p) == per_rank for p in parts)
    assert set(np.concatenate(parts).tolist()) == set(order.tolist())  # every index, padding repeats


def test_env_ranks() -> None:
    assert distributed.env_ranks({}) is None
    assert distributed.env_ranks({"RANK": "0", "WORLD_SIZE": "1"}) is None  # one process: as without
    ranks = distributed.env_ranks({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert ranks == distributed.Ranks(1, 4, 1) and not ranks.is_main
    assert distributed.lr_scale(1) == 1.0 and distributed.lr_scale(4) == 2.0


@pytest.mark.parametrize("devices", [0, -1, "x", 1.5, True])
def test_bad_devices_is_an_argument_error_before_anything_starts(project: Any, devices: Any) -> None:
    with pytest.raises(ArgumentError, match="devices"):
        project.train(epochs=1, model="small", device="cpu", devices=devices)
    assert project.runs().empty and not project._jobs.jobs


# -- several processes -------------------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_train_one_run(project: Any) -> None:
    job = project.train(epochs=3, model="small", device="cpu", devices=2, **FAST)
    seen: list[int] = []
    job.on("history", lambda j: seen.append(len(j.history)))
    job.wait(240)
    assert job.status is JobStatus.FINISHED, (job.error, job.message)
    run_id = job.result
    epochs = job.history.query("kind == 'epoch'")
    assert epochs["epoch"].tolist() == [1, 2, 3]  # each epoch once, from rank 0 alone
    assert epochs["loss"].iloc[-1] < epochs["loss"].iloc[0]
    assert len(seen) >= 2  # streamed while it trained, not only at the end
    runs = project.runs()
    assert len(runs) == 1
    (run,) = runs.to_dict("records")
    assert run["config"]["world_size"] == 2 and run["status"] == "finished" and run["epochs_done"] == 3
    run_dir = project.run_dir(run_id)
    assert sorted(p.name for p in run_dir.glob("*.pt")) == ["best.pt", "last.pt"]
    stored = project._store.runs.history(run_id)
    assert [r["epoch"] for r in stored if r["kind"] == "epoch"] == [1, 2, 3]
    assert len(stored) == len(job.history)
    steps = [r["step"] for r in stored if r["kind"] == "step"]
    assert steps == sorted(set(steps))  # one process wrote the steps, once each
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["epoch"] == 3 and not any(k.startswith("module.") for k in ckpt["model_state"])

    again = dbn.Project.open(project.path)
    try:
        row = again.runs().set_index("id").loc[run_id]
        assert row["status"] == "finished" and row["config"]["world_size"] == 2
    finally:
        again.close()


@pytest.mark.slow
def test_stop_reaches_every_rank_and_keeps_a_resumable_run(project: Any) -> None:
    job = project.train(epochs=40, model="small", device="cpu", devices=2, **FAST)
    run_dir = project.run_dir(job.result)
    pids: list[int] = []

    def stop_after_steps(j: Any) -> None:
        if not pids:
            pids.extend(_ranks_of(run_dir))
        if (j.history.get("kind") == "step").sum() >= 3:
            j.stop()

    job.on("history", stop_after_steps)
    job.wait(240)
    assert job.status is JobStatus.STOPPED, (job.error, job.message)
    assert len(pids) >= 2
    deadline = time.monotonic() + 10
    while not _children_gone(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _children_gone(pids)
    assert not (run_dir / distributed.STOP_FILE).exists()
    assert project.runs().iloc[-1]["status"] == "stopped"
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["optimizer_state"]["state"] and ckpt["epoch"] < 40

    resumed = project.train(epochs=1, resume=True, device="cpu", **FAST).wait(240)  # in this process
    assert resumed.status is JobStatus.FINISHED, resumed.error
    assert resumed.result == job.result


@pytest.mark.slow
def test_cli_under_torchrun_records_one_run_of_two_ranks(project: Any, tmp_path: Path) -> None:
    path = project.path
    project.close()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    options = json.dumps({"num_workers": 0, "holdout": 0.25})
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "deepblock_nb.cli", "train", str(path), "--epochs", "1", "--model", "small",
        "--device", "cpu", "--tile-size", "64", "--batch-size", "4", "--options", options, "--json", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and reports[0]["status"] == "finished"  # rank 0 alone reports
    again = dbn.Project.open(path)
    try:
        runs = again.runs()
        assert len(runs) == 1 and runs.iloc[0]["config"]["world_size"] == 2
        assert runs.iloc[0]["status"] == "finished" and runs.iloc[0]["epochs_done"] == 1
    finally:
        again.close()


@pytest.mark.slow
def test_a_failing_rank_fails_the_job_with_its_error(project: Any, tmp_path: Path) -> None:
    missing = tmp_path / "missing-weights.pt"
    job = project.train(epochs=1, model="small", device="cpu", devices=2, weights=missing, **FAST)
    job.wait(240)
    assert job.status is JobStatus.FAILED
    assert "missing-weights.pt does not exist" in str(job.error)  # the rank's own error line
    assert project.runs().iloc[-1]["status"] == "failed"
    assert (project.run_dir(job.result) / "train.log").is_file()
