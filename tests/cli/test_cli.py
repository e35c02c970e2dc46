"""Tests for seviz/cli.py: a fast ``--help``, and user errors as exit code 2 with their message."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
from _images import write_class_folders, write_tiny_model

from seviz.cli import main

HEAVY = ("torch", "timm", "torchvision", "h5py", "matplotlib", "streamlit", "captum")


@pytest.fixture(autouse=True)
def _keep_sigterm():
    # main() turns SIGTERM into KeyboardInterrupt for a recording; give pytest its handler back.
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


@pytest.mark.parametrize("argv", [["--help"], ["record", "--help"], ["--version"]])
def test_help_imports_nothing_heavy(argv):
    script = textwrap.dedent(
        f"""
        import sys
        import seviz
        assert not [m for m in {HEAVY!r} if m in sys.modules], "import seviz"
        import seviz.cli
        try:
            seviz.cli.main({argv!r})
        except SystemExit as stop:
            assert stop.code in (0, None), stop.code
        loaded = [m for m in {HEAVY!r} if m in sys.modules]
        assert not loaded, loaded
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "seviz" in result.stdout


def test_seviz_module_help_runs_without_torch():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "seviz", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert "record" in result.stdout and "blocks" in result.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line
    }
    assert not imported & set(HEAVY)


def test_missing_data_folder_exits_2(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "seviz",
            "record",
            "--model",
            "se_resnet50",
            "--weights",
            "random",
            "--data",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "store.h5"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "seviz record: error: data folder" in result.stderr and "nowhere" in result.stderr
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "store.h5").exists()


@pytest.fixture()
def tiny(tmp_path):
    write_class_folders(tmp_path / "data", {"cat": 2, "dog": 2}, size=(32, 32))
    return [
        "--model",
        f"{write_tiny_model(tmp_path)}:tiny",
        "--weights",
        "random",
        "--class-names",
        "cat,dog",
    ]


def record_args(tmp_path, *extra):
    return ["record", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "store.h5"), "--workers", "0",
            "--no-progress", "--device", "cpu", *extra]  # fmt: skip


def test_wrong_class_exits_2_with_the_suggestion(tmp_path, tiny, capsys):
    assert main(record_args(tmp_path, *tiny, "--classes", "kat")) == 2
    err = capsys.readouterr().err
    assert "seviz record: error: unknown class 'kat'; did you mean 'cat' (0)?" in err
    assert not (tmp_path / "store.h5").exists()


def test_ambiguous_imagenet_class_exits_2_listing_candidates(tmp_path, capsys):
    write_class_folders(tmp_path / "data", {"goldfish": 1})
    argv = record_args(tmp_path, "--model", "efficientnet_b0", "--weights", "random", "--classes", "crane")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "class 'crane' is ambiguous" in err and "n02012849" in err and "n03126707" in err


def test_record_then_info_and_refusal_to_overwrite(tmp_path, tiny, capsys):
    assert main(record_args(tmp_path, *tiny, "--batch-size", "3")) == 0
    out = capsys.readouterr().out
    assert "blocks:   4" in out and "samples:  4" in out and "skipped:  0" in out
    assert main(["info", str(tmp_path / "store.h5")]) == 0
    out = capsys.readouterr().out
    assert "complete:  True" in out and "cat (2), dog (2)" in out and "SE_5_1 (32)" in out

    before = (tmp_path / "store.h5").read_bytes()
    assert main(record_args(tmp_path, *tiny)) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "store.h5").read_bytes() == before
    assert main(record_args(tmp_path, *tiny, "--overwrite", "--images-per-class", "1")) == 0
    assert "samples:  2" in capsys.readouterr().out


def test_info_on_a_file_that_is_not_a_store_exits_2(tmp_path, capsys):
    (tmp_path / "notes.h5").write_text("hello")
    assert main(["info", str(tmp_path / "notes.h5")]) == 2
    assert "is not a readable HDF5 file" in capsys.readouterr().err


def test_the_store_names_the_command_given_to_main(tmp_path, tiny):
    import shlex

    from seviz.store import open_store

    argv = record_args(tmp_path, *tiny, "--batch-size", "3")
    assert main(argv) == 0
    with open_store(tmp_path / "store.h5") as store:
        assert store.attrs["command"] == shlex.join(["seviz", *argv])


def test_a_fast_mode_over_its_bound_exits_2_but_a_bug_shows_its_traceback(
    tmp_path, tiny, capsys, monkeypatch
):
    import seviz.recording
    from seviz.recording.fast_modes import GateErrorTooLarge

    def over_bound(*_args, **_kwargs):
        raise GateErrorTooLarge("--precision bf16 changes gates by up to 0.05, above --max-gate-error 0.02")

    monkeypatch.setattr(seviz.recording, "record", over_bound)
    assert main(record_args(tmp_path, *tiny)) == 2
    assert "seviz record: error: --precision bf16 changes gates" in capsys.readouterr().err

    def bug(*_args, **_kwargs):
        raise RuntimeError("an internal invariant broke")

    monkeypatch.setattr(seviz.recording, "record", bug)
    with pytest.raises(RuntimeError, match="internal invariant"):
        main(record_args(tmp_path, *tiny))


def test_prune_with_an_empty_block_list_exits_2_naming_the_fix(tmp_path, capsys):
    out = tmp_path / "pruned.safetensors"
    argv = [
        "prune",
        "--model",
        "se_resnet50_cifar10",
        "--weights",
        "random",
        "--blocks",
        "",
        "--out",
        str(out),
    ]
    assert main(argv) == 2
    assert "no SE block chosen: pass patterns such as 'SE_5_*'" in capsys.readouterr().err
    assert not out.exists()
