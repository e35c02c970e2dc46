"""The store (seviz/store.py) on its own: committed prefix, crash and resume, errors that say what to do."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from seviz.store import BlockInfo, SampleBatch, StoreError, StoreWriter, open_store

BLOCKS = [
    BlockInfo("SE_2_1", "layer1.0.se", 2, 1, 4, "se"),
    BlockInfo("SE_3_1", "layer2.0.se", 3, 1, 6, "se"),
]
ATTRS = {"model": "tiny", "classes": [{"index": 0, "name": "cat", "id": None}]}


def _batch(first: int, n: int, skipped=()) -> SampleBatch:
    rows = np.arange(first, first + n, dtype=np.float32)[:, None]
    return SampleBatch(
        label=np.zeros(n, dtype=np.int64),
        class_name=["cat"] * n,
        path=[f"/images/cat/{i:03d}.jpg" for i in range(first, first + n)],
        topk_index=np.zeros((n, 5), dtype=np.int32),
        topk_prob=np.zeros((n, 5), dtype=np.float32),
        gates={b.name: (rows + np.arange(b.channels)) / 1000 for b in BLOCKS},
        consumed=n + len(skipped),
        skipped=list(skipped),
    )


# A child that writes batches and dies without closing anything, as kill -9 would leave it.
_KILLED_WRITER = """
import os, sys
sys.path.insert(0, {tests!r})
from test_store import ATTRS, BLOCKS, _batch
from seviz.store import StoreWriter
writer = StoreWriter({path!r}, BLOCKS, ATTRS)
writer.append(_batch(0, 3, skipped=[("/images/cat/bad.jpg", "OSError: truncated")]))
writer.append(_batch(3, 2))
os._exit(9)
"""


def _killed_store(tmp_path):
    path = tmp_path / "killed.h5"
    script = _KILLED_WRITER.format(tests=str(__import__("pathlib").Path(__file__).parent), path=str(path))
    subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    return path


def test_a_killed_writer_leaves_a_readable_incomplete_store(tmp_path, caplog):
    path = _killed_store(tmp_path)
    with open_store(path) as store:
        assert not store.complete and len(store) == 5
        assert store.skipped == [("/images/cat/bad.jpg", "OSError: truncated")]
        np.testing.assert_allclose(store.gates("SE_3_1")[:, 0], np.arange(5) / 1000, atol=1e-3)
    assert "incomplete" in caplog.text and "--resume" in caplog.text


def test_resume_appends_after_the_committed_prefix_and_keeps_the_layout(tmp_path):
    path = _killed_store(tmp_path)
    with h5py.File(path, "r", swmr=True) as f:
        layout = {name: (f[name].chunks, f[name].compression) for name in ("samples/path", "blocks/SE_2_1")}
    writer = StoreWriter(path, BLOCKS, ATTRS, resume=True)
    assert (writer.samples, writer.consumed) == (5, 6)
    writer.append(_batch(5, 4))
    writer.close(complete=True)
    with open_store(path) as store:
        assert store.complete and len(store) == 9
        assert list(store.paths) == [f"/images/cat/{i:03d}.jpg" for i in range(9)]
        np.testing.assert_allclose(store.gates("SE_2_1")[:, 1], (np.arange(9) + 1) / 1000, atol=1e-3)
        assert len(store.skipped) == 1
    with h5py.File(path, "r") as f:
        # The resumed file is compressed and chunked like the original (lzf on the string columns).
        assert {name: (f[name].chunks, f[name].compression) for name in layout} == layout
        assert layout["samples/path"][1] == "lzf"


def test_resume_of_a_complete_store_is_refused(tmp_path):
    path = tmp_path / "done.h5"
    with StoreWriter(path, BLOCKS, ATTRS) as writer:
        writer.append(_batch(0, 2))
        writer.close(complete=True)
    with pytest.raises(StoreError, match="already complete"):
        StoreWriter(path, BLOCKS, ATTRS, resume=True)


def test_a_store_killed_while_being_created_asks_for_overwrite(tmp_path):
    """Killed before its layout was set up: there is nothing to resume, and the error says what to do."""
    from seviz.recording import record

    path = tmp_path / "torn.h5"
    script = textwrap.dedent(
        f"""
        import os, h5py
        f = h5py.File({str(path)!r}, "w", libver="latest")
        f.attrs["model"] = "tiny"
        f.flush()
        os._exit(9)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    (tmp_path / "data" / "cat").mkdir(parents=True)
    with pytest.raises(StoreError, match="record it again with `overwrite=True` instead of `resume=True`"):
        record("tiny_does_not_matter", tmp_path / "data", path, resume=True, weights="random")
    assert path.exists()  # nothing was deleted


def test_writer_refuses_an_existing_file_and_wrong_gate_shapes(tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(b"someone's file")
    with pytest.raises(FileExistsError, match="`overwrite=True`"):
        StoreWriter(path, BLOCKS, ATTRS)
    assert path.read_bytes() == b"someone's file"
    with StoreWriter(path, BLOCKS, ATTRS, overwrite=True) as writer:
        bad = _batch(0, 2)
        gates = dict(bad.gates, SE_2_1=np.zeros((2, 5)))
        with pytest.raises(StoreError, match=r"SE_2_1: got gates of shape \(2, 5\), expected \(2, 4\)"):
            writer.append(SampleBatch(**{**bad.__dict__, "gates": gates}))


def test_open_store_names_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_store(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(StoreError, match="not a readable HDF5 file"):
        open_store(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(StoreError):
        open_store(tmp_path / "other.h5")


def test_paths_at_reads_the_rows_asked_for_and_agrees_with_paths(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, BLOCKS, ATTRS) as writer:
        writer.append(_batch(0, 7))
        writer.append(_batch(7, 5))
    expected = [f"/images/cat/{i:03d}.jpg" for i in range(12)]
    with open_store(path) as store:
        asked = {
            "rows": [9, 2, 2, -1],
            "stride": slice(None, None, 5),
            "tail": slice(10, None),
            "empty": [],
        }
        reads = {name: list(store.paths_at(rows)) for name, rows in asked.items()}
        assert store._paths is None  # nothing above read the whole column
        assert reads == {
            "rows": [expected[9], expected[2], expected[2], expected[11]],
            "stride": expected[::5],
            "tail": expected[10:],
            "empty": [],
        }
        with pytest.raises(IndexError, match="12"):
            store.paths_at([12])
        assert list(store.paths) == expected  # read whole, then served from memory
        assert list(store.paths_at([3, 0])) == [expected[3], expected[0]]
