from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from deepblock_nb.errors import ArgumentError, ArgumentTypeError, DeepBlockError, JobError
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


# -- thread safety --------------------------------------------------------------


def _in_thread(fn: Callable[[], None], timeout: float = 3.0) -> None:
    """Run ``fn`` on a fresh thread; fail (not hang) if it does not return in time."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn} did not return within {timeout} s (deadlock?)"
    if errors:
        raise errors[0]


def _until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def test_a_status_callback_may_take_a_lock_held_by_a_thread_that_uses_the_job() -> None:
    shared = threading.Lock()  # e.g. a widget's or the database's lock
    in_callback = threading.Event()
    got_lock: list[bool] = []
    events: list[str] = []

    def work(job: Job) -> None:
        while not job.should_stop:
            time.sleep(0.001)

    job = Job("train", work)

    def on_status(j: Job) -> None:
        events.append(f"status:{j.status}")
        if j.status is JobStatus.RUNNING:
            in_callback.set()
            got_lock.append(shared.acquire(timeout=2))  # a deadlock shows as False
            if got_lock[-1]:
                shared.release()

    job.on("status", on_status)
    job.on("progress", lambda j: events.append("progress"))
    job.on("done", lambda j: events.append("done"))

    worker = threading.Thread(target=job._run, daemon=True)

    def holder() -> None:
        with shared:  # held until the job was used: the RUNNING callback waits for it
            worker.start()
            assert in_callback.wait(2)
            job.set_progress(0.5, "half")  # the job's lock must be free now
            job.add_history({"step": 1})
            assert len(job.history) == 1
            assert job.status is JobStatus.RUNNING
            job.stop()

    _in_thread(holder)
    worker.join(3)
    assert not worker.is_alive()
    assert got_lock == [True]
    assert job.status is JobStatus.STOPPED and job.done
    # one delivery per event, in the order they happened, events of holder() after
    # the callback that was running when they happened
    assert events == ["status:running", "progress", "status:stopping", "status:stopped", "done"]


def test_a_callback_that_waits_for_another_thread_using_the_job_does_not_deadlock() -> None:
    other_done = threading.Event()
    waited: list[bool] = []

    def other(job: Job) -> None:
        job.set_progress(0.1, "from another thread")
        job.stop()
        other_done.set()

    def on_status(job: Job) -> None:
        if job.status is JobStatus.RUNNING:
            threading.Thread(target=other, args=(job,), daemon=True).start()
            waited.append(other_done.wait(2))  # a deadlock shows as False

    job = Job("train", lambda j: None)
    job.on("status", on_status)
    _in_thread(job._run)
    assert job.wait(3).done
    assert waited == [True]
    assert job.status is JobStatus.STOPPED and job.message == "from another thread"


def test_on_job_sees_queued_running_finished_of_instant_jobs() -> None:
    q = JobQueue()
    ran: set[Job] = set()
    seen: dict[Job, list[str]] = {}
    seen_late: dict[Job, list[str]] = {}

    def slow_first(job: Job) -> None:
        if job.status is JobStatus.QUEUED:
            assert job not in ran  # the submission is announced before the job can run
            time.sleep(0.002)  # gives a job that started too early time to finish
        seen.setdefault(job, []).append(job.status.value)

    q.on_job(slow_first)
    q.on_job(lambda job: seen_late.setdefault(job, []).append(job.status.value))
    jobs = [q.submit("predict", ran.add) for _ in range(50)]
    assert q.wait_idle(5)
    assert ran == set(jobs)
    for job in jobs:
        assert seen[job] == ["queued", "running", "finished"]
        assert seen_late[job] == ["queued", "running", "finished"]


def test_a_stopped_queued_job_ends_at_once_and_the_queue_runs_the_next() -> None:
    q = JobQueue()
    gate = threading.Event()
    ran: list[str] = []

    def first(job: Job) -> None:
        ran.append("a")
        gate.wait(5)

    a = q.submit("train", first)
    b = q.submit("train", lambda job: ran.append("b"))
    c = q.submit("predict", lambda job: ran.append("c"))
    events: list[tuple[str, object, threading.Thread]] = []
    b.on("status", lambda j: events.append(("status", j.status, threading.current_thread())))
    b.on("done", lambda j: events.append(("done", j.started, threading.current_thread())))
    _until(lambda: a.status is JobStatus.RUNNING)

    assert b.stop() is b
    me = threading.current_thread()
    assert b.status is JobStatus.STOPPED and b.done and b.wait(0) is b
    assert b.message == "stopped before it started"
    assert b.started is None and b.ended is not None
    assert events == [("status", JobStatus.STOPPED, me), ("done", None, me)]
    assert a.status is JobStatus.RUNNING and c.status is JobStatus.QUEUED

    gate.set()
    assert q.wait_idle(5)
    assert ran == ["a", "c"]  # b's work never ran
    assert a.status is JobStatus.FINISHED and c.status is JobStatus.FINISHED
    assert len(events) == 2  # the worker skipped b without firing anything again


def test_stop_racing_the_worker_runs_the_work_only_if_it_started() -> None:
    q = JobQueue()
    calls: dict[Job, list[JobStatus]] = {}  # the submission, then one call per status change
    q.on_job(lambda j: calls.setdefault(j, []).append(j.status))
    ran: set[Job] = set()
    for _ in range(50):
        job = q.submit("predict", ran.add)
        job.stop()
        assert job.wait(3).done
        if job.started is None:
            assert job not in ran and job.status is JobStatus.STOPPED
            assert job.message == "stopped before it started" and len(calls[job]) == 2
        elif job.status is JobStatus.FINISHED:  # it ended before stop() came
            assert job in ran and len(calls[job]) == 3
        else:  # running, stopping, stopped
            assert job in ran and job.status is JobStatus.STOPPED and len(calls[job]) == 4
        assert calls[job][0] is JobStatus.QUEUED and calls[job][-1] is job.status


def test_stop_on_an_ended_job_is_a_no_op() -> None:
    q = JobQueue()
    events: list[str] = []
    job = q.submit("predict", lambda j: j.set_progress(1.0, "predicted 3 images"))
    assert job.wait(3).status is JobStatus.FINISHED
    job.on("status", lambda j: events.append("status"))
    job.on("progress", lambda j: events.append("progress"))
    ended = job.ended
    assert job.stop() is job
    assert job.status is JobStatus.FINISHED and job.message == "predicted 3 images"
    assert job.ended == ended and not job.should_stop and events == []


def test_stopping_a_running_job_goes_through_stopping() -> None:
    q = JobQueue()
    started = threading.Event()
    statuses: list[str] = []

    def work(job: Job) -> None:
        started.set()
        while not job.should_stop:
            time.sleep(0.001)

    job = q.submit("train", work)
    job.on("status", lambda j: statuses.append(j.status.value))
    assert started.wait(3)
    job.stop()
    assert job.wait(3).status is JobStatus.STOPPED and job.started is not None
    assert job.message == "stopped"
    assert statuses in (["stopping", "stopped"], ["stopped", "stopped"])  # read when delivered


def test_wait_returns_after_the_done_callbacks_and_never_waits_for_itself() -> None:
    q = JobQueue()
    finished: list[str] = []

    def on_done(job: Job) -> None:
        t0 = time.monotonic()
        job.wait(2)  # from its own callback: returns at once
        assert time.monotonic() - t0 < 1
        time.sleep(0.05)
        finished.append("done")

    def work(job: Job) -> None:
        job.wait(2)  # from its own work: returns at once
        job.on("done", on_done)

    t0 = time.monotonic()
    job = q.submit("train", work).wait(3)
    assert finished == ["done"] and job.done
    assert time.monotonic() - t0 < 1.5


def test_a_job_stopped_before_it_ran_is_told_apart_in_its_done_callback() -> None:
    job = Job("train", lambda j: None)
    told: list[bool] = []
    job.on("done", lambda j: told.append(j.status is JobStatus.STOPPED and j.started is None))
    job.stop()
    job._run()  # what the worker does later: nothing
    assert told == [True] and job.done


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: Job("train", lambda j: None).on("finished", lambda j: None), ArgumentError),
        (lambda: Job("train", lambda j: None).on("done", None), ArgumentTypeError),  # type: ignore[arg-type]
        (lambda: Job("", lambda j: None), ArgumentError),
        (lambda: Job("train", None), ArgumentTypeError),  # type: ignore[arg-type]
        (lambda: Job("train", lambda j: None).set_progress(float("nan")), ArgumentError),
        (lambda: JobQueue().on_job("not a function"), ArgumentTypeError),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_raise_argument_errors(call: Callable[[], object], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, DeepBlockError)


def test_unknown_event_is_an_argument_error_and_a_value_error() -> None:
    with pytest.raises(ValueError, match="choose from"):
        Job("train", lambda j: None).on("finished", lambda j: None)


def test_progress_is_clipped_to_zero_one() -> None:
    job = Job("train", lambda j: None)
    job.set_progress(1.5)
    assert job.progress == 1.0
    job.set_progress(-1)
    assert job.progress == 0.0
