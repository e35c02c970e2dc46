"""Tests for seviz/store/lock.py: one writer per store, a second one refused at once, stale locks taken over."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from test_store import ATTRS, BLOCKS, _batch

from seviz.errors import StoreLockedError
from seviz.store import StoreLock, StoreWriter, open_store
from seviz.store.lock import lock_path


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_second_lock_is_refused_at_once_naming_the_holder(tmp_path):
    store = tmp_path / "s.h5"
    with StoreLock(store) as first:
        assert first.held and lock_path(store).read_text().split() == [str(os.getpid()), socket.gethostname()]
        began = time.monotonic()
        with pytest.raises(StoreLockedError) as caught:
            StoreLock(store).acquire()
        assert time.monotonic() - began < 1
    message = str(caught.value)
    assert f"already being written by PID {os.getpid()} (on {socket.gethostname()})" in message
    assert "wait for it to finish" in message and "`resume=True`" in message
    assert not lock_path(store).exists()  # released and removed
    StoreLock(store).acquire().release()  # free again


def test_a_second_writer_of_an_open_store_is_refused_and_the_store_is_untouched(tmp_path):
    path = tmp_path / "s.h5"
    writer = StoreWriter(path, BLOCKS, ATTRS)
    writer.append(_batch(0, 3))
    before = _sha(path)
    for options in ({"overwrite": True}, {"resume": True}):
        with pytest.raises(StoreLockedError, match="already being written by PID"):
            StoreWriter(path, BLOCKS, ATTRS, **options)
        assert _sha(path) == before
    writer.append(_batch(3, 2))
    writer.close(complete=True)
    with open_store(path) as store:
        assert store.complete and len(store) == 5
    assert not lock_path(path).exists()


# A writer that takes the lock and is killed (kill -9: nothing of it runs again).
_KILLED_HOLDER = """
import os, signal
from seviz.store import StoreLock
StoreLock({store!r}).acquire()
print("locked", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_lock_of_a_killed_run_is_stale_and_taken_over(tmp_path, caplog):
    store = tmp_path / "s.h5"
    script = _KILLED_HOLDER.format(store=str(store))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9 and "locked" in done.stdout
    left = lock_path(store).read_text().split()
    assert left[0] != str(os.getpid())  # the dead run's PID is still in the file
    with caplog.at_level(logging.INFO, logger="seviz.store.lock"):
        lock = StoreLock(store).acquire()
    try:
        assert f"from {left[0]} {left[1]}" in caplog.text and "that run is gone" in caplog.text
        assert lock_path(store).read_text().split()[0] == str(os.getpid())
    finally:
        lock.release()


def test_a_lock_held_by_another_process_names_its_pid(tmp_path):
    store = tmp_path / "s.h5"
    script = textwrap.dedent(
        f"""
        import sys, time
        from seviz.store import StoreLock
        StoreLock({str(store)!r}).acquire()
        print("locked", flush=True)
        sys.stdin.readline()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError, match=f"by PID {holder.pid} \\(on "):
            StoreLock(store).acquire()
    finally:
        holder.communicate("\n", timeout=60)
    StoreLock(store).acquire().release()  # the holder exited: the lock is free
