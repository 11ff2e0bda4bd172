"""Stopping a run gracefully: Ctrl-C and SIGTERM become a request to stop after the current
iteration (the run then saves a training state); loader workers leave both signals to the main
process."""
import signal


class StopSignals:
    """Ctrl-C and SIGTERM become a request to stop after the current iteration (``received``
    holds the signal); the default handlers come back at once, so a second signal stops hard."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "StopSignals":
        self.received = 0
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def __exit__(self, *exc: object) -> None:
        self._restore()


def ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave Ctrl-C/SIGTERM to the main process, which stops them after saving."""
    for sig in StopSignals.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
