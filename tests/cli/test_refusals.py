"""Commands that read a malformed input refuse it with a message (exit 2), write nothing, and leave it as it was.

Issue 13: a damaged store gave ``RuntimeError: Can't decode global heap
prefix`` tracebacks in info/analyze/recommend/plot/attribute; empty
``--classes`` lists meant "every class".
"""

from __future__ import annotations

import signal

import h5py
import numpy as np
import pytest
from _images import write_class_folders
from _tiny_store import sha256, write_tiny_store

from seviz.cli import main


@pytest.fixture(autouse=True)
def _keep_sigterm():
    handler = signal.getsignal(signal.SIGTERM)  # main() turns SIGTERM into KeyboardInterrupt
    yield
    signal.signal(signal.SIGTERM, handler)


def _cut(path, tmp_path):
    data = path.read_bytes()
    out = tmp_path / "cut.h5"
    out.write_bytes(data[: len(data) // 2])
    return out, "is truncated"


def _short_labels(path, tmp_path):
    with h5py.File(path, "a") as f:
        labels = f["samples/label"][:5]
        del f["samples/label"]
        f["samples/label"] = labels
    return path, "/samples/label has 5 rows but /progress says 12 samples"


def _integer_gates(path, tmp_path):
    with h5py.File(path, "a") as f:
        del f["blocks/SE_2_1"]
        f["blocks/SE_2_1"] = np.ones((12, 4), dtype=np.int32)
    return path, "/blocks/SE_2_1 holds int32 values"


DAMAGE = {"truncated": _cut, "short labels": _short_labels, "integer gates": _integer_gates}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_every_command_refuses_a_damaged_store_and_leaves_it_unchanged(damage, tmp_path, capsys):
    store, message = DAMAGE[damage](write_tiny_store(tmp_path / "tiny.h5"), tmp_path)
    before = sha256(store)
    out = tmp_path / "out"
    commands = {
        "info": [],
        "analyze": ["--json", str(out / "stats.json")],
        "recommend": ["--out", str(out / "rec.json")],
        "plot": ["--out", str(out / "figures")],
        "attribute": ["--no-progress"],
    }
    for command, options in commands.items():
        assert main([command, str(store), *options]) == 2, command
        err = capsys.readouterr().err
        assert f"seviz {command}: error:" in err and message in err and "Traceback" not in err, (command, err)
        assert sha256(store) == before, f"{command} modified the store"
    assert not out.exists(), "a refused command wrote an output"


@pytest.mark.parametrize("flag", ["--classes", "--blocks"])
@pytest.mark.parametrize("value", ["", ","])
def test_an_empty_list_is_refused_not_taken_as_every_item(flag, value, tmp_path, capsys):
    store = write_tiny_store(tmp_path / "tiny.h5")
    assert main(["analyze", str(store), flag, value]) == 2
    assert "names nothing; list names, or drop the flag" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["", ","])
def test_record_refuses_an_empty_class_list_before_writing_a_store(value, tmp_path, capsys):
    data = tmp_path / "data"
    write_class_folders(data, {"cat": 2, "dog": 2}, size=(32, 32))
    out = tmp_path / "s.h5"
    argv = ["record", "--model", "se_resnet50_cifar10", "--weights", "random", "--data", str(data)]
    assert main([*argv, "--classes", value, "--out", str(out), "--no-progress"]) == 2
    assert "names no class" in capsys.readouterr().err
    assert not out.exists()


def test_record_tells_a_misspelt_class_before_building_the_model(tmp_path, capsys, monkeypatch):
    import timm

    def create(name, **kwargs):  # a build would download the weights
        raise AssertionError(f"the model {name} was built")

    monkeypatch.setattr(timm, "create_model", create)
    write_class_folders(tmp_path / "data", {"goldfish": 1}, size=(32, 32))
    argv = [
        "record",
        "--model",
        "se_resnet50",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "s.h5"),
    ]
    assert main([*argv, "--classes", "goldfsh", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown class 'goldfsh'; did you mean 'goldfish' (n01443537)" in err and "Traceback" not in err
    assert not (tmp_path / "s.h5").exists()
