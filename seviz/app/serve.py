"""The app's server process: Streamlit's command line, with the app's modules imported first.

``seviz app`` runs ``python -m seviz.app.serve run seviz/app/main.py ...``
(see :func:`seviz.app.launcher.app_command`). Streamlit executes the app's
script anew for every page and control change, but the modules it imports
(pandas, h5py, numpy, the statistics and pruning code, the pages) are imported
only once per process. Importing them here, before the server starts
listening, moves that second or so from the first page a user opens to the
server's start-up, which ``seviz app`` waits for anyway.
"""

from __future__ import annotations

import importlib
import sys

# What the pages import, and what Streamlit imports lazily to send tables and charts.
PRELOADED = (
    "pandas",
    "pyarrow",
    "h5py",
    "seviz.analysis",
    "seviz.pruning",
    "seviz.store",
    "seviz.app.main",
    "streamlit.elements.arrow",
    "streamlit.elements.vega_charts",
)


def preload() -> None:
    """Import :data:`PRELOADED` (a module that is missing here is left to fail where it is used)."""
    for name in PRELOADED:
        try:
            importlib.import_module(name)
        except ImportError:
            continue


def main(argv: list[str] | None = None) -> int:
    """Run Streamlit's command line (``argv``: its arguments, e.g. ``["run", script, ...]``)."""
    preload()
    from streamlit.web import cli

    if argv is not None:
        sys.argv = ["streamlit", *argv]
    else:
        sys.argv = ["streamlit", *sys.argv[1:]]
    try:
        cli.main(prog_name="streamlit")
    except SystemExit as stop:
        return int(stop.code or 0) if not isinstance(stop.code, str) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
