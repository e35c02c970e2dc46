"""``seviz blocks``: list the SE blocks seviz finds in a model, with their kind."""

from __future__ import annotations

import argparse

from seviz.cli._common import add_model_arguments, load_model_from_args

HELP = "list the SE blocks seviz finds in a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, weights_default="random")


def run(args: argparse.Namespace) -> int:
    from seviz.se import discover_se_gates, format_gate_table

    loaded = load_model_from_args(args)
    gates = discover_se_gates(loaded.model, tuple(loaded.data_config["input_size"]))
    print(format_gate_table(gates))
    return 0
