"""``seviz prune``: remove or fold SE branches and save the edited model."""

from __future__ import annotations

import argparse

from seviz.cli._common import add_model_arguments, data_config_from_args, load_model_from_args, model_file

HELP = "remove or fold SE branches and save the edited model"

FLAGS = {"out_path": "--out"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, store_default=True)
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--recommendation", help="rec.json from `seviz recommend` (identity removed, constant folded)"
    )
    chosen.add_argument(
        "--blocks", help="comma-separated block globs to remove, e.g. 'SE_5_*' (the paper's stage 5)"
    )
    parser.add_argument("--out", required=True, help="pruned model to write (.safetensors)")
    parser.add_argument(
        "--store",
        default=None,
        help="a store: find the SE blocks with the input size it was recorded with (the flags below override it)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run(args: argparse.Namespace) -> int:
    from seviz._files import check_output
    from seviz.models.preprocessing import describe_preprocessing
    from seviz.pruning import prune_blocks, prune_from_recommendation, recorded_preprocessing

    inputs = [args.weights, args.recommendation, args.store, model_file(args.model)]
    # Before the work: never over the base weights or the rec.json, nor over a file without --overwrite.
    check_output(args.out, inputs=inputs, overwrite=args.overwrite, param="out_path", what="pruned model")
    # A store's preprocessing (--store, or the one the recommendation was made from) unless told otherwise.
    request = data_config_from_args(args, recorded_preprocessing(args.store, args.recommendation))
    loaded = load_model_from_args(args, data_config=request)
    if args.recommendation:
        pruned = prune_from_recommendation(loaded, args.recommendation, inplace=True)
    else:
        pruned = prune_blocks(loaded, args.blocks, inplace=True)
    path = pruned.save(args.out, overwrite=args.overwrite, inputs=inputs)
    for edit in pruned.edits:
        where = f" (folded into {edit.folded_into})" if edit.folded_into else ""
        print(f"{edit.name}: {edit.action} -> {edit.replacement}{where}")
    print(f"removed {pruned.params_removed:,} parameters; wrote {path}")
    print(f"preprocessing: {describe_preprocessing(loaded.data_config, loaded.preprocessing_source)}")
    print(f"load it with: --model {args.model} --weights {path}")
    return 0
