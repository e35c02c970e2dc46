"""``seviz info``: summarise a store."""

from __future__ import annotations

import argparse

HELP = "summarise a store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store")


def run(args: argparse.Namespace) -> int:
    from seviz.store import open_store

    with open_store(args.store) as store:
        counts = store.class_counts()
        provenance = store.provenance
        print(f"store:     {store.path}")
        print(f"model:     {provenance.model} (weights {provenance.weights_source})")
        print(f"precision: {provenance.precision}")
        print(f"complete:  {store.complete}")
        print(f"samples:   {len(store)}; skipped files: {len(store.skipped)}")
        print(
            "classes:   "
            + ", ".join(f"{name} ({counts.get(name, 0)})" for name in store.recorded_class_names)
        )
        print("blocks:    " + ", ".join(f"{b.name} ({b.channels})" for b in store.blocks.values()))
    return 0
