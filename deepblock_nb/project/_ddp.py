"""``project.train(devices=N)``: torchrun in a subprocess, its history streamed back.

The run record exists before the subprocess starts (queued, with ``world_size``),
so the job knows its id. The job's worker thread starts

    python -m torch.distributed.run --standalone --nproc_per_node=N \\
        -m deepblock_nb.cli train PROJECT --run-id ID ...

(``--resume ID`` for a resumed run) and, every :data:`POLL_S` seconds, reads the
history rows that rank 0 has stored for the run and feeds the new ones to
``job.add_history`` and ``job.set_progress``, as the in-process trainer does: live
curves see no difference. ``job.stop()`` writes ``runs/<id>/STOP``; rank 0 reads
it at the next step, every rank stops at that same step and rank 0 keeps a
resumable ``last.pt``. Only when the processes have not ended
:data:`STOP_GRACE_S` seconds later is their process group killed. The
subprocess's output goes to ``runs/<id>/train.log``; a failed run raises its
error line from there.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepblock_nb.errors import ModelError

if TYPE_CHECKING:
    from deepblock_nb.jobs import Job
    from deepblock_nb.project._project import Project

__all__ = ["command", "launch"]

POLL_S = 0.5  # how often rank 0's stored history is read
STOP_GRACE_S = 120.0  # after a stop request: how long the ranks get to end by themselves
KILL_GRACE_S = 10.0  # after SIGTERM, before SIGKILL
LOG_NAME = "train.log"
STOP_NAME = "STOP"  # deepblock_nb.ml.distributed.STOP_FILE: the project layer reads no torch module
#: torchrun's own variables: a launcher that runs under torchrun must not pass them on
_TORCHRUN_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "ROLE_NAME",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "TORCHELASTIC_MAX_RESTARTS",
)


def command(
    project_path: Path,
    run_id: int,
    devices: int,
    epochs: int | None,
    model: str,
    device: str,
    resume: bool,
    options: dict[str, Any],
) -> list[str]:
    """The torchrun command line that trains run ``run_id`` on ``devices`` processes."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={int(devices)}",
        "-m",
        "deepblock_nb.cli",
        "train",
        str(project_path),
        "--model",
        model,
        "--device",
        str(device),
        "--resume" if resume else "--run-id",
        str(int(run_id)),
    ]
    if epochs is not None:
        cmd += ["--epochs", str(int(epochs))]
    if options:
        cmd += ["--options", json.dumps(options, default=str)]
    return cmd


def environment(device: str, devices: int) -> dict[str, str]:
    """The subprocess's environment: this one without torchrun's variables; no GPU
    visible when training on the CPU; torch threads shared out between the ranks."""
    env = {k: v for k, v in os.environ.items() if k not in _TORCHRUN_ENV}
    if str(device) == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, devices))))
    # the package the parent runs, also when it is not installed (a source checkout)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def launch(
    project: Project,
    run_id: int,
    devices: int,
    epochs: int | None,
    model: str,
    device: str,
    resume: bool,
    options: dict[str, Any],
) -> Job:
    """Queue the job that trains run ``run_id`` on ``devices`` processes."""
    cmd = command(project.path, run_id, devices, epochs, model, device, resume, options)
    env = environment(device, devices)

    def work(job: Job) -> None:
        _run(job, project, run_id, devices, cmd, env)

    return project._jobs.submit("train", work, description=f"train run {run_id} on {devices} processes")


def _run(job: Job, project: Project, run_id: int, devices: int, cmd: list[str], env: dict[str, str]) -> None:
    run_dir = project.run_dir(run_id)
    stop_file, log_path = run_dir / STOP_NAME, run_dir / LOG_NAME
    stop_file.unlink(missing_ok=True)  # a stale request must not stop the new processes
    follow = _Follower(job, project, run_id)
    job.set_progress(0.0, f"run {run_id}: starting {devices} processes")
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
    except OSError as exc:
        project._store.runs.update(run_id, status="failed", finished=True)
        project._emit("runs", action="ended", run=run_id, report=None)
        raise ModelError(f"cannot start torchrun for run {run_id} ({' '.join(cmd[:4])} ...): {exc}") from exc
    asked: float | None = None
    try:
        while proc.poll() is None:
            follow.read()
            if job.should_stop and asked is None:
                stop_file.touch()
                asked = time.monotonic()
            if asked is not None and time.monotonic() - asked > STOP_GRACE_S:
                _kill(proc)
            time.sleep(POLL_S)
        follow.read()
    except BaseException:
        _kill(proc)
        raise
    finally:
        stop_file.unlink(missing_ok=True)
    rc = proc.returncode
    runs = project._store.runs
    run = runs.get(run_id) or {}
    if run.get("status") in ("queued", "running"):  # the processes died before rank 0 said how it ended
        runs.update(run_id, status="stopped" if job.should_stop else "failed", finished=True)
        run = runs.get(run_id) or {}
    project._emit("runs", action="ended", run=run_id, report=None)
    if rc != 0 and not job.should_stop:
        raise ModelError(
            f"training run {run_id} on {devices} processes failed (exit status {rc}): {_error_line(log_path)}"
        )
    status, best = str(run.get("status")), run.get("best_score")
    text = f"{status}: run {run_id}, {run.get('epochs_done') or 0} epochs on {devices} processes"
    if best is not None:
        text += f", best mAP50 {float(best):.3f}"
    job.set_progress(1.0 if status == "finished" else job.progress, text)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """End torchrun and its ranks (their own process group): SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(KILL_GRACE_S)
    except ProcessLookupError:
        pass


def _error_line(log_path: Path) -> str:
    """What went wrong, from the subprocess's output: the CLI's own error line, else its last lines."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return f"no output ({log_path} cannot be read)"
    for line in reversed(lines):
        if line.startswith("deepblock-nb: error:") or "deepblock-nb: error:" in line:
            return line.split("deepblock-nb: error:", 1)[1].strip() + f" (the whole output: {log_path})"
    tail = " | ".join(line.strip() for line in lines[-8:] if line.strip())
    return f"{tail or 'no output'} (the whole output: {log_path})"


class _Follower:
    """Feeds the rows rank 0 stores for the run to the job, as the in-process trainer does."""

    def __init__(self, job: Job, project: Project, run_id: int) -> None:
        self.job, self.project, self.run_id = job, project, run_id
        earlier = project._store.runs.history(run_id)  # a resumed run's rows so far ...
        self.seen = len(earlier)
        self.start_epoch = int((project._store.runs.get(run_id) or {}).get("epochs_done") or 0)
        if earlier:  # ... go to the job first, as the trainer sends a checkpoint's history
            job.add_history(earlier)
        self.steps_per_epoch: float | None = None

    def read(self) -> None:
        new = self.project._store.runs.history(self.run_id, since=self.seen)  # only the rows not yet fed
        self.seen += len(new)
        if not new:
            return
        self.job.add_history(new)
        epochs = [r for r in new if r.get("kind") == "epoch"]
        if epochs and epochs[-1].get("epoch"):
            self.steps_per_epoch = float(epochs[-1]["step"]) / float(epochs[-1]["epoch"])
            self.project._emit("runs", action="progress", run=self.run_id, report=None)
        row = next((r for r in reversed(new) if r.get("kind") in ("step", "epoch")), None)
        if row is not None:
            self.job.set_progress(*self._progress(row))

    def _progress(self, row: dict[str, Any]) -> tuple[float, str]:
        config = dict((self.project._store.runs.get(self.run_id) or {}).get("config") or {})
        target = int(config.get("target_epochs") or 0)
        epoch = int(row.get("epoch") or 1)
        done = float(epoch if row.get("kind") == "epoch" else epoch - 1)
        if row.get("kind") == "step" and self.steps_per_epoch:
            into = float(row.get("step") or 0) - (epoch - 1) * self.steps_per_epoch
            done += min(1.0, max(0.0, into / self.steps_per_epoch))
        fraction = (
            (done - self.start_epoch) / (target - self.start_epoch) if target > self.start_epoch else 0.0
        )
        text = f"epoch {epoch}/{target}" if target else f"epoch {epoch}"
        loss = row.get("loss")
        if isinstance(loss, (int, float)) and math.isfinite(loss):
            text += f", loss {loss:.3f}"
        score = row.get("score")
        if isinstance(score, (int, float)) and score >= 0:
            text += f", mAP50 {score:.3f}"
        return min(1.0, max(0.0, fraction)), text
