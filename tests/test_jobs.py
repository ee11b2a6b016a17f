from __future__ import annotations

import threading
import time

import pytest

from deepblock_nb.errors import JobError
from deepblock_nb.jobs import Job, JobQueue, JobStatus


def test_job_finishes_with_result_history_and_callbacks() -> None:
    q = JobQueue()
    seen: list[str] = []

    def work(job: Job) -> None:
        for i in range(3):
            job.add_history({"step": i, "loss": 1.0 / (i + 1)})
            job.set_progress((i + 1) / 3, f"step {i + 1}/3")
        job.result = 42

    job = q.submit("train", work)
    job.on("done", lambda j: seen.append(j.status.value))
    job.wait(10)
    assert job.status is JobStatus.FINISHED and job.result == 42 and job.progress == 1.0
    assert job.history["step"].tolist() == [0, 1, 2]
    assert job.message == "step 3/3"
    assert seen == ["finished"]
    late: list[str] = []
    job.on("done", lambda j: late.append("late"))
    assert late == ["late"]


def test_stop_is_cooperative_and_keeps_work() -> None:
    q = JobQueue()
    started = threading.Event()
    steps: list[int] = []

    def work(job: Job) -> None:
        started.set()
        for i in range(10_000):
            if job.should_stop:
                return
            steps.append(i)
            time.sleep(0.001)

    job = q.submit("train", work)
    started.wait(5)
    job.stop()
    job.wait(10)
    assert job.status is JobStatus.STOPPED and 0 < len(steps) < 10_000


def test_failure_is_captured_not_lost() -> None:
    q = JobQueue()

    def work(job: Job) -> None:
        raise ValueError("image x.png is corrupt")

    job = q.submit("predict", work).wait(10)
    assert job.status is JobStatus.FAILED and isinstance(job.error, ValueError)
    assert "x.png" in job.message
    with pytest.raises(JobError, match="x.png"):
        job.wait(raise_on_error=True)


def test_one_heavy_job_at_a_time_others_queue() -> None:
    q = JobQueue()
    gate = threading.Event()
    order: list[str] = []

    def first(job: Job) -> None:
        order.append("first-start")
        gate.wait(10)
        order.append("first-end")

    def second(job: Job) -> None:
        order.append("second")

    a = q.submit("train", first)
    b = q.submit("predict", second)
    time.sleep(0.1)
    assert a.status is JobStatus.RUNNING and b.status is JobStatus.QUEUED
    assert q.active is a
    gate.set()
    b.wait(10)
    assert order == ["first-start", "first-end", "second"]


def test_stopping_a_queued_job_never_runs_it() -> None:
    q = JobQueue()
    gate = threading.Event()
    ran: list[str] = []
    a = q.submit("train", lambda job: gate.wait(10))
    b = q.submit("train", lambda job: ran.append("b"))
    b.stop()
    gate.set()
    b.wait(10)
    a.wait(10)
    assert b.status is JobStatus.STOPPED and ran == []


def test_a_raising_callback_does_not_break_the_job() -> None:
    q = JobQueue()

    def bad(job: Job) -> None:
        raise RuntimeError("widget bug")

    job = Job("train", lambda j: j.set_progress(0.5, "half"))
    job.on("progress", bad)
    job._run()
    assert job.status is JobStatus.FINISHED
    assert q.jobs == []
