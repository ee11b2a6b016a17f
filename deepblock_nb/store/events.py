"""A small observer API: topics, subscribers, and emission after commit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["TOPICS", "Events"]

log = logging.getLogger(__name__)

TOPICS = ("images", "annotations", "categories", "predictions", "jobs", "runs", "grid", "threshold")

Listener = Callable[..., None]


class Events:
    """``on(topic, callback)`` subscribes; ``emit(topic, **payload)`` calls them in order.

    Callbacks run on the thread that caused the change. A callback that raises is
    logged and skipped: a subscriber never breaks the change it observes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, list[Listener]] = {t: [] for t in TOPICS}

    def on(self, topic: str, callback: Listener) -> Callable[[], None]:
        """Subscribe ``callback(topic=..., **payload)``; returns a function that unsubscribes."""
        if topic not in self._listeners:
            raise ValueError(f"unknown event topic {topic!r}; choose from {', '.join(TOPICS)}")
        with self._lock:
            self._listeners[topic].append(callback)

        def off() -> None:
            with self._lock:
                if callback in self._listeners[topic]:
                    self._listeners[topic].remove(callback)

        return off

    def emit(self, topic: str, **payload: Any) -> None:
        with self._lock:
            listeners = list(self._listeners[topic])
        for cb in listeners:
            try:
                cb(topic=topic, **payload)
            except Exception:
                log.exception("listener %r of %r raised", cb, topic)
