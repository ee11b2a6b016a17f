"""A batch loader that prefetches in background threads.

Threads rather than processes: decoding (Pillow, tifffile, imagecodecs) and
numpy release the GIL, the dataset need not be importable or picklable, and it
works the same inside Jupyter on Linux and macOS (no fork of a kernel holding
torch threads, no spawn start-up per epoch).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["ThreadLoader"]


class ThreadLoader:
    """Iterate over batches of ``dataset[i]`` for ``i`` in ``indices``, in order.

    Args:
        dataset: anything indexable.
        indices: the sample order of this pass.
        batch_size: samples per batch (the last batch may be smaller).
        collate: turns a list of samples into a batch.
        num_workers: threads reading samples; 0 reads in the caller's thread.
        prefetch: batches read ahead of the one being used.
    """

    def __init__(
        self,
        dataset: Any,
        indices: Sequence[int],
        batch_size: int,
        collate: Callable[[list[Any]], Any],
        *,
        num_workers: int = 2,
        prefetch: int = 2,
    ) -> None:
        self.dataset = dataset
        self.batches = [list(indices[i : i + batch_size]) for i in range(0, len(indices), batch_size)]
        self.collate = collate
        self.num_workers = num_workers
        self.prefetch = max(1, prefetch)

    def __len__(self) -> int:
        return len(self.batches)

    def _load(self, batch: list[int]) -> Any:
        return self.collate([self.dataset[i] for i in batch])

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers <= 0:
            for batch in self.batches:
                yield self._load(batch)
            return
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="deepblock-data")
        pending: deque[Future[Any]] = deque()
        todo = iter(self.batches)
        try:
            for batch in todo:
                pending.append(pool.submit(self._load, batch))
                if len(pending) >= self.prefetch + 1:
                    break
            while pending:
                result = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(self._load, nxt))
                yield result
        finally:
            # A stopped or failed pass leaves no work behind.
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
