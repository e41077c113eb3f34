"""`prm convert IN OUT`: records from one format to another.

    prm convert ../shared/data/gsm8k/test.jsonl gsm8k.jsonl            # GSM8K -> native
    prm convert labeled.jsonl trl-train --to trl --soft                # native -> TRL datasets folder
    prm convert ../shared/data/prmbench-train prmbench.parquet         # all 8 files -> Parquet

--from is guessed from the input's fields when not given; --to defaults to native. OUT's
extension picks the container: .jsonl, .json (one array), .parquet, or any other path a
`datasets` folder. Nothing is dropped silently: --skip-invalid reports every skipped input
record with its reason, and targets that cannot hold a trace (an unknown label in TRL or
Math-Shepherd, say) report what they cut or dropped.
"""

from __future__ import annotations

import argparse
import sys

from prm import formats
from prm.formats.base import UNKNOWN_POLICIES, WriteReport
from prm.io import ReadReport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(formats.FORMATS)
    parser.add_argument("input", metavar="IN", help="input file, or folder of files / datasets folder")
    parser.add_argument("output", metavar="OUT",
                        help="output: .jsonl, .json, .parquet, or a datasets folder (other paths)")
    parser.add_argument("--from", dest="source", metavar="FORMAT", choices=list(formats.FORMATS),
                        help=f"input format (guessed from its fields if not given): {names}")
    parser.add_argument("--to", dest="target", metavar="FORMAT", default="native",
                        choices=list(formats.FORMATS), help="output format (default: native)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip records that cannot be read, and report how many and why")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="keep records whose id was already read (default: an error naming the line)")
    parser.add_argument("--limit", type=int, metavar="N", help="convert only the first N traces")
    parser.add_argument("--soft", action="store_true",
                        help="trl: write soft labels as floats instead of hard labels as booleans")
    parser.add_argument("--unknown", choices=UNKNOWN_POLICIES,
                        help="trl/math-shepherd: cut a trace before its first unlabeled step "
                             "(cut, default) or drop it (drop)")
    parser.add_argument("--neutral", choices=("positive", "negative", "unknown"),
                        help="prm800k: hard label of a neutral (0) rating (default: positive)")
    parser.add_argument("--include-original", action="store_true",
                        help="prmbench: also read each record's original (correct) solution")
    parser.add_argument("--out-of-range", choices=("ignore", "error"),
                        help="prmbench: error step numbers past the last step are ignored "
                             "(default, as PRMBench's evaluator) or an error")


READ_OPTIONS = {"neutral": "neutral", "include_original": "include_original",
                "out_of_range": "out_of_range"}
WRITE_OPTIONS = {"soft": "soft", "unknown": "unknown"}


def run(args: argparse.Namespace) -> int:
    from prm.io import check_output, refuse_output_over_inputs

    check_output(args.output)  # a folder of the user's is never replaced
    refuse_output_over_inputs(args.output, [args.input])
    source = args.source or formats.guess_format(args.input)
    read_options = _given(args, READ_OPTIONS)
    write_options = _given(args, WRITE_OPTIONS)
    read_report, write_report = ReadReport(), WriteReport()
    traces = formats.read(args.input, source, skip_invalid=args.skip_invalid, report=read_report,
                          limit=args.limit, keep_duplicates=args.keep_duplicates, **read_options)
    if not traces:
        print(f"prm convert: no records read from {args.input}", file=sys.stderr)
        if read_report.skipped:
            print(read_report.summary(), file=sys.stderr)
        return 1
    formats.write(args.output, traces, args.target, report=write_report, **write_options)
    print(f"{args.input} ({source}) -> {args.output} ({args.target}): "
          f"read {len(traces)} trace(s), {write_report.summary()}")
    for line in write_report.details():
        print(f"  {line}", file=sys.stderr)
    if read_report.skipped:
        print(f"skipped {len(read_report.skipped)} invalid input record(s):", file=sys.stderr)
        for err in read_report.skipped[:20]:
            print(f"  {err}", file=sys.stderr)
        if len(read_report.skipped) > 20:
            print(f"  ... and {len(read_report.skipped) - 20} more", file=sys.stderr)
    return 0


def _given(args: argparse.Namespace, names: dict[str, str]) -> dict:
    """The format options the user actually set (so unset ones never reach a format)."""
    given = {}
    for attribute, option in names.items():
        value = getattr(args, attribute)
        if value not in (None, False):
            given[option] = value
    return given
