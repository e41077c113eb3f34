"""`prm import --from label-studio EXPORT.json IN OUT`: people's answers back into the traces.

Reads the reviewers' answers from a Label Studio JSON export of tasks written by
`prm export --to label-studio`, and adds each answered step's label to the step's
`reviews` (label_source "human", the reviewer, the time, the comment), leaving the
automatic label, verdicts and rollouts as they were. One review per reviewer per step:
importing a newer export replaces a reviewer's earlier answer, the same export twice
changes nothing. Cancelled (skipped) annotations are ignored.

    prm import --from label-studio project-1-at-2024-05-01.json labels_checked.jsonl reviewed.jsonl
"""

from __future__ import annotations

import argparse
from collections import Counter

from prm import formats
from prm.errors import RecordError
from prm.formats import label_studio
from prm.io import check_output, refuse_output_over_inputs, write_traces

TOOLS = ("label-studio",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="tool", choices=TOOLS, required=True, help="the review tool")
    parser.add_argument("export", metavar="EXPORT.json", help="the tool's JSON export of the reviewed tasks")
    parser.add_argument("input", metavar="IN", help="the traces that were exported for review")
    parser.add_argument("out", metavar="OUT", help="where to write the traces with the reviews (.jsonl, .parquet or a folder)")
    parser.add_argument("--format", choices=list(formats.FORMATS), help="layout of IN (default: told from the fields)")


def run(args: argparse.Namespace) -> int:
    check_output(args.out)  # before any work: a folder of the user's is never replaced
    refuse_output_over_inputs(args.out, [args.export, args.input])
    traces = formats.read(args.input, args.format)
    try:
        reviews = label_studio.reviews_from_export(label_studio.read_export(args.export))
    except RecordError as err:
        raise err.located(path=args.export) from None
    changed = label_studio.apply_reviews(traces, reviews, source=args.export)
    write_traces(args.out, traces)
    labels = Counter({1: "good", 0: "bad", None: "unsure"}[r.hard_label] for *_, r in reviews)
    reviewers = {r.reviewer for *_, r in reviews}
    print(f"read {len(reviews)} step review(s) by {len(reviewers)} reviewer(s) "
          f"({', '.join(f'{n} {w}' for w, n in labels.most_common()) or 'none'}); "
          f"{changed} added or updated; wrote {len(traces)} trace(s) to {args.out}")
    return 0
