"""Start the seviz Streamlit app (``seviz/app/main.py``) on this machine's loopback interface.

The app draws what :mod:`seviz.analysis.compute`, :mod:`seviz.pruning.recommendation` and the store
compute; this module only finds its script, checks which stores it may open
and runs Streamlit (``python -m seviz.app.serve run``) with them. Stores are either named on the
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
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seviz.analysis.cache import CACHE_SUFFIX
from seviz.errors import AppPathError, UsageError

log = logging.getLogger(__name__)

APP_SCRIPT = "main.py"
STORE_SUFFIXES = (".h5", ".hdf5")
_MAX_BROWSED = 500  # stores listed from the root; a root such as $HOME must not hang the page
_MAX_DEPTH = 6  # folders below the root that are searched for stores
_MAX_FOLDERS = 20_000  # folders looked into at most, whatever their depth
# The app asks for the list on every interaction; it is walked again only this often (or when
# the root folder itself changes), so a large root costs one walk, not one per click.
_INDEX_SECONDS = 30.0
_index: dict[tuple[str, int, int, int], tuple[float, list[Path]]] = {}
_index_lock = threading.Lock()


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


def find_stores(
    root: str | os.PathLike, limit: int = _MAX_BROWSED, max_depth: int = _MAX_DEPTH
) -> list[Path]:
    """Files under ``root`` that look like stores (``.h5``/``.hdf5``), sorted, at most ``limit``.

    Hidden folders, virtual environments and seviz's statistics caches
    (``STORE.seviz-cache``) are skipped, and so are links that
    lead out of the root; at most ``max_depth`` folders deep are searched (and
    at most 20,000 folders). Whether a file really is a seviz store is decided
    when it is opened. The list is indexed once and reused for 30 s (or until
    the root folder changes), minus files that have gone.

    Raises:
        AppPathError: ``root`` is a filesystem root (``/``).
    """
    root_path = _browsable_root(root)
    try:
        stamp = root_path.stat().st_mtime_ns
    except OSError:
        return []
    key = (str(root_path), int(limit), int(max_depth), stamp)
    now = time.monotonic()
    with _index_lock:
        cached = _index.get(key)
        if cached is not None and now - cached[0] < _INDEX_SECONDS:
            return [p for p in cached[1] if p.is_file()]
    found = _walk_for_stores(root_path, limit, max_depth)
    with _index_lock:
        _index.clear()  # one root per app
        _index[key] = (now, found)
    return list(found)


def _walk_for_stores(root_path: Path, limit: int, max_depth: int) -> list[Path]:
    found: list[Path] = []
    folders = 0
    for folder, subfolders, files in os.walk(root_path):
        folders += 1
        depth = len(Path(folder).relative_to(root_path).parts)
        subfolders[:] = (
            []
            if depth >= max_depth
            else sorted(
                d
                for d in subfolders
                if not d.startswith(".")
                and d not in ("venv", "node_modules", "__pycache__")
                and not d.endswith(CACHE_SUFFIX)
            )
        )
        for name in sorted(files):
            path = Path(folder) / name
            if name.endswith(STORE_SUFFIXES) and path.resolve().is_relative_to(root_path):
                found.append(path)
                if len(found) >= limit:
                    log.warning("more than %d stores under %s; listing the first %d", limit, root_path, limit)
                    return found
        if folders >= _MAX_FOLDERS:
            log.warning(
                "stopped looking for stores under %s after %d folders; start the app with a smaller --root",
                root_path,
                folders,
            )
            break
    return found


def _browsable_root(root: str | os.PathLike) -> Path:
    """The resolved root, refused when it is a whole filesystem (``/``, ``C:\\``)."""
    root_path = Path(root).expanduser().resolve()
    if root_path == Path(root_path.anchor):
        raise AppPathError(
            f"--root {str(root)!r} is the whole filesystem: the app would search every folder on it "
            "for stores; pass the folder that holds your stores (--root ~/runs)"
        )
    return root_path


def app_arguments(stores: Sequence[str | os.PathLike], root: str | os.PathLike) -> list[str]:
    """The arguments the app script receives after ``--`` (checked: stores under root)."""
    root_path = _browsable_root(root)
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
    root = _browsable_root(args.root)
    return AppConfig(root=root, stores=tuple(resolve_store(s, root) for s in args.stores))


def app_command(
    stores: Sequence[str | os.PathLike],
    root: str | os.PathLike = ".",
    port: int = 8501,
    headless: bool = True,
) -> list[str]:
    """The command line :func:`launch_app` runs: ``python -m seviz.app.serve run main.py ...``.

    :mod:`seviz.app.serve` is Streamlit's own command line with the app's modules
    imported, and the named stores opened, before the server starts, so the first
    page does not wait for them.

    Raises:
        AppPathError: A store is outside ``root`` or missing, or ``root`` is not a folder
            (or is a whole filesystem, ``/``).
        ValueError: ``port`` is not a TCP port.
    """
    if not 1 <= int(port) <= 65535:
        raise UsageError(f"--port {port} is not a TCP port; use a number from 1024 to 65535, e.g. 8501")
    return [
        sys.executable,
        "-m",
        "seviz.app.serve",
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
        AppPathError: A store is outside ``root`` or missing, or ``root`` is not a folder
            (or is a whole filesystem, ``/``).
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
