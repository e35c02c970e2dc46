"""Tests for seviz/recording/resume.py: a resume continues the same run over the same images, or refuses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from _images import noise_image, write_class_folders, write_tiny_model

from seviz.data import ImageItem
from seviz.errors import StoreError
from seviz.recording import record
from seviz.recording.resume import Committed, check_committed_paths
from seviz.store import open_store


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return str(write_tiny_model(tmp_path_factory.mktemp("model")))


def record_tiny(spec, data, out, factory="tiny", **options):
    return record(model=f"{spec}:{factory}", data=data, out=out, weights="random", class_names=["cat", "dog"],
                  batch_size=2, workers=0, device="cpu", progress=False, images_per_class=5,
                  **options)  # fmt: skip


@pytest.fixture()
def interrupted(spec, tmp_path, monkeypatch):
    """6 images per class, the first 5 recorded: a run stopped after 2 batches (4 cat images)."""
    write_class_folders(tmp_path / "data", {"cat": 6, "dog": 6}, size=(32, 32))
    monkeypatch.setenv("TINY_STOP_AT", "4")
    with pytest.raises(KeyboardInterrupt):
        record_tiny(spec, tmp_path / "data", tmp_path / "s.h5", factory="interrupted")
    monkeypatch.delenv("TINY_STOP_AT")
    with open_store(tmp_path / "s.h5", warn_incomplete=False) as store:
        assert len(store) == 4 and not store.complete
    return tmp_path / "data", tmp_path / "s.h5"


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_added_before_the_cut_point_is_refused(spec, interrupted):
    """The image count (first 5 per class) is unchanged, so only the paths tell the list moved."""
    data, out = interrupted
    noise_image((32, 32), seed=99).save(data / "cat" / "img_000b.jpg")  # sorts second
    before = _sha(out)
    with pytest.raises(StoreError, match="data folder changed") as caught:
        record_tiny(spec, data, out, factory="interrupted", resume=True)
    message = str(caught.value)
    assert "committed sample 1 is" in message and "img_001.jpg" in message and "img_000b.jpg" in message
    assert _sha(out) == before


def test_a_file_removed_before_the_cut_point_is_refused(spec, interrupted):
    data, out = interrupted
    (data / "cat" / "img_002.jpg").unlink()
    before = _sha(out)
    with pytest.raises(StoreError, match="committed sample 2 is .*img_002.jpg"):
        record_tiny(spec, data, out, factory="interrupted", resume=True)
    assert _sha(out) == before


def test_files_changed_after_the_cut_point_do_not_stop_a_resume(spec, interrupted):
    data, out = interrupted
    (data / "dog" / "img_005.jpg").unlink()  # never among the first 5 dogs
    summary = record_tiny(spec, data, out, factory="interrupted", resume=True)
    assert (summary.samples, summary.complete) == (10, True)
    with open_store(out) as store:
        assert len(set(store.paths.tolist())) == 10


def test_skipped_files_count_among_the_committed_entries():
    items = [ImageItem(f"/d/cat/{i}.jpg", 0, "cat") for i in range(6)]
    committed = Committed({}, paths=["/d/cat/0.jpg", "/d/cat/2.jpg"], skipped=["/d/cat/1.jpg"])
    check_committed_paths(Path("s.h5"), committed, items)
    gone = Committed({}, paths=["/d/cat/0.jpg", "/d/cat/2.jpg"], skipped=["/d/cat/gone.jpg"])
    with pytest.raises(StoreError, match="data folder changed"):
        check_committed_paths(Path("s.h5"), gone, items)
    short = Committed({}, paths=[i.path for i in items] + ["/d/cat/6.jpg"])
    with pytest.raises(StoreError, match="committed sample 6 is '/d/cat/6.jpg', but the image list rebuilt now has "
                                         "'nothing' there"):  # fmt: skip
        check_committed_paths(Path("s.h5"), short, items)
