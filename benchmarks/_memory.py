"""Peak resident memory of this process, for the benchmarks (imported by name: the
benchmarks run as scripts, so this folder is on ``sys.path``)."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil


def vm_hwm() -> int:
    """This process's lifetime peak resident bytes (Linux ``VmHWM``; unlike
    ``ru_maxrss`` it does not carry the parent's peak across ``exec``), or 0."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakRSS:
    """Context manager sampling this process's RSS in a thread.

    ``start`` is the RSS on entry, ``peak`` the highest sample (bytes). With
    ``lifetime=True`` the kernel's high-water mark counts too: right for a child
    process that measures one thing, wrong for several steps in one process.
    """

    def __init__(self, interval: float = 0.002, lifetime: bool = False) -> None:
        self.interval = interval
        self.lifetime = lifetime
        self._proc = psutil.Process()
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss, vm_hwm() if self.lifetime else 0)
