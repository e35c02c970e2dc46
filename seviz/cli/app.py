"""``seviz app``: open stores in the Streamlit app."""

from __future__ import annotations

import argparse

HELP = "explore stores in the Streamlit app"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stores", nargs="*", help="stores to open (default: browse --root)")
    parser.add_argument("--root", default=".", help="folder the app may browse (default: current folder)")
    parser.add_argument("--port", type=int, default=8501)


def run(args: argparse.Namespace) -> int:
    from seviz.app import launch_app

    return launch_app(list(args.stores), root=args.root, port=args.port)
