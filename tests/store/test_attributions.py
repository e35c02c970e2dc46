"""seviz/store/attributions.py: attributions are written into a copy that replaces the store, or not at all."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from _tiny_store import TINY_BLOCKS, TINY_CLASSES, sha256, write_tiny_store

from seviz.errors import DiskFullError
from seviz.store import open_store, write_attributions

ATTRS = {"method": "planted", "images": 12, "weights_sha256": "ab" * 32}


def _tables(value: float) -> dict[str, np.ndarray]:
    return {b.name: np.full((len(TINY_CLASSES), b.channels), value, dtype=np.float32) for b in TINY_BLOCKS}


def _attributed(path) -> float:
    with open_store(path) as opened:
        return float(opened.attributions()["SE_2_1"].values[0, 0])


@pytest.fixture()
def store(tmp_path):
    path = write_tiny_store(tmp_path / "s.h5")
    write_attributions(path, _tables(1.0), TINY_CLASSES, ATTRS)
    return path


def test_a_second_write_replaces_the_attributions_and_keeps_the_gates(store):
    with open_store(store) as opened:
        gates = opened.gates("SE_3_1")
    write_attributions(store, _tables(2.0), TINY_CLASSES, ATTRS)
    assert _attributed(store) == 2.0
    with open_store(store) as opened:
        np.testing.assert_array_equal(opened.gates("SE_3_1"), gates)
    assert sorted(p.name for p in store.parent.iterdir()) == ["s.h5"]  # no copy or lock left behind


def test_a_failure_midway_leaves_the_store_as_it_was(store, monkeypatch):
    before = sha256(store)
    real = h5py.Group.create_dataset

    def fail_on_the_second(self, name, *args, **kwargs):
        if name == TINY_BLOCKS[1].name:
            raise OSError("the disk went away")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fail_on_the_second)
    with pytest.raises(OSError, match="went away"):
        write_attributions(store, _tables(2.0), TINY_CLASSES, ATTRS)
    monkeypatch.undo()
    assert sha256(store) == before and _attributed(store) == 1.0  # the old attributions are kept
    assert sorted(p.name for p in store.parent.iterdir()) == ["s.h5"]


def test_no_room_for_the_copy_is_refused_before_anything_is_written(store, monkeypatch):
    before = sha256(store)
    monkeypatch.setattr("seviz.store.attributions.free_bytes", lambda _path: 1 << 20)
    with pytest.raises(DiskFullError, match=r"needs 0\.02 GiB free on .* and 0\.00 GiB is; free some space"):
        write_attributions(store, _tables(2.0), TINY_CLASSES, ATTRS)
    assert sha256(store) == before and _attributed(store) == 1.0


def test_a_store_reached_by_a_link_is_replaced_where_it_lives(store, tmp_path):
    link = tmp_path / "elsewhere" / "link.h5"
    link.parent.mkdir()
    link.symlink_to(store)
    write_attributions(link, _tables(3.0), TINY_CLASSES, ATTRS)
    assert link.is_symlink() and os.path.samefile(link, store)
    assert _attributed(store) == 3.0
