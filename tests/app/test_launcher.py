"""seviz/app/launcher.py: what ``seviz app --root`` may browse, and that browsing it is cheap.

``seviz app --root /`` walked the whole filesystem on every interaction (~9 s):
a filesystem root is refused, the search is bounded in depth, and the list is
indexed once and reused (issue 13, "Smaller").
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seviz.app import launcher
from seviz.app.launcher import app_arguments, app_command, find_stores, parse_app_arguments
from seviz.errors import AppPathError


def test_the_filesystem_root_is_refused():
    message = r"--root '/' is the whole filesystem.*pass the folder that holds your stores"
    with pytest.raises(AppPathError, match=message):
        app_arguments([], "/")
    with pytest.raises(AppPathError, match=message):
        app_command([], "/")
    with pytest.raises(AppPathError, match=message):
        find_stores("/")


def test_the_app_itself_refuses_the_filesystem_root():
    with pytest.raises(AppPathError, match="whole filesystem"):
        parse_app_arguments(["--root", "/"])


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_stores_are_searched_a_bounded_depth_below_the_root(tmp_path):
    _touch(tmp_path / "a" / "b" / "shallow.h5")
    _touch(tmp_path / "1" / "2" / "3" / "4" / "5" / "6" / "at_the_limit.h5")
    _touch(tmp_path / "1" / "2" / "3" / "4" / "5" / "6" / "7" / "too_deep.h5")
    found = [p.relative_to(tmp_path).as_posix() for p in find_stores(tmp_path)]
    assert found == ["1/2/3/4/5/6/at_the_limit.h5", "a/b/shallow.h5"]
    assert [p.name for p in find_stores(tmp_path, max_depth=2)] == ["shallow.h5"]


def test_the_list_is_indexed_once_not_walked_on_every_interaction(tmp_path, monkeypatch):
    nested = _touch(tmp_path / "runs" / "one.h5")
    walks = []
    real_walk = os.walk
    monkeypatch.setattr(launcher.os, "walk", lambda *a, **k: (walks.append(a[0]), real_walk(*a, **k))[1])
    assert find_stores(tmp_path) == [nested]
    assert find_stores(tmp_path) == [nested] and find_stores(tmp_path) == [nested]
    assert len(walks) == 1  # three interactions, one walk
    nested.unlink()
    assert find_stores(tmp_path) == [] and len(walks) == 1  # a store that has gone is not offered
    added = _touch(tmp_path / "new.h5")  # the root folder changed: walked again
    stat = tmp_path.stat()  # (a filesystem with coarse timestamps may not show the change by itself)
    os.utime(tmp_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert find_stores(tmp_path) == [added] and len(walks) == 2
    monkeypatch.setattr(launcher, "_INDEX_SECONDS", 0.0)  # and again once the index is old
    assert find_stores(tmp_path) == [added] and len(walks) == 3
