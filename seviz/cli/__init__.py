"""The ``seviz`` command line: one module per subcommand, each with ``add_arguments`` and ``run``.

Each ``run`` parses nothing itself and calls one library function. Nothing heavy
is imported at module level, so ``seviz --help`` is fast. Errors: a
:class:`~seviz.errors.SevizError` (or a file error, or running out of GPU
memory) is printed as a message with exit 2; anything else is a bug and shows
its traceback. Library messages name parameters in backticks (```batch_size```);
the message printed names the command's flag instead (``--batch-size``): each
option's ``dest``, or the module's ``FLAGS`` table where they differ
(:func:`~seviz.cli._common.as_flags`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from seviz.cli import (
    analyze,
    app,
    attribute,
    blocks,
    demo,
    evaluate,
    info,
    plot,
    prune,
    recommend,
    record,
)
from seviz.cli._common import as_flags, flag_table

log = logging.getLogger("seviz")

# In the order ``seviz --help`` lists them.
COMMANDS = {
    "record": record,
    "blocks": blocks,
    "info": info,
    "analyze": analyze,
    "recommend": recommend,
    "plot": plot,
    "app": app,
    "demo": demo,
    "prune": prune,
    "evaluate": evaluate,
    "attribute": attribute,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``seviz`` argument parser, one sub-parser per command module."""
    from seviz import __version__

    parser = argparse.ArgumentParser(
        prog="seviz",
        description="See what the Squeeze-and-Excitation gates of a network do, and which can go.",
    )
    parser.add_argument("--version", action="version", version=f"seviz {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        sub = commands.add_parser(name, help=module.HELP)
        module.add_arguments(sub)
        # Library errors name parameters; shown to a user, they name this command's flags.
        sub.set_defaults(flags=flag_table(sub, getattr(module, "FLAGS", None)))
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that carry a message for the user: printed without a traceback.

    seviz's own errors (:class:`~seviz.errors.SevizError`); ``OSError`` for files
    (missing, existing, unreadable, disk full); running out of accelerator memory.
    Any other exception is a bug and shows its traceback.
    """
    import torch

    from seviz.errors import SevizError

    return (SevizError, OSError, torch.OutOfMemoryError)


def _raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seviz`` command."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command as typed, stored in what it writes
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(levelname)s: %(message)s",
    )
    # SIGTERM stops a run like Ctrl-C does: the store is closed with every committed sample.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print("seviz: interrupted", file=sys.stderr)
        return 130
    except _user_error_types() as error:
        if args.verbose:
            raise
        print(f"seviz {args.command}: error: {as_flags(str(error), args.flags)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
