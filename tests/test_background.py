"""Background work: inputs read ahead in order, results written behind in order, and a failed
write stopping the writes after it with its own error."""
import threading
import time

import pytest

from glfa.background import WriteBehind, read_ahead


def test_read_ahead_keeps_order_and_loads_ahead():
    started = []
    second_started = threading.Event()

    def load(item: int) -> int:
        started.append(item)
        if item == 1:
            second_started.set()
        return item * 10

    results = read_ahead(range(5), load, depth=2)
    assert next(results) == (0, 0)
    assert second_started.wait(5)               # item 1 was loading before it was asked for
    assert list(results) == [(1, 10), (2, 20), (3, 30), (4, 40)]
    assert sorted(started) == list(range(5))


def test_read_ahead_raises_at_the_failing_item():
    def load(item: int) -> int:
        if item == 2:
            raise ValueError("bad item")
        time.sleep(0.01)
        return item

    results = read_ahead(range(4), load)
    assert [next(results), next(results)] == [(0, 0), (1, 1)]
    with pytest.raises(ValueError, match="bad item"):
        next(results)


def test_writes_behind_run_in_order_while_the_caller_goes_on():
    written, release = [], threading.Event()

    def write(item: int) -> None:
        if item == 0:
            assert release.wait(5)
        written.append(item)

    with WriteBehind() as writer:
        writer.submit(write, 0)
        assert written == []                        # submit returned while the write waits
        release.set()
        for item in (1, 2, 3):
            writer.submit(write, item)
    assert written == [0, 1, 2, 3]                  # leaving the block waited for the last


def test_a_failed_write_is_raised_at_the_next_submit_and_no_later_write_runs():
    written = []

    def write(item: int) -> None:
        if item == 1:
            raise OSError(28, "No space left on device", f"frame{item}.png")
        written.append(item)

    with pytest.raises(OSError, match="No space left") as raised:
        with WriteBehind() as writer:
            for item in range(4):
                writer.submit(write, item)
    assert raised.value.filename == "frame1.png" and written == [0]


def test_the_last_write_failing_is_raised_on_leaving_the_block():
    def write() -> None:
        raise OSError(28, "No space left on device", "last.png")

    with pytest.raises(OSError, match="last.png"):
        with WriteBehind() as writer:
            writer.submit(write)


def test_an_error_of_the_caller_wins_and_the_pending_write_still_finishes():
    written = []

    def write(item: int) -> None:
        time.sleep(0.05)
        written.append(item)

    with pytest.raises(KeyError):
        with WriteBehind() as writer:
            writer.submit(write, 7)
            raise KeyError("stylising failed")
    assert written == [7]
