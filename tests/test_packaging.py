"""The wheel carries what an installed seviz needs at run time (the app, the demo model) and declares what it imports."""

from __future__ import annotations

import ast
import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("seviz", "app", "data"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.skip(
            f"cannot build a wheel here (pip needs setuptools from the package index): {result.stderr}"
        )
    (built,) = out.glob("seviz-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_ships_the_app_and_the_demo_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(REPO)) for p in (REPO / "seviz").rglob("*.py")}
    assert "seviz/app/main.py" in modules and "seviz/app/views/pruning.py" in modules
    assert modules <= names  # every subpackage ships
    assert {"seviz/_data/se_resnet50_cifar10.safetensors", "seviz/_data/se_resnet50_cifar10.json"} <= names
    assert not any(name.startswith(("tests/", "app/", "data/", "benchmarks/")) for name in names)


@pytest.mark.slow
def test_an_installed_wheel_finds_its_app_script(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = subprocess.run(
        [sys.executable, "-c", "from seviz.app.launcher import app_script; print(app_script())"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=120,
    ).stdout.strip()
    assert Path(script) == site / "seviz" / "app" / "main.py"
    # The installed script imports its views from the package.
    assert (Path(script).parent / "views" / "pruning.py").is_file()


def _imported_top_levels(folder: Path) -> set[str]:
    """Top-level modules that the code under ``folder`` imports (relative imports left out)."""
    names: set[str] = set()
    for source in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _declared_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(text).name) for text in project["dependencies"]}


def test_every_package_the_code_imports_is_declared():
    # A package imported only because another dependency brings it along (pandas and pyarrow
    # came with Streamlit) breaks when that dependency stops bringing it.
    third_party = _imported_top_levels(REPO / "seviz") | _imported_top_levels(REPO / "app")
    third_party -= set(sys.stdlib_module_names) | {"seviz", "__future__"}
    providers = importlib.metadata.packages_distributions()
    declared = _declared_distributions()
    missing = {
        module: providers.get(module)
        for module in sorted(third_party)
        if not any(canonicalize_name(d) in declared for d in providers.get(module, []))
    }
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"
    assert {"pandas", "pyarrow", "streamlit", "h5py"} <= third_party  # the walk sees the app and the store
