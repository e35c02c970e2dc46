"""No command writes over one of its own inputs, and an output that exists needs ``--overwrite``.

Each refused command must exit 2 with a message naming the flag, before doing
any work, and leave every file byte for byte as it was (checked by sha256).
"""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import pytest
from _images import write_class_folders
from _planted import write_planted_store

from seviz.cli import main


@pytest.fixture(autouse=True)
def _keep_sigterm():
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store, its statistics, a recommendation, figures, images, a weights file, an earlier demo."""
    root = tmp_path_factory.mktemp("world")
    write_planted_store(root / "S.h5", n=80)
    assert main(["analyze", str(root / "S.h5"), "--json", str(root / "stats.json")]) == 0
    assert main(["recommend", str(root / "S.h5"), "--out", str(root / "rec.json")]) == 0
    assert main(["plot", str(root / "S.h5"), "--out", str(root / "figures"), "--formats", "png", "--classes",
                 "pug"]) == 0  # fmt: skip
    write_class_folders(root / "data", {"cat": 2, "dog": 2}, size=(32, 32))
    (root / "w.safetensors").write_bytes(b"not really weights")
    (root / "demo").mkdir()
    (root / "demo" / "stats.json").write_text("{}\n")
    return root


def refusals(r: Path) -> list[tuple[list[str], str]]:
    s, model = str(r / "S.h5"), ["--model", "se_resnet50_cifar10", "--weights", str(r / "w.safetensors")]
    evaluate = ["evaluate", *model, "--data", str(r / "data"), "--blocks", "SE_5_*"]
    record = ["record", "--model", "se_resnet50_cifar10", "--weights", "random", "--data", str(r / "data"),
              "--device", "cpu", "--no-progress"]  # fmt: skip
    return [
        (["analyze", s, "--json", s], f"--json {s!r} is one of this command's inputs"),
        (["analyze", s, "--json", s, "--overwrite"], "is one of this command's inputs"),
        (["analyze", s, "--json", str(r / "stats.json")], "already exists; pass --overwrite to replace it"),
        (["recommend", s, "--out", s, "--overwrite"], f"--out {s!r} is one of this command's inputs"),
        (["recommend", s, "--out", str(r / "r.md")], "would hold both the JSON and the Markdown"),
        (["recommend", s, "--out", str(r / "rec.json")], "already exists; pass --overwrite"),
        (["recommend", s, "--out", str(r / "S.json"), "--overwrite"], None),  # S.md beside it is fine
        (["plot", s, "--out", str(r / "figures"), "--formats", "png", "--classes", "pug"], "already exists"),
        (["plot", s, "--out", s, "--overwrite"], "is a file, not a folder"),
        (["prune", *model, "--blocks", "SE_5_*", "--out", str(r / "w.safetensors"), "--overwrite"],
         "--out '" + str(r / "w.safetensors") + "' is one of this command's inputs"),
        (["prune", *model, "--blocks", "SE_5_*", "--out", str(r / "rec.json")], "already exists; pass --overwrite"),
        ([*evaluate, "--json", str(r / "stats.json")], "already exists; pass --overwrite"),
        ([*evaluate, "--json", str(r / "w.safetensors"), "--overwrite"], "is one of this command's inputs"),
        ([*evaluate, "--json", str(r / "data" / "e.json")], "--json '" + str(r / "data" / "e.json") + "' is inside"),
        (["demo", "--out", str(r / "demo")], "already exists; pass --overwrite"),
        (["demo", "--out", str(r / "data"), "--data", str(r / "data"), "--overwrite"], "is inside the input folder"),
        ([*record, "--out", str(r / "data" / "cat" / "img_000.jpg"), "--overwrite"], "--out '"),
        ([*record, "--out", str(r / "data" / "s.h5")], "is inside the input folder"),
        ([*record, "--out", s, "--overwrite", "--batch-size", "0"],
         "--batch-size must be a whole number of 1 or more, got 0"),
        ([*record, "--out", s, "--overwrite", "--classes", ","], "--classes ',' names no class"),
        ([*record, "--out", s, "--overwrite", "--resume"], "--overwrite (record again) and --resume"),
        ([*record, "--out", s], "already exists; pass --overwrite to replace it or --resume to finish it"),
    ]  # fmt: skip


def test_every_refused_output_leaves_every_file_as_it_was(world, capsys):
    for argv, message in refusals(world):
        before = _tree(world)
        code = main(argv)
        err = capsys.readouterr().err
        if message is None:
            assert code == 0, (argv, err)
            continue
        assert code == 2, (argv, err)
        assert message in err, (argv, err)
        assert "Traceback" not in err and "`" not in err, (argv, err)  # flags, not parameter names
        assert _tree(world) == before, argv


def test_an_output_is_replaced_with_overwrite(world, capsys):
    stats = world / "stats.json"
    assert (
        main(["analyze", str(world / "S.h5"), "--json", str(stats), "--overwrite", "--blocks", "SE_5_2"]) == 0
    )
    assert list(json.loads(stats.read_text())["blocks"]) == ["SE_5_2"]
    assert f"wrote {stats}" in capsys.readouterr().out
    assert not [p for p in world.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_library_messages_name_parameters_and_the_cli_names_flags():
    from seviz.cli._common import as_flags

    flags = {
        "batch_size": "--batch-size",
        "overwrite": "--overwrite",
        "images_per_class": "--images-per-class",
    }
    message = "`batch_size` must be 1 or more; pass `overwrite=True` or `images_per_class=5`, not `other`"
    assert as_flags(message, flags) == (
        "--batch-size must be 1 or more; pass --overwrite or --images-per-class 5, not `other`"
    )
