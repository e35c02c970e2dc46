"""Start the seviz Streamlit app (``seviz/app/main.py``) on this machine's loopback interface.

The app draws what :mod:`seviz.analysis.compute`, :mod:`seviz.pruning.recommendation` and the store
compute; this module only finds its script, checks which stores it may open
and runs ``python -m streamlit run`` with them. Stores are either named on the
command line or browsed under a root folder; a path outside the root is
refused, here and again inside the app (the app lists and opens only files
under the root it was given).

Streamlit is not imported here: ``seviz --help`` stays fast, and the app runs
in its own process.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seviz.analysis.cache import CACHE_SUFFIX
from seviz.errors import AppPathError, UsageError

log = logging.getLogger(__name__)

APP_SCRIPT = "main.py"
STORE_SUFFIXES = (".h5", ".hdf5")
_MAX_BROWSED = 500  # stores listed from the root; a root such as $HOME must not hang the page


@dataclass(frozen=True)
class AppConfig:
    """What the app was started with: the root it may browse and the stores named at launch."""

    root: Path
    stores: tuple[Path, ...]


def app_script() -> Path:
    """The app's entry script (``seviz/app/main.py``), which ``streamlit run`` executes.

    Raises:
        FileNotFoundError: It is missing (a broken installation).
    """
    script = Path(__file__).resolve().parent / APP_SCRIPT
    if not script.is_file():
        raise FileNotFoundError(
            f"the seviz app script {str(script)!r} is missing; reinstall seviz "
            "(`pip install --force-reinstall seviz`, or `pip install -e .` in a checkout)"
        )
    return script


def resolve_store(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """The absolute path of a store the app may open: an existing file under ``root``.

    Relative paths are taken relative to the current folder, as on a command line.

    Raises:
        AppPathError: The path is outside ``root`` (symbolic links are followed first)
            or is not an existing file.
    """
    root_path = Path(root).expanduser().resolve()
    store = Path(path).expanduser().resolve()
    if not store.is_relative_to(root_path):
        raise AppPathError(
            f"store {str(path)!r} is outside the app's root {str(root_path)!r}; "
            f"pass --root with a folder that contains it (e.g. --root {str(store.parent)!r})"
        )
    if not store.is_file():
        raise AppPathError(f"store {str(path)!r} does not exist (looked for {str(store)!r})")
    return store


def find_stores(root: str | os.PathLike, limit: int = _MAX_BROWSED) -> list[Path]:
    """Files under ``root`` that look like stores (``.h5``/``.hdf5``), sorted, at most ``limit``.

    Hidden folders, virtual environments and seviz's statistics caches
    (``STORE.seviz-cache``) are skipped, and so are links that lead out of the root. Whether a file really is a seviz store is decided when
    it is opened.
    """
    root_path = Path(root).expanduser().resolve()
    found: list[Path] = []
    for folder, subfolders, files in os.walk(root_path):
        subfolders[:] = sorted(
            d
            for d in subfolders
            if not d.startswith(".")
            and d not in ("venv", "node_modules", "__pycache__")
            and not d.endswith(CACHE_SUFFIX)
        )
        for name in sorted(files):
            path = Path(folder) / name
            if name.endswith(STORE_SUFFIXES) and path.resolve().is_relative_to(root_path):
                found.append(path)
                if len(found) >= limit:
                    log.warning("more than %d stores under %s; listing the first %d", limit, root_path, limit)
                    return found
    return found


def app_arguments(stores: Sequence[str | os.PathLike], root: str | os.PathLike) -> list[str]:
    """The arguments the app script receives after ``--`` (checked: stores under root)."""
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise AppPathError(f"--root {str(root)!r} is not a folder")
    checked = [str(resolve_store(s, root_path)) for s in stores]
    return ["--root", str(root_path), *checked]


def parse_app_arguments(argv: Sequence[str]) -> AppConfig:
    """Read the app script's arguments (what :func:`app_arguments` wrote), checking them again.

    The app may be started with ``streamlit run`` directly, so the root rule is
    enforced here too.
    """
    parser = argparse.ArgumentParser(prog="seviz app", add_help=False)
    parser.add_argument("--root", default=".")
    parser.add_argument("stores", nargs="*")
    args, _unknown = parser.parse_known_args(list(argv))
    root = Path(args.root).expanduser().resolve()
    return AppConfig(root=root, stores=tuple(resolve_store(s, root) for s in args.stores))


def app_command(
    stores: Sequence[str | os.PathLike],
    root: str | os.PathLike = ".",
    port: int = 8501,
    headless: bool = True,
) -> list[str]:
    """The ``python -m streamlit run`` command line :func:`launch_app` runs.

    Raises:
        AppPathError: A store is outside ``root`` or missing, or ``root`` is not a folder.
        ValueError: ``port`` is not a TCP port.
    """
    if not 1 <= int(port) <= 65535:
        raise UsageError(f"--port {port} is not a TCP port; use a number from 1024 to 65535, e.g. 8501")
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_script()),
        "--server.address=127.0.0.1",
        f"--server.port={int(port)}",
        f"--server.headless={'true' if headless else 'false'}",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        "--global.developmentMode=false",
        "--client.toolbarMode=viewer",
        "--",
        *app_arguments(stores, root),
    ]


def launch_app(stores: list[str], root: str = ".", port: int = 8501, headless: bool = True) -> int:
    """Run the seviz app on http://127.0.0.1:PORT until it is stopped (Ctrl-C).

    Args:
        stores: Stores to offer first; each must lie under ``root``. May be empty:
            the app then lists the stores it finds under ``root``.
        root: The folder the app may browse (default: the current folder).
        port: The loopback port to serve on.
        headless: Do not open a browser window.

    Returns:
        The exit status of the Streamlit process (0 after a clean stop).

    Raises:
        AppPathError: A store is outside ``root`` or missing, or ``root`` is not a folder.
        FileNotFoundError: The app script is not installed (see :func:`app_script`).
    """
    command = app_command(stores, root, port, headless)
    log.info("seviz app on http://127.0.0.1:%d (root %s); Ctrl-C stops it", int(port), Path(root).resolve())
    process = subprocess.Popen(command)
    try:
        return process.wait()
    finally:
        # On Ctrl-C (or SIGTERM, which the CLI turns into KeyboardInterrupt) the
        # server must not outlive the command.
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
