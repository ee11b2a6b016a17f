"""Change events: topics, their one payload shape each, subscribers.

A project emits an event after the change it announces has committed (see
``Database.after_commit``): a rolled-back transaction announces nothing. Each
topic has exactly one payload shape, listed in :data:`PAYLOADS` and in
docs/internals.md; :meth:`Events.emit` refuses any other, so a listener can rely
on its keyword arguments.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from deepblock_nb.errors import ArgumentError

__all__ = ["ACTIONS", "PAYLOADS", "TOPICS", "Events"]

log = logging.getLogger(__name__)

#: topic -> the keyword arguments every callback of that topic receives (besides ``topic``)
PAYLOADS: dict[str, tuple[str, ...]] = {
    # images: list[ImageRecord] (after "removed": the records as they were; after
    # "tile_reviewed": the image whose reviewed tiles changed, see Reviews.of_image;
    # after "display": the image whose bands or intensity window changed)
    "images": ("action", "images"),
    # image: ImageRecord | None (None: several images, e.g. an import); ids: box ids or None
    "annotations": ("action", "image", "ids"),
    # category: Category (after "removed": as it was)
    "categories": ("action", "category"),
    # image: ImageRecord | None (None: every image); run: the run id, or None when cleared
    "predictions": ("action", "image", "run"),
    # job: deepblock_nb.jobs.Job, on its submission and each status change
    "jobs": ("job",),
    # run: the run id; report: the EvaluationReport for "evaluated", else None
    "runs": ("action", "run", "report"),
    # image: ImageRecord with its new grid (None when cleared)
    "grid": ("image",),
    # value: the effective threshold (project.threshold) after the change
    "threshold": ("value",),
    # image: ImageRecord | None (None: several images); ids: proposal ids or None
    "proposals": ("action", "image", "ids"),
}

#: topic -> the values its ``action`` takes
ACTIONS: dict[str, tuple[str, ...]] = {
    "images": ("added", "removed", "split", "reviewed", "tile_reviewed", "display"),
    "annotations": ("added", "updated", "deleted", "imported"),
    "categories": ("added", "renamed", "recolored", "removed"),
    "predictions": ("stored", "cleared"),
    "proposals": ("stored", "accepted", "corrected", "rejected", "reopened", "cleared"),
    "runs": ("created", "queued", "running", "progress", "ended", "evaluated"),
}

TOPICS = tuple(PAYLOADS)

Listener = Callable[..., None]


class Events:
    """``on(topic, callback)`` subscribes; ``emit(topic, **payload)`` calls them in order.

    Callbacks run on the thread that emits (the one whose change committed: a cell's
    thread, or a job's worker thread); widget code must hand work to the UI thread
    (``widgets._util.Throttle``). A callback that raises is logged and skipped: a
    subscriber never breaks the change it observes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, list[Listener]] = {t: [] for t in TOPICS}

    def on(self, topic: str, callback: Listener) -> Callable[[], None]:
        """Subscribe ``callback(topic=..., **payload)``; returns a function that unsubscribes."""
        if topic not in self._listeners:
            raise ArgumentError(f"unknown event topic {topic!r}; choose from {', '.join(TOPICS)}")
        with self._lock:
            self._listeners[topic].append(callback)

        def off() -> None:
            with self._lock:
                if callback in self._listeners[topic]:
                    self._listeners[topic].remove(callback)

        return off

    def emit(self, topic: str, **payload: Any) -> None:
        """Call the topic's listeners; the payload must have exactly the topic's keys."""
        check_payload(topic, payload)
        with self._lock:
            listeners = list(self._listeners[topic])
        for cb in listeners:
            try:
                cb(topic=topic, **payload)
            except Exception:
                log.exception("listener %r of %r raised", cb, topic)


def check_payload(topic: str, payload: dict[str, Any]) -> None:
    """Refuse a payload that is not the topic's one shape (a programming error)."""
    keys = PAYLOADS.get(topic)
    if keys is None:
        raise ArgumentError(f"unknown event topic {topic!r}; choose from {', '.join(TOPICS)}")
    if set(payload) != set(keys):
        raise ArgumentError(
            f"event {topic!r} carries {', '.join(keys)}; got {', '.join(sorted(payload)) or 'nothing'}"
        )
    action = payload.get("action")
    if topic in ACTIONS and action not in ACTIONS[topic]:
        raise ArgumentError(f"event {topic!r}: unknown action {action!r}; one of {', '.join(ACTIONS[topic])}")
