"""Tests for seviz/recording/interrupts.py: Ctrl-C stops after the batch, twice stops now, never lost."""

from __future__ import annotations

import signal

import pytest
from _hostile_model import write_hostile_model
from _images import write_class_folders

from seviz.recording import record
from seviz.recording.interrupts import StopRequest, stop_requests
from seviz.store import open_store


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return str(write_hostile_model(tmp_path_factory.mktemp("model")))


@pytest.fixture()
def data(tmp_path):
    write_class_folders(tmp_path / "data", {"cat": 5, "dog": 5}, size=(32, 32))
    return tmp_path / "data"


def record_hostile(spec: str, factory: str, data, out, **options):
    return record(
        model=f"{spec}:{factory}",
        data=data,
        out=out,
        weights="random",
        class_names=["cat", "dog"],
        batch_size=2,
        workers=0,
        device="cpu",
        writer="inline",
        progress=False,
        **options,
    )


def committed(out) -> tuple[int, bool]:
    with open_store(out, warn_incomplete=False) as store:
        return len(store), store.complete


def test_one_ctrl_c_stops_after_the_current_batch(hostile, data, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("AT", "3")  # pass 3: the second batch (pass 1 is the probe)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        record_hostile(hostile, "signalled", data, tmp_path / "s.h5")
    assert committed(tmp_path / "s.h5") == (4, False)  # the interrupted batch was finished and stored
    assert "4 samples are saved" in caplog.text and "--resume" in caplog.text
    assert signal.getsignal(signal.SIGINT) is before
    monkeypatch.delenv("AT")
    summary = record_hostile(hostile, "signalled", data, tmp_path / "s.h5", resume=True)
    assert (summary.samples, summary.complete) == (10, True)


def test_a_second_ctrl_c_stops_at_once(hostile, data, tmp_path, monkeypatch):
    monkeypatch.setenv("AT", "3")
    monkeypatch.setenv("TIMES", "2")
    with pytest.raises(KeyboardInterrupt):
        record_hostile(hostile, "signalled", data, tmp_path / "s.h5")
    assert committed(tmp_path / "s.h5") == (2, False)  # the batch in flight was dropped


def test_a_ctrl_c_inside_a_weakref_callback_is_not_lost(hostile, data, tmp_path, monkeypatch):
    """Python's own handler raises there, and the interpreter swallows it: the run would finish."""
    monkeypatch.setenv("AT", "3")
    with pytest.raises(KeyboardInterrupt):
        record_hostile(hostile, "weakref_signalled", data, tmp_path / "s.h5")
    assert committed(tmp_path / "s.h5") == (4, False)


def test_ctrl_c_before_the_first_batch_stops_at_once_and_writes_nothing(hostile, data, tmp_path, monkeypatch):
    monkeypatch.setenv("AT", "1")  # during the probe, while the model is being set up
    with pytest.raises(KeyboardInterrupt):
        record_hostile(hostile, "signalled", data, tmp_path / "s.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_the_handler_is_restored_after_an_error_too(hostile, tmp_path):
    def mine(_signum, _frame):
        pass

    previous = {signum: signal.signal(signum, mine) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(FileNotFoundError):
            record_hostile(hostile, "signalled", tmp_path / "nowhere", tmp_path / "s.h5")
        with pytest.raises(ValueError):
            with stop_requests() as request:
                assert signal.getsignal(signal.SIGINT) is not mine
                request.mode = "hold"
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # held while the store closes
                assert request.stop
                raise ValueError("boom")
        assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_stop_request_modes():
    request = StopRequest()
    with pytest.raises(KeyboardInterrupt):
        request.handle(signal.SIGINT, None)  # "now"
    request = StopRequest()
    request.mode = "after_batch"
    request.handle(signal.SIGINT, None)
    assert request.stop
    with pytest.raises(KeyboardInterrupt):
        request.handle(signal.SIGINT, None)  # the second one
    request = StopRequest()
    request.mode = "hold"
    for _ in range(3):
        request.handle(signal.SIGINT, None)  # closing the store is never cut short
    with pytest.raises(KeyboardInterrupt):
        request.raise_if_requested()
