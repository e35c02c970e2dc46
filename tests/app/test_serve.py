"""Tests of seviz.app.serve: the server imports the pages and starts on the named stores' statistics before it listens."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from _app_store import write_app_store

import seviz.analysis.cache
from seviz.analysis import cache_folder, cached_statistics
from seviz.app import serve
from seviz.app.launcher import app_arguments
from seviz.plots import default_blocks, default_classes
from seviz.pruning import Thresholds, needed_statistics


def test_warm_reads_saved_statistics_into_the_pages_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seviz.app.views import _data

    saved = write_app_store(tmp_path / "saved.h5")
    expected = cached_statistics(saved)
    near_one = Thresholds().near_one
    # The Pruning page's statistics, saved as that page saves them.
    verdict_classes, verdict_settings = needed_statistics(Thresholds(near_one=near_one))
    cached_statistics(saved, classes=verdict_classes, settings=verdict_settings)
    thread = serve.warm(app_arguments([saved], tmp_path))
    assert thread is not None
    thread.join(timeout=120)

    def computed(*args, **kwargs):
        raise AssertionError("the page computed or read statistics that the server had warmed")

    monkeypatch.setattr(_data, "cached_statistics", computed)
    monkeypatch.setattr(seviz.analysis.cache, "compute_statistics", computed)
    stats = _data.statistics(saved)  # what the first page asks for comes from memory
    assert stats.block_names == expected.block_names
    assert stats.block("SE_4_6").specificity.to_dict() == expected.block("SE_4_6").specificity.to_dict()

    def read_file(*args, **kwargs):
        raise AssertionError("the page read the statistics file for what the server had warmed")

    # The classes the Distributions page draws first are in memory, and so are the verdicts' statistics.
    blocks, classes = default_blocks(stats), default_classes(stats)
    assert blocks and classes
    want = {(b, c): expected.block(b).classes[c].mean.tolist() for b in blocks for c in classes}
    monkeypatch.setattr(seviz.analysis.cache._StoredClasses, "_open", read_file)
    assert {(b, c): stats.block(b).classes[c].mean.tolist() for b in blocks for c in classes} == want
    verdicts = _data.verdict_statistics(saved, near_one)
    assert verdicts.block_names == expected.block_names


def test_warm_computes_unsaved_statistics_once_while_the_first_page_waits_for_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seviz.app.views import _data

    fresh = write_app_store(tmp_path / "fresh.h5", seed=1)
    real = seviz.analysis.cache.compute_statistics
    calls: list[object] = []

    def slow(store, blocks, classes, settings):
        calls.append(classes)
        time.sleep(0.5)  # the page asks while the server's thread is still at it
        return real(store, blocks, classes, settings)

    monkeypatch.setattr(seviz.analysis.cache, "compute_statistics", slow)
    thread = serve.warm(app_arguments([fresh], tmp_path))
    assert thread is not None
    stats = _data.statistics(fresh)  # the first page, while the thread computes
    thread.join(timeout=120)
    assert not thread.is_alive()
    # Once: the page waited for the thread instead of computing them again, and the Pruning
    # page's statistics (not saved) were left to that page.
    assert calls == [None]
    assert stats.block("SE_4_6").specificity.to_dict() == real(fresh).block("SE_4_6").specificity.to_dict()
    assert cache_folder(fresh).is_dir()  # saved beside the store for the next start


def test_warm_leaves_stores_it_cannot_read_to_the_app(tmp_path: Path) -> None:
    from seviz.app.views import _data

    assert serve.warm(["--root", str(tmp_path / "missing")]) is None
    assert serve.warm(["--root", str(tmp_path), str(tmp_path / "gone.h5")]) is None
    assert serve.warm(["--root", str(tmp_path)]) is None  # no store named: nothing to warm
    broken = tmp_path / "not-a-store.h5"
    broken.write_bytes(b"no HDF5 here")
    good = write_app_store(tmp_path / "good.h5")
    thread = serve.warm(["--root", str(tmp_path), str(broken), str(good)])
    assert thread is not None
    thread.join(timeout=120)  # past the broken store, quietly: the page says what is wrong
    assert cache_folder(good).is_dir()  # the store named after it was still warmed
    with pytest.raises(_data.PageError, match="not-a-store.h5"):
        _data.statistics(broken)


def test_the_server_process_has_the_pages_imported_before_streamlit_runs(tmp_path: Path) -> None:
    # `python -m seviz.app.serve --version` runs Streamlit's own command line after the preload.
    code = (
        "import sys\n"
        "from seviz.app import serve\n"
        "serve.preload()\n"
        "print(all(m in sys.modules for m in serve.PRELOADED))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    version = subprocess.run(
        [sys.executable, "-m", "seviz.app.serve", "--version"], capture_output=True, text=True, timeout=120
    )
    assert version.returncode == 0 and "Streamlit" in version.stdout
