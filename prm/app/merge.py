"""`prm merge OUT SHARD... --input IN`: join the outputs of a sharded annotation run
(see `annotate.merge` for what is checked)."""

from __future__ import annotations

import argparse
import sys

from annotate.merge import MergeError, merge
from annotate.runner import input_formats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUT", help="merged traces (.jsonl, .parquet, or a folder)")
    parser.add_argument("shards", metavar="SHARD", nargs="+", help="the shard outputs of `prm annotate --shard`")
    parser.add_argument("--input", required=True, metavar="IN", help="the input the shards were annotated from")
    parser.add_argument("--format", choices=input_formats(), default="auto",
                        help="input layout (default: told from the fields)")
    parser.add_argument("--limit", type=int, default=None, help="the --limit the shards were run with")


def run(args: argparse.Namespace) -> int:
    from prm.io import check_output, refuse_output_over_inputs

    check_output(args.output)  # before any work: a folder of the user's is never replaced
    refuse_output_over_inputs(args.output, [*args.shards, args.input])
    try:
        print(merge(args.output, args.shards, args.input, args.format, args.limit))
    except MergeError as err:
        print(f"prm merge: error: {err}", file=sys.stderr)
        return 1
    return 0
