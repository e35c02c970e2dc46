"""``seviz recommend``: a verdict per SE block (identity, constant or keep) as rec.json and rec.md."""

from __future__ import annotations

import argparse

HELP = "verdicts per SE block: identity, constant or keep"

FLAGS = {"out_json": "--out"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store")
    parser.add_argument(
        "--out", default="rec.json", help="JSON to write; the Markdown table goes beside it (.md)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    parser.add_argument(
        "--identity-max-deviation", type=float, default=None, help="mean |1-s| at most (0.02)"
    )
    parser.add_argument(
        "--identity-min-near-one", type=float, default=None, help="share of gates near one (0.95)"
    )
    parser.add_argument(
        "--constant-max-dependence", type=float, default=None, help="input dependence at most (1e-3)"
    )
    parser.add_argument(
        "--near-one", type=float, default=None, help='a gate at or above this is "near one" (0.95)'
    )


def run(args: argparse.Namespace) -> int:
    from seviz.pruning import Recommendation, Thresholds, recommend

    # Before the work: never over the store, nor over files without --overwrite.
    Recommendation.output_paths(args.out, overwrite=args.overwrite, inputs=[args.store])
    overrides = {
        key: getattr(args, key)
        for key in ("identity_max_deviation", "identity_min_near_one", "constant_max_dependence", "near_one")
        if getattr(args, key) is not None
    }
    recommendation = recommend(args.store, Thresholds(**overrides))
    json_path, md_path = recommendation.write(args.out, overwrite=args.overwrite, inputs=[args.store])
    print(recommendation.summary())
    print(f"wrote {json_path} and {md_path}")
    return 0
