"""Work that overlaps the computation: the next inputs read ahead and the last results written
behind, in background threads (decoding, encoding and file writes release the GIL)."""
import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")


def read_ahead(items: Iterable[Item], load: Callable[[Item], Loaded], depth: int = 2) -> Iterator[tuple[Item, Loaded]]:
    """``(item, load(item))`` in order, with the next ``depth`` items loading in background
    threads meanwhile. ``load``'s exceptions are raised here, when their item's turn comes."""
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=depth) as pool:
        pending = deque((item, pool.submit(load, item)) for item in itertools.islice(iterator, depth))
        while pending:
            item, future = pending.popleft()
            for following in iterator:
                pending.append((following, pool.submit(load, following)))
                break
            yield item, future.result()


class WriteBehind:
    """Writes run one at a time, in order, in a background thread while the caller computes the
    next result; at most one waits. A failed write's error is raised in the caller at its next
    ``submit`` (so no later write runs) or on leaving the ``with`` block, which waits for the
    last write. When the block is left by another error, that one is raised."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: Future | None = None

    def submit(self, write: Callable[..., None], *args: object) -> None:
        """Run ``write(*args)`` once the previous write has finished (raising its error, if any)."""
        self.wait()
        self._pending = self._pool.submit(write, *args)

    def wait(self) -> None:
        """Wait for the last write; raise its error, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> "WriteBehind":
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: object) -> None:
        try:
            if kind is None:
                self.wait()
            elif self._pending is not None:
                wait_for([self._pending])
        finally:
            self._pool.shutdown(wait=True)
