"""The app's server process: Streamlit's command line, with the app's modules imported first.

``seviz app`` runs ``python -m seviz.app.serve run seviz/app/main.py ...``
(see :func:`seviz.app.launcher.app_command`). Streamlit executes the app's
script anew for every page and control change, but the modules it imports
(pandas, h5py, numpy, the statistics and pruning code, the pages) are imported
only once per process. Importing them here, before the server starts
listening, moves that second or so from the first page a user opens to the
server's start-up, which ``seviz app`` waits for anyway. The statistics of the
stores named on the command line are read (or, when not saved beside them yet,
computed and saved) one after another in a background thread started here: the
server listens at once, and the first page that draws them waits only for what
is left of that work while the browser is still loading Streamlit.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import threading
from collections.abc import Sequence

log = logging.getLogger(__name__)

# The app's script (it imports every page, and through them pandas, h5py, the statistics and
# pruning code), what Streamlit imports lazily to send tables and charts and to check the page's
# emoji icon (0.15 s), and pandas' Styler (the formatted tables of the Pruning page: 0.26 s,
# with its templates).
PRELOADED = (
    "seviz.app.main",
    "pyarrow",
    "streamlit.elements.arrow",
    "streamlit.elements.vega_charts",
    "streamlit.emojis",
    "pandas.io.formats.style",
)


def preload() -> None:
    """Import :data:`PRELOADED` (a module that is missing here is left to fail where it is used).

    Then map every imported module to its file, as :func:`inspect.getmodule` does once per
    module: Streamlit's first element of the first page calls :func:`inspect.stack` (its
    check for a REPL), which otherwise does this there (0.3 s on a 2-core machine).
    """
    for name in PRELOADED:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    inspect.stack()


def warm(app_argv: Sequence[str]) -> threading.Thread | None:
    """Start reading or computing the statistics of the stores named in the app's arguments (after ``--``).

    One background thread (returned, already started; None when no store is named)
    warms the stores one after another, in the order named
    (:func:`seviz.app.views._data.warm`): the server listens at once, and the first
    page waits only for what is left of that work. A store that cannot be read is
    left to the app, which shows the error on its page.
    """
    from seviz.app.launcher import parse_app_arguments
    from seviz.errors import SevizError

    try:
        stores = parse_app_arguments(app_argv).stores
    except SevizError:
        return None
    if not stores:
        return None
    thread = threading.Thread(target=_warm_each, args=(list(stores),), name="seviz-statistics", daemon=True)
    thread.start()
    return thread


def _warm_each(stores: Sequence[str | os.PathLike]) -> None:
    from seviz.app.views import _data

    for path in stores:
        try:
            _data.warm(path)
        except Exception as error:  # noqa: BLE001 - the page reports it properly; the server must go on
            log.debug("not warmed: %s (%s)", path, error)


def main(argv: list[str] | None = None) -> int:
    """Run Streamlit's command line (``argv``: its arguments, e.g. ``["run", script, ...]``)."""
    preload()
    from streamlit.web import cli

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        warm(argv[argv.index("--") + 1 :])
    sys.argv = ["streamlit", *argv]
    try:
        cli.main(prog_name="streamlit")
    except SystemExit as stop:
        return int(stop.code or 0) if not isinstance(stop.code, str) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
