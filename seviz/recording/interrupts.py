"""Ctrl-C during a recording: the first stops after the current batch, the second stops now.

Python's default SIGINT handler raises :class:`KeyboardInterrupt` wherever the
main thread is, and there it can be lost: raised inside a weakref callback or
a ``__del__``, it is printed as "Exception ignored" and the run goes on to
finish with exit code 0. So while a recording runs, :func:`stop_requests`
installs a handler that only sets a flag, which the recording checks between
batches; a second Ctrl-C raises at once (and sets the flag too, so even a
swallowed second interrupt stops the run after its batch). The handler never
logs or prints: it may run in the middle of a write to stderr. SIGTERM stops
at once, as before, but never while the store is being closed. The previous
handlers are restored in ``finally``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class StopRequest:
    """The state the SIGINT handler shares with the recording loop.

    ``mode`` says what an interrupt does: ``"now"`` raises at once (while
    nothing is written yet), ``"after_batch"`` asks the loop to stop after its
    batch (a second interrupt raises), ``"hold"`` only records it (while the
    store is being closed, which must not be cut short).
    """

    def __init__(self) -> None:
        self.requested = 0  # interrupts received
        self.mode = "now"

    @property
    def stop(self) -> bool:
        return self.requested > 0

    def handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested += 1
        if self.mode == "now" or (self.mode == "after_batch" and self.requested > 1):
            raise KeyboardInterrupt

    def handle_terminate(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGTERM (a service manager, ``kill``): stop now, except while the store is being closed."""
        self.requested += 1
        if self.mode != "hold":
            raise KeyboardInterrupt

    def raise_if_requested(self) -> None:
        """Between batches: turn a recorded interrupt into :class:`KeyboardInterrupt`."""
        if self.requested:
            raise KeyboardInterrupt


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Handle SIGINT and SIGTERM with a :class:`StopRequest` for the block (main thread only, else a no-op)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    handlers = {signal.SIGINT: request.handle, signal.SIGTERM: request.handle_terminate}
    previous: dict[signal.Signals, Any] = {}
    try:
        for signum, handler in handlers.items():
            # None: a handler installed outside Python; the best restore is the default.
            previous[signum] = signal.signal(signum, handler) or signal.SIG_DFL
        yield request
    finally:
        for number, restored in previous.items():
            signal.signal(number, restored)
