"""Tests for seviz/store/writer.py: atomic replace, completion beside a reader, a full disk."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from _tmpfs import small_tmpfs
from test_store import ATTRS, BLOCKS, _batch

import seviz.store.writer as writer_module
from seviz.errors import DiskFullError
from seviz.store import BlockInfo, SampleBatch, StoreWriter, open_store


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _complete_store(path: Path, n: int = 4) -> Path:
    with StoreWriter(path, BLOCKS, ATTRS) as writer:
        writer.append(_batch(0, n))
        writer.close(complete=True)
    return path


def _temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".lock")


# ---------------------------------------------------------------- atomic replace


def test_overwrite_keeps_the_old_store_until_the_first_batch_commits(tmp_path):
    path = _complete_store(tmp_path / "s.h5")
    before = _sha(path)
    writer = StoreWriter(path, BLOCKS, ATTRS, overwrite=True)
    assert _sha(path) == before and not writer.published  # the new store is written beside it
    with open_store(path) as old:
        assert old.complete and len(old) == 4
    writer.append(_batch(0, 2))
    assert writer.published
    with open_store(path, warn_incomplete=False) as new:
        assert not new.complete and len(new) == 2
    writer.close(complete=True)
    assert _temporary_files(tmp_path) == []


def test_a_new_store_that_commits_nothing_leaves_the_old_one_and_no_temporary_file(tmp_path):
    path = _complete_store(tmp_path / "s.h5")
    before = _sha(path)
    with pytest.raises(RuntimeError, match="the run failed"):
        with StoreWriter(path, BLOCKS, ATTRS, overwrite=True):
            raise RuntimeError("the run failed before its first batch")
    assert _sha(path) == before
    assert _temporary_files(tmp_path) == []
    with StoreWriter(tmp_path / "new.h5", BLOCKS, ATTRS):
        pass
    assert not (tmp_path / "new.h5").exists() and _temporary_files(tmp_path) == []


def test_a_store_completed_without_batches_is_published(tmp_path):
    with StoreWriter(tmp_path / "empty.h5", BLOCKS, ATTRS) as writer:
        writer.close(complete=True)
    with open_store(tmp_path / "empty.h5") as store:
        assert store.complete and len(store) == 0


def test_an_output_that_is_an_input_is_refused(tmp_path):
    source = tmp_path / "weights.safetensors"
    source.write_bytes(b"weights")
    with pytest.raises(FileExistsError, match="one of this command's inputs"):
        StoreWriter(source, BLOCKS, ATTRS, overwrite=True, inputs=[source])
    assert source.read_bytes() == b"weights" and _temporary_files(tmp_path) == []


# ---------------------------------------------------------------- the completion mark


def test_the_store_completes_while_a_reader_in_this_process_holds_it(tmp_path):
    path = tmp_path / "s.h5"
    writer = StoreWriter(path, BLOCKS, ATTRS)
    writer.append(_batch(0, 3))
    reader = open_store(path, warn_incomplete=False)
    reader.gates("SE_2_1")  # the reader's file handle is open
    writer.append(_batch(3, 2))
    writer.close(complete=True, final_attrs={"finished": "2024-01-01T00:00:00+00:00", "samples": 5})
    reader.close()
    with open_store(path) as store:
        assert store.complete and len(store) == 5
        assert store.attrs["finished"] == "2024-01-01T00:00:00+00:00" and store.attrs["samples"] == 5


_HOLDING_READER = """
import sys
from seviz.store import open_store
store = open_store({path!r}, warn_incomplete=False)
store.gates("SE_2_1")
print("open", len(store), flush=True)
sys.stdin.readline()
print("still", len(store), store.complete, flush=True)
"""


def test_the_store_completes_while_another_process_holds_it_open(tmp_path):
    """HDF5 refuses a second open for writing while a reader holds the file ("unable to lock file")."""
    path = tmp_path / "s.h5"
    writer = StoreWriter(path, BLOCKS, ATTRS)
    writer.append(_batch(0, 3))
    reader = subprocess.Popen(
        [sys.executable, "-c", _HOLDING_READER.format(path=str(path))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline().split() == ["open", "3"]
        writer.append(_batch(3, 2))
        writer.close(complete=True)
    finally:
        out, _ = reader.communicate("\n", timeout=60)
    assert reader.returncode == 0 and out.split()[0] == "still"
    with open_store(path) as store:
        assert store.complete and len(store) == 5


def test_a_resumed_store_gets_fixed_size_final_attributes(tmp_path):
    from test_store import _killed_store

    path = _killed_store(tmp_path)
    with StoreWriter(path, BLOCKS, ATTRS, resume=True) as writer:
        writer.append(_batch(5, 1))
        writer.close(complete=True, final_attrs={"finished": "2024-01-01T00:00:00+00:00", "skipped_count": 1})
    with h5py.File(path, "r") as f:
        assert f.attrs.get_id("finished").dtype == np.dtype("S40")
    with open_store(path) as store:
        assert store.complete and store.attrs["finished"] == "2024-01-01T00:00:00+00:00"
        assert len(store) == 6 and store.attrs["skipped_count"] == 1
    assert _temporary_files(tmp_path) == []


# ---------------------------------------------------------------- a full disk


def _space(monkeypatch, free: list[int]) -> None:
    """Report the free bytes in ``free``, one per call, then the last one forever."""

    def report(_path: Path) -> int:
        return free.pop(0) if len(free) > 1 else free[0]

    monkeypatch.setattr(writer_module, "free_bytes", report)


def test_a_batch_that_may_not_fit_is_refused_before_it_is_written(tmp_path, monkeypatch):
    path = tmp_path / "s.h5"
    writer = StoreWriter(path, BLOCKS, ATTRS)
    _space(monkeypatch, [10**9, 10**9, 1000])
    writer.append(_batch(0, 3))
    writer.append(_batch(3, 2))
    with pytest.raises(
        DiskFullError, match=r"no space left on .* the 5 committed samples are kept"
    ) as caught:
        writer.append(_batch(5, 4))
    assert caught.value.errno == 28 and "`resume=True`" in str(caught.value)
    monkeypatch.undo()
    writer.close(complete=False)
    with open_store(path, warn_incomplete=False) as store:
        assert len(store) == 5 and not store.complete
    assert _temporary_files(tmp_path) == []


def test_a_failed_write_on_a_full_disk_is_a_disk_full_error(tmp_path, monkeypatch):
    """A write that fails anyway (another process filled the disk) keeps the committed samples too."""
    path = tmp_path / "s.h5"
    writer = StoreWriter(path, BLOCKS, ATTRS)
    writer.append(_batch(0, 3))

    def no_space(*_args):
        raise RuntimeError(
            "Unable to flush dataset (file write failed: errno = 28, error message = 'No space left on device')"
        )

    monkeypatch.setattr(writer_module, "_append_rows", no_space)
    with pytest.raises(DiskFullError, match="the 3 committed samples are kept"):
        writer.append(_batch(3, 2))
    writer.close(complete=True)  # a failed writer never marks the store complete
    with open_store(path, warn_incomplete=False) as store:
        assert len(store) == 3 and not store.complete


def test_the_first_batch_of_a_new_store_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    path = _complete_store(tmp_path / "s.h5")
    before = _sha(path)
    _space(monkeypatch, [0])
    with StoreWriter(path, BLOCKS, ATTRS, overwrite=True) as writer:
        with pytest.raises(DiskFullError, match="nothing was committed.* is as it was"):
            writer.append(_batch(0, 2))
    assert _sha(path) == before and _temporary_files(tmp_path) == []


def test_a_resume_without_room_for_its_copy_leaves_the_store(tmp_path, monkeypatch):
    from test_store import _killed_store

    path = _killed_store(tmp_path)
    before = _sha(path)
    _space(monkeypatch, [path.stat().st_size])  # the copy needs a little more
    with pytest.raises(DiskFullError, match="resuming copies the committed samples"):
        StoreWriter(path, BLOCKS, ATTRS, resume=True)
    assert _sha(path) == before and _temporary_files(tmp_path) == []


def test_a_resume_whose_copy_hits_a_full_disk_leaves_no_temporary_file(tmp_path, monkeypatch):
    from test_store import _killed_store

    path = _killed_store(tmp_path)
    before = _sha(path)

    def full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_module, "_copy_committed", full)
    with pytest.raises(DiskFullError, match="resuming needs room for a copy"):
        StoreWriter(path, BLOCKS, ATTRS, resume=True)
    assert _sha(path) == before and _temporary_files(tmp_path) == []


_FILLING_WRITER = """
import numpy as np
from seviz.errors import DiskFullError
from seviz.store import BlockInfo, SampleBatch, StoreWriter
blocks = [BlockInfo("SE_2_1", "a", 2, 1, 512, "se"), BlockInfo("SE_3_1", "b", 3, 1, 1024, "se")]
def batch(first, n):
    return SampleBatch(label=np.zeros(n, np.int64), class_name=["cat"] * n,
                       path=[f"/images/cat/{{i:05d}}.jpg" for i in range(first, first + n)],
                       topk_index=np.zeros((n, 5), np.int32), topk_prob=np.zeros((n, 5), np.float32),
                       gates={{b.name: np.random.rand(n, b.channels) for b in blocks}}, consumed=n)
writer = StoreWriter({path!r}, blocks, {{"model": "filler"}}, dtype="float32")
done = 0
try:
    while True:
        writer.append(batch(done, 32))
        done += 32
except DiskFullError as error:
    print("full", done, error, flush=True)
writer.close(complete=False)
"""


def test_a_real_full_disk_stops_cleanly_and_keeps_the_committed_samples(tmp_path):
    """A 3 MiB tmpfs: the writer stops at the batch that would not fit; no traceback, no crash."""
    with small_tmpfs(tmp_path / "small", "3m") as disk:
        path = disk / "s.h5"
        run = subprocess.run(
            [sys.executable, "-c", _FILLING_WRITER.format(path=str(path))],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr
        full, done, *message = run.stdout.split()
        assert full == "full" and int(done) > 0
        assert f"no space left on {str(disk)!r}" in " ".join(message)
        assert f"the {done} committed samples are kept" in " ".join(message)
        with open_store(path, warn_incomplete=False) as store:
            assert len(store) == int(done) and store.paths[-1] == f"/images/cat/{int(done) - 1:05d}.jpg"
        assert _temporary_files(disk) == []
        # Resuming on the full disk is refused before it copies anything.
        with pytest.raises(DiskFullError, match="resuming copies"):
            StoreWriter(path, [BlockInfo("SE_2_1", "a", 2, 1, 512, "se")], {}, resume=True)
        assert _temporary_files(disk) == []


def test_gates_of_the_wrong_shape_write_nothing(tmp_path):
    path = tmp_path / "s.h5"
    writer = StoreWriter(path, BLOCKS, ATTRS)
    writer.append(_batch(0, 2))
    bad = _batch(2, 2)
    gates = dict(bad.gates, SE_3_1=np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"SE_3_1: got gates of shape \(2, 5\)"):
        writer.append(SampleBatch(**{**bad.__dict__, "gates": gates}))
    writer.close(complete=True)
    with h5py.File(path, "r") as f:
        # Nothing of the refused batch was appended (the first block is checked after the second, too).
        assert f["samples/path"].shape[0] == 2 and f["blocks/SE_2_1"].shape[0] == 2
