"""How a recording overlaps decoding, the forward pass and store writes, by device.

Measured on a 2-core CPU (``benchmarks/record_overhead.py``): worker processes and
a writer thread preempt the forward pass's threads and cost more than their work,
so on a CPU both run inline; on CUDA they overlap the GPU's work.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from seviz.data import decoding_workers
from seviz.errors import RecordError
from seviz.store import SampleBatch, StoreWriter


@dataclass(frozen=True)
class Pipeline:
    """How a recording overlaps its stages."""

    workers: int  # DataLoader worker processes decoding images (0: decode in the main process)
    background_writer: bool  # append to the store from a thread (else between forward passes)

    def describe(self) -> str:
        decode = f"{self.workers} decoding worker(s)" if self.workers else "decoding inline"
        return f"{decode}, store writes {'in a background thread' if self.background_writer else 'inline'}"


def plan_pipeline(device_type: str, workers: int | None = None, writer: str = "auto") -> Pipeline:
    """Resolve ``--workers`` (None: auto) and ``--writer`` (auto, thread, inline) for a device.

    On CUDA the forward pass leaves the CPU to the other stages: decoding in
    ``min(4, cores)`` workers and a background writer. On a CPU, torch runs the
    forward pass on every core; decoding worker processes and a writer thread
    then preempt its threads (each preemption stalls the others at the next
    barrier), which costs far more than the work they do, so both run inline.
    """
    if writer not in ("auto", "thread", "inline"):
        raise RecordError(f"unknown `writer` {writer!r}; use auto, thread or inline", param="writer")
    background = device_type == "cuda" if writer == "auto" else writer == "thread"
    return Pipeline(decoding_workers(device_type, workers), background)


class _InlineWriter:
    """Appends each batch to the store at once, in the calling thread."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    def put(self, batch: SampleBatch) -> None:
        self.writer.append(batch)

    def finish(self) -> None:
        pass


class _BackgroundWriter:
    """Appends batches to the store in a thread so the model never waits on disk.

    Batches are appended in order; an error in the thread is raised in the
    caller at the next ``put`` or at ``finish``.
    """

    def __init__(self, writer: StoreWriter, depth: int = 4) -> None:
        self.writer = writer
        self._queue: queue.Queue[SampleBatch | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._reported = False  # the error was raised in the caller already
        self._thread = threading.Thread(target=self._run, name="seviz-store-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is None:
                try:
                    self.writer.append(batch)
                except BaseException as error:  # surfaced in the main thread
                    self._error = error

    def put(self, batch: SampleBatch) -> None:
        if self._error is not None:
            self._reported = True
            raise self._error
        self._queue.put(batch)

    def finish(self) -> None:
        """Write everything queued, then stop the thread (safe to call again after an error)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None and not self._reported:
            self._reported = True
            raise self._error
