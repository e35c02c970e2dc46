"""seviz/store/reader.py: ``open_store`` checks a file against the schema once, and names what is wrong.

Each malformed store of issue 13 (point 9) gets one :class:`StoreError` that
names the dataset or attribute, never a traceback and never an analysis of a
silent subset; gates outside [0, 1] get a warning that names the block and
says by how much. The stores are never modified.
"""

from __future__ import annotations

import logging
import re
import shutil

import h5py
import numpy as np
import pytest
from _tiny_store import TINY_SAMPLES, sha256, write_tiny_store

from seviz.analysis import compute_statistics
from seviz.store import StoreError, open_store


@pytest.fixture()
def tiny(tmp_path):
    return write_tiny_store(tmp_path / "tiny.h5")


def _edited(path, edit):
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _replace(f, name, data):
    del f[name]
    f.create_dataset(name, data=data)


CASES = {
    "a 1-D block": (
        lambda f: _replace(f, "blocks/SE_2_1", f["blocks/SE_2_1"][:, 0]),
        r"/blocks/SE_2_1 has shape \(12,\); expected \(samples, channels\)",
    ),
    "a string block": (
        lambda f: _replace(f, "blocks/SE_2_1", np.full((12, 4), b"x")),
        r"/blocks/SE_2_1 holds \|S1 values; SE gates are stored as float16 or float32",
    ),
    "an integer block": (
        lambda f: _replace(f, "blocks/SE_2_1", np.ones((12, 4), dtype=np.int32)),
        r"/blocks/SE_2_1 holds int32 values",
    ),
    "a group inside /blocks": (
        lambda f: f["blocks"].create_group("SE_9_9"),
        r"/blocks/SE_9_9 is a group, not a dataset of gates",
    ),
    "a missing /samples/label": (
        lambda f: f["samples"].__delitem__("label"),
        r"has no /samples/label dataset",
    ),
    "classes that are not JSON": (
        lambda f: f.attrs.__setitem__("classes", "not json ["),
        r"root attribute 'classes' is not JSON",
    ),
    "a gate_error that is not an object": (
        lambda f: f.attrs.__setitem__("gate_error", "[1, 2]"),
        r"root attribute 'gate_error' holds a list \[1, 2\], not an object",
    ),
    "a block shorter than the samples": (
        lambda f: _replace(f, "blocks/SE_2_1", f["blocks/SE_2_1"][:5]),
        r"/blocks/SE_2_1 has 5 rows but /progress says 12 samples are committed",
    ),
    "a label column shorter than the blocks": (
        lambda f: _replace(f, "samples/label", f["samples/label"][:5]),
        r"/samples/label has 5 rows but /progress says 12 samples are committed",
    ),
    "a negative /progress": (
        lambda f: f["progress"].__setitem__(slice(None), [-3, 13]),
        r"/progress is \[-3, 13\]; counts cannot be negative",
    ),
    "a /progress below the rows of a complete store": (
        lambda f: f["progress"].__setitem__(slice(None), [8, 9]),
        r"/samples/label has 12 rows but the store is marked complete with 8 samples",
    ),
    "a model that is a number": (
        lambda f: f.attrs.__setitem__("model", 7),
        r"root attribute 'model' is an integer 7, not text",
    ),
    "a block attribute of the wrong type": (
        lambda f: f["blocks/SE_3_1"].attrs.__setitem__("stage", "three"),
        r"/blocks/SE_3_1 attribute 'stage' is text 'three', not an integer",
    ),
    "a label that is not its class's index": (
        lambda f: f["samples/label"].__setitem__(0, 1),
        r"/samples/label\[0\] is 1, but its class 'cat' has index 0",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_store_is_one_error_naming_the_dataset(case, tiny):
    edit, message = CASES[case]
    path = _edited(tiny, edit)
    before = sha256(path)
    with pytest.raises(StoreError, match=message):
        open_store(path)
    with pytest.raises(StoreError, match=message):
        compute_statistics(path)
    assert sha256(path) == before


@pytest.mark.parametrize("percent", [1, 10, 50, 90, 99])
def test_a_truncated_store_is_refused_as_truncated(percent, tiny, tmp_path):
    data = tiny.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) * percent // 100])
    with pytest.raises(StoreError, match=r"is truncated \([\d,]+ bytes of [\d,]+\)"):
        open_store(cut)
    assert cut.read_bytes() == data[: len(data) * percent // 100]


def test_a_store_damaged_inside_is_a_store_error_where_it_is_read(tiny, tmp_path, monkeypatch):
    """h5py's own errors on a damaged file (here: one raised on reading a block) become StoreError."""
    with open_store(tiny) as store:
        data = store._dataset("SE_2_1")

        def broken(*_args, **_kwargs):
            raise RuntimeError("Can't decode global heap prefix (bad global heap collection signature)")

        monkeypatch.setattr(type(data), "read_direct", broken)
        monkeypatch.setattr(type(data), "__getitem__", broken)
        with pytest.raises(
            StoreError, match=r"damaged .*reading /blocks/SE_2_1 failed \(RuntimeError: Can't decode"
        ):
            store.gates("SE_2_1")
        with pytest.raises(StoreError, match=r"reading /blocks/SE_2_1 failed"):
            list(store.iter_chunks("SE_2_1", dtype=None, buffer=np.zeros(1 << 16, np.uint8)))


@pytest.mark.parametrize(
    ("value", "how"), [(7.5, r"up to 7\.5 \(6\.5 above 1\)"), (-3.0, r"down to -3 \(3 below 0\)")]
)
def test_gates_outside_the_unit_range_are_analysed_with_a_warning_naming_the_block(value, how, tiny, caplog):
    with h5py.File(tiny, "a") as f:
        f["blocks/SE_3_1"][:, 2] = value
    with caplog.at_level(logging.WARNING, logger="seviz"):
        stats = compute_statistics(tiny)
    extreme = stats.block("SE_3_1").all.max if value > 1 else stats.block("SE_3_1").all.min
    assert extreme[2] == value  # analysed as stored
    warnings = [r.getMessage() for r in caplog.records if "outside [0, 1]" in r.getMessage()]
    assert len(warnings) == 1 and caplog.records[-1].levelno == logging.WARNING
    assert "block SE_3_1 (layer2.0.se.gate)" in warnings[0] and re.search(how, warnings[0])


def test_gates_in_the_unit_range_give_no_warning(tiny, caplog):
    with caplog.at_level(logging.WARNING, logger="seviz"):
        compute_statistics(tiny)
    assert "outside [0, 1]" not in caplog.text


def test_provenance_and_counts_are_read_once_typed(tiny):
    with open_store(tiny) as store:
        assert len(store) == TINY_SAMPLES and store.complete and store.dtype == "float16"
        assert store.provenance.model == "tiny_senet" and store.provenance.gate_error_max_abs == 0.0
        assert [c.name for c in store.provenance.classes] == ["cat", "dog"]
        assert store.skipped == [("/data/cat/bad.png", "OSError: truncated")]


def test_a_store_being_written_still_opens(tmp_path):
    """An incomplete store, as a killed writer leaves it, opens (in SWMR mode) with its committed prefix."""
    path = write_tiny_store(tmp_path / "tiny.h5")
    copy = tmp_path / "partial.h5"
    shutil.copy(path, copy)
    with h5py.File(copy, "a") as f:
        f.attrs["complete"] = False
        f["progress"][:] = [6, 7]  # the second batch was appended but never committed
    with open_store(copy) as store:
        assert len(store) == 6 and not store.complete and len(store.skipped) == 1
