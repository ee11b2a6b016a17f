"""A thread-safe least-recently-used cache of decoded tiles with a byte budget."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np

from deepblock_nb.errors import ArgumentError, ArgumentTypeError

__all__ = ["DEFAULT_TILE_CACHE_BYTES", "TileLRU", "shared_tile_cache"]

DEFAULT_TILE_CACHE_BYTES = 256 * 1024 * 1024


class TileLRU:
    """Decoded tiles (numpy arrays) keyed by any hashable, evicted oldest first.

    ``max_bytes = 0`` disables caching. Arrays stored are made read-only, so a
    cached tile can be shared by several readers and threads.
    """

    def __init__(self, max_bytes: int = DEFAULT_TILE_CACHE_BYTES) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._max_bytes = _byte_count(max_bytes)
        self.hits = 0
        self.misses = 0

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        n = _byte_count(value)
        with self._lock:
            self._max_bytes = n
            self._evict()

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            arr = self._items.get(key)
            if arr is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return arr

    def put(self, key: Hashable, arr: np.ndarray) -> None:
        if arr.nbytes > self._max_bytes:
            return
        arr.flags.writeable = False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = arr
            self._bytes += arr.nbytes
            self._evict()

    def discard(self, prefix: Hashable) -> None:
        """Drop every entry whose key is a tuple starting with ``prefix``."""
        with self._lock:
            for key in [k for k in self._items if isinstance(k, tuple) and k and k[0] == prefix]:
                self._bytes -= self._items.pop(key).nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _evict(self) -> None:
        while self._bytes > self._max_bytes and self._items:
            _, arr = self._items.popitem(last=False)
            self._bytes -= arr.nbytes


def _byte_count(value: object) -> int:
    """A cache budget: a whole number of bytes >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer | float):
        raise ArgumentTypeError(f"cache size must be a number of bytes, got {value!r}")
    if not (0 <= value < float("inf")) or int(value) != value:
        raise ArgumentError(f"cache size must be a whole number of bytes >= 0, got {value!r}")
    return int(value)


shared_tile_cache = TileLRU()
