"""Tests of seviz.analysis.cache: statistics saved once beside a store, read back, refreshed when stale."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from _planted import BLOCKS, CLASSES, planted_gates, write_planted_store, write_store

from seviz.analysis import (
    ALL_CLASSES,
    StatsSettings,
    cache_folder,
    cached_channel_extremes,
    cached_statistics,
    channel_extremes,
    class_counts,
    class_quantiles,
    class_values,
    compute_statistics,
    saved_statistics,
)
from seviz.pruning import recommend
from seviz.store import Store, open_store


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Blocks read from a store (one entry per streamed pass)."""
    seen: list[str] = []
    original = Store.iter_chunks

    def counting(self, name, *args, **kwargs):
        seen.append(name)
        yield from original(self, name, *args, **kwargs)

    monkeypatch.setattr(Store, "iter_chunks", counting)
    return seen


def _same(a, b) -> None:
    """Two statistics hold the same numbers (per-class quantiles to float32 precision)."""
    assert a.class_names == b.class_names and a.block_names == b.block_names and a.store == b.store
    for name in a.block_names:
        x, y = a.block(name), b.block(name)
        assert x.info == y.info and x.quantile_bins == y.quantile_bins
        assert x.specificity.to_dict() == y.specificity.to_dict()
        assert x.behaviour.to_dict() == y.behaviour.to_dict()
        for cls in [*y.class_names, ALL_CLASSES]:
            p, q = x.class_stats(cls), y.class_stats(cls)
            assert p.count == q.count
            for field in ("mean", "std", "min", "max", "histogram", "bin_edges"):
                np.testing.assert_array_equal(getattr(p, field), getattr(q, field))
            np.testing.assert_allclose(p.quantiles, q.quantiles, rtol=1e-6)


def test_statistics_are_saved_once_and_read_back(tmp_path, reads):
    store = write_planted_store(tmp_path / "s.h5")
    first = cached_statistics(store)
    assert sorted(reads) == sorted(BLOCKS)  # computed: one pass per block
    folder = cache_folder(store)
    assert folder == tmp_path / "s.h5.seviz-cache" and folder.is_dir()
    second = cached_statistics(store)
    assert sorted(reads) == sorted(BLOCKS)  # read back: no sample read again
    expected = compute_statistics(store)
    _same(first, expected)
    _same(second, expected)
    # The recommendation from saved statistics is the one `seviz recommend` writes.
    assert recommend(cached_statistics(store, classes=[])).to_json() == recommend(store).to_json()
    # One channel's values over every class come from one read of the file.
    block = second.block("SE_4_6")
    np.testing.assert_array_equal(
        class_values(block, "mean", 3), [expected.block("SE_4_6").class_stats(c).mean[3] for c in CLASSES]
    )
    np.testing.assert_allclose(
        class_quantiles(block, 3), [expected.block("SE_4_6").class_stats(c).quantiles[:, 3] for c in CLASSES]
    )
    # Every class's image count without reading any class's statistics; in memory the same.
    counts = [expected.block("SE_4_6").class_stats(c).count for c in CLASSES]
    loaded = set(block.classes._loaded)
    np.testing.assert_array_equal(class_counts(block), counts)
    assert set(block.classes._loaded) == loaded  # no class's statistics were read for it
    np.testing.assert_array_equal(class_counts(expected.block("SE_4_6")), counts)


def test_saved_statistics_reads_only_what_is_saved_and_never_computes(tmp_path, reads):
    store = write_planted_store(tmp_path / "s.h5")
    with open_store(store) as opened:
        assert saved_statistics(opened) is None
        assert reads == [] and not cache_folder(store).exists()  # nothing read, nothing written
        cached_statistics(opened, blocks=["SE_2_3"])
        assert saved_statistics(opened) is None  # the other blocks are not saved yet
        assert saved_statistics(opened, blocks=["SE_2_3"]).block_names == ["SE_2_3"]
        assert saved_statistics(opened, blocks=["SE_2_3"], classes=["pug"]) is None  # another key
        cached_statistics(opened)
        count = len(reads)
        _same(saved_statistics(opened), compute_statistics(opened))
        assert len(reads) == count + len(BLOCKS)  # only compute_statistics read samples


def test_other_settings_classes_or_blocks_are_computed_and_kept_beside(tmp_path, reads):
    store = write_planted_store(tmp_path / "s.h5")
    cached_statistics(store, blocks=["SE_2_3"])
    assert reads == ["SE_2_3"]
    both = cached_statistics(store, blocks=["SE_2_3", "SE_5_2"])  # only the missing block is computed
    assert reads == ["SE_2_3", "SE_5_2"] and both.block_names == ["SE_2_3", "SE_5_2"]
    near = cached_statistics(store, blocks=["SE_5_2"], settings=StatsSettings(near_one=0.999))
    assert reads[-1] == "SE_5_2" and near.settings.near_one == 0.999
    few = cached_statistics(store, blocks=["SE_5_2"], classes=["pug"])
    assert few.class_names == ("pug",) and list(few.block("SE_5_2").classes) == ["pug"]
    assert len(reads) == 4
    cached_statistics(store, blocks=["SE_5_2"], settings=StatsSettings(near_one=0.999))
    cached_statistics(store, blocks=["SE_5_2"], refresh=True)
    assert len(reads) == 5  # only the refresh read again
    assert len(list(cache_folder(store).iterdir())) == 3  # three keys, each a folder


def test_a_changed_store_is_computed_again_and_its_old_entries_removed(tmp_path, reads):
    store = write_planted_store(tmp_path / "s.h5", seed=0)
    before = cached_statistics(store, blocks=["SE_2_3"])
    (old,) = cache_folder(store).iterdir()
    store.unlink()
    labels, gates = planted_gates(400, seed=1)
    write_store(store, labels, gates)  # the same name, other samples
    after = cached_statistics(store, blocks=["SE_2_3"])
    assert reads == ["SE_2_3", "SE_2_3"]
    assert not np.array_equal(before.block("SE_2_3").all.mean, after.block("SE_2_3").all.mean)
    _same(after, compute_statistics(store, blocks=["SE_2_3"]))
    (new,) = cache_folder(store).iterdir()
    assert new != old


def test_a_read_only_folder_caches_in_the_users_cache(tmp_path, monkeypatch, reads):
    if os.geteuid() == 0:
        # root writes into read-only folders; pretend the folder is not writable.
        monkeypatch.setattr(os, "access", lambda path, mode: False if mode == os.W_OK else True)
    folder = tmp_path / "ro"
    folder.mkdir()
    store = write_planted_store(folder / "s.h5")
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    try:
        cached_statistics(store, blocks=["SE_2_3"])
        cached_statistics(store, blocks=["SE_2_3"])
        assert reads == ["SE_2_3"]
        assert not (folder / "s.h5.seviz-cache").exists()
        (entry,) = (tmp_path / "user-cache" / "seviz").iterdir()
        assert entry.name.startswith("s.h5-") and entry.name.endswith(".seviz-cache")
    finally:
        folder.chmod(stat.S_IRWXU)


def test_an_unwritable_cache_is_a_warning_not_an_error(tmp_path, monkeypatch, caplog):
    store = write_planted_store(tmp_path / "s.h5")
    (tmp_path / "s.h5.seviz-cache").write_text("a file where the folder would go")
    stats = cached_statistics(store, blocks=["SE_4_6"])
    _same(stats, compute_statistics(store, blocks=["SE_4_6"]))
    assert "could not save statistics" in caplog.text


def test_a_corrupt_entry_is_ignored_and_rewritten(tmp_path, reads, caplog):
    store = write_planted_store(tmp_path / "s.h5")
    expected = compute_statistics(store, blocks=["SE_2_3"])
    cached_statistics(store, blocks=["SE_2_3"])
    (entry,) = cache_folder(store).iterdir()
    (entry / "SE_2_3.h5").write_bytes(b"not HDF5")
    _same(cached_statistics(store, blocks=["SE_2_3"]), expected)
    assert reads == ["SE_2_3"] * 3 and "unreadable statistics cache" in caplog.text
    _same(cached_statistics(store, blocks=["SE_2_3"]), expected)  # the rewritten entry is read
    assert len(reads) == 3
    assert json.loads((entry / "key.json").read_text())["kind"] == "statistics"


def test_channel_extremes_are_saved_too(tmp_path, reads):
    store = write_planted_store(tmp_path / "s.h5")
    first = cached_channel_extremes(store, "SE_4_6", k=4)
    second = cached_channel_extremes(store, "SE_4_6", k=4)
    assert reads == ["SE_4_6"]
    expected = channel_extremes(store, "SE_4_6", k=4)
    for found in (first, second):
        for field in ("top_index", "top_value", "bottom_index", "bottom_value"):
            np.testing.assert_array_equal(getattr(found, field), getattr(expected, field))
