"""Tests for scripts/zoo_coverage.py: the sweep behind the README's "Supported SE gates" table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "zoo_coverage.py"


@pytest.fixture(scope="module")
def coverage():
    spec = importlib.util.spec_from_file_location("zoo_coverage", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_families_group_sizes_and_numbers_and_probe_the_smallest(coverage):
    assert coverage.family_key("ecaresnet26t") == coverage.family_key("ecaresnet50t") == "ecaresnet#t"
    assert coverage.family_key("resnest50d") != coverage.family_key("resnest50d_1s4x24d")
    assert coverage.family_key("convnext_atto") == coverage.family_key("convnext_base") == "convnext_*"
    names = ["convnext_base", "convnext_atto", "convnext_tiny"]
    assert sorted(names, key=coverage.size_rank)[0] == "convnext_atto"
    assert sorted(["resnet101", "resnet18", "resnet50"], key=coverage.size_rank)[0] == "resnet18"


def test_a_small_sweep_writes_the_table_into_the_readme(coverage, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{coverage.README_START}\nOLD-TABLE\n{coverage.README_END}\n\n## After\n")
    argv = ["--no-torchvision", "--filter", "ecaresnet26t", "skresnet18", "resnet18", "--readme", str(readme)]
    assert coverage.main([*argv, "--json", str(tmp_path / "sweep.json")]) == 0
    text = readme.read_text()
    assert "OLD-TABLE" not in text and text.endswith(f"{coverage.README_END}\n\n## After\n")
    assert "**1 families have SE-style gates; seviz discovers them in 1** (1 every gate" in text
    assert "| `timm.EcaModule` | 1 | `ecaresnet26t` |" in text
    row = next(line for line in text.splitlines() if line.startswith("| `timm.SelectiveKernel`"))
    assert "softmax across 2 branches" in row and "`skresnet18`" in row
    assert "1 families are refused" in text and "1 have neither" in text
    assert "recording with random weights was checked in 1 of the 1 families with gates (0 failed" in text
    # Re-rendered from its JSON, the same table.
    again = tmp_path / "again.md"
    assert coverage.main(["--from-json", str(tmp_path / "sweep.json"), "--out", str(again)]) == 0
    body = text.split(coverage.README_START + "\n")[1].split(coverage.README_END)[0]
    assert again.read_text().split("Sweep:")[1].split("\n", 1)[1] == body.split("Sweep:")[1].split("\n", 1)[1]
