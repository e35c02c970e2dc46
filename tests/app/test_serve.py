"""Tests of seviz.app.serve: the server imports the pages and warms the named stores before it listens."""

from __future__ import annotations

import subprocess
import sys
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
    fresh = write_app_store(tmp_path / "fresh.h5", seed=1)
    expected = cached_statistics(saved)
    near_one = Thresholds().near_one
    verdict_classes, verdict_settings = needed_statistics(Thresholds(near_one=near_one))
    cached_statistics(
        saved, classes=verdict_classes, settings=verdict_settings
    )  # as the Pruning page saves them
    assert serve.warm(app_arguments([saved, fresh], tmp_path)) == [str(saved)]
    assert not cache_folder(fresh).exists()  # a store without saved statistics is only opened

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


def test_warm_leaves_arguments_it_cannot_read_to_the_app(tmp_path: Path) -> None:
    assert serve.warm(["--root", str(tmp_path / "missing")]) == []
    (tmp_path / "not-a-store.h5").write_bytes(b"no HDF5 here")
    assert serve.warm(["--root", str(tmp_path), str(tmp_path / "not-a-store.h5")]) == []


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
