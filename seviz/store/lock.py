"""One writer per store: an exclusive ``flock`` on ``STORE.lock`` beside the store.

Two runs writing one HDF5 file corrupt it (or hang in HDF5's retry loop), so
every writer of a store (:class:`~seviz.store.StoreWriter`, ``seviz record``
from its first check on, ``seviz attribute``) holds :class:`StoreLock` first.
A second writer fails at once with the PID and host of the first. The lock
is the kernel's: when a run dies (even ``kill -9``) the kernel releases it, so
a lock file left behind is stale and the next writer takes it over. Readers
take no lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from pathlib import Path

from seviz.errors import StoreLockedError

log = logging.getLogger(__name__)


def lock_path(store: str | os.PathLike) -> Path:
    """The lock file of ``store``: ``STORE.lock`` beside it."""
    path = Path(store).expanduser()
    return path.with_name(path.name + ".lock")


class StoreLock:
    """An exclusive lock on one store; use as a context manager or ``acquire()``/``release()``."""

    def __init__(self, store: str | os.PathLike) -> None:
        self.store = Path(store).expanduser()
        self.path = lock_path(self.store)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> StoreLock:
        """Take the lock, or fail at once.

        Raises:
            StoreLockedError: Another process (or another writer in this one) holds it.
        """
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise self._locked(holder) from None
            if _is_current(fd, self.path):
                break
            # The holder released (and removed) the file between our open and our flock:
            # the lock we got is on a file nobody else will open. Try the new one.
            os.close(fd)
        stale = _read(fd)
        if stale:
            log.info("taking over the lock of %s from %s: that run is gone", self.store, stale)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (safe to call twice)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _is_current(fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _locked(self, holder: str) -> StoreLockedError:
        pid, _, host = holder.partition(" ")
        who = f"PID {pid} (on {host})" if pid.isdigit() and host else "another process"
        return StoreLockedError(
            f"store {str(self.store)!r} is already being written by {who}; wait for it to finish, or stop "
            f"that run and finish the store with `resume=True` (lock file {str(self.path)!r})"
        )

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 512).decode("utf-8", errors="replace").strip()


def _is_current(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
