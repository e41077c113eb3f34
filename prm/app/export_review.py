"""`prm export --to label-studio IN OUT.json`: traces out for people to review;
`prm export --to step-dpo|trl-dpo IN OUT`: step-level preference pairs for a policy.

Writes the tasks (OUT.json, Label Studio's import format, pre-annotated with the automatic
labels as `predictions`) and the labelling interface that goes with them
(OUT.label_config.xml). In Label Studio: create a project, paste the config under
Settings > Labeling Interface, import OUT.json; reviewers then confirm or correct each
step, and `prm import --from label-studio` reads their answers back.

    prm export --to label-studio labels_checked.jsonl review/tasks.json               # disputed steps
    prm export --to label-studio labels_checked.jsonl review/traces.json --unit trace  # whole traces

Preference pairs come from Monte Carlo labels with their rollout texts kept (`prm annotate
--keep-texts`): the same prefix, a continuation that reached the answer against one that did not
(or, with --pairs-from first-error, the trace from its first wrong step against the prefix's
continuations that reached the answer). OUT is `.jsonl`, `.json`, `.parquet` or a `datasets`
folder; `prm.formats.preference` says how pairs are made.

    prm export --to step-dpo labelled.jsonl step_dpo.jsonl --pairs-per-prefix 2 --min-margin 0.5
    prm export --to trl-dpo labelled.jsonl dpo_data      # a datasets folder for trl.DPOTrainer
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prm import formats
from prm.app.arguments import non_negative_float, positive_int
from prm.formats import label_studio, preference
from prm.formats.base import WriteReport, write_rows
from prm.io import atomic_write, check_output, refuse_output_over_inputs

TOOLS = ("label-studio", *preference.PREFERENCE_FORMATS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", dest="tool", choices=TOOLS, required=True,
                        help="the review tool (label-studio), or step-level preference pairs: step-dpo (Step-DPO's "
                             "fields) or trl-dpo (prompt/chosen/rejected for trl.DPOTrainer)")
    parser.add_argument("input", metavar="IN", help="traces to review (any format `prm convert` reads)")
    parser.add_argument("out", metavar="OUT.json",
                        help="the tasks file to import into the tool; its labelling config is written beside it "
                             "as OUT.label_config.xml")
    parser.add_argument("--unit", choices=label_studio.UNITS, default="step",
                        help="one task per disputed step (its Monte Carlo, checker, PRM, gold or reviewer labels "
                             "disagree, or a checker refuted a step not labelled bad), or one task per trace with "
                             "every step (default: step)")
    parser.add_argument("--format", choices=list(formats.FORMATS), help="input layout (default: told from the fields)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N traces")
    pairs = parser.add_argument_group("preference pairs (--to step-dpo, trl-dpo)")
    pairs.add_argument("--pairs-from", choices=preference.PAIRINGS, default="rollouts",
                       help="rollouts: at each prefix, a continuation that reached the answer against one that did "
                            "not; first-error: the trace from its first wrong step against the continuations of the "
                            "prefix before it that reached the answer (default: rollouts)")
    pairs.add_argument("--pairs-per-prefix", type=positive_int, default=1, metavar="N",
                       help="at most N pairs from one prefix (default: 1)")
    pairs.add_argument("--min-margin", type=non_negative_float, default=0.0, metavar="M",
                       help="keep pairs whose chosen step's Monte Carlo value exceeds the rejected one's by at least "
                            "M (default: 0, any margin above 0)")


def config_path(out: Path) -> Path:
    return out.with_name(out.stem + ".label_config.xml")


def run(args: argparse.Namespace) -> int:
    if args.tool in preference.PREFERENCE_FORMATS:
        return export_pairs(args)
    out = Path(args.out)
    refuse_output_over_inputs(out, [args.input])
    refuse_output_over_inputs(config_path(out), [args.input, out])
    traces = formats.read(args.input, args.format, limit=args.limit)
    tasks, config = label_studio.export_files(traces, args.unit)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as handle:
        handle.write(label_studio.dumps_tasks(tasks))
    with atomic_write(config_path(out)) as handle:
        handle.write(config)
    what = "disputed step(s)" if args.unit == "step" else "trace(s)"
    print(f"wrote {len(tasks)} task(s), one per {what.rstrip('(s)')}, to {out} "
          f"({sum('predictions' in t for t in tasks)} pre-annotated) and the labelling config to {config_path(out)}")
    if not tasks:
        print("no step is disputed (no two signals disagree, no unlabelled step refuted); "
              "--unit trace exports every trace")
    return 0


def export_pairs(args: argparse.Namespace) -> int:
    """Write the preference pairs of IN to OUT as `args.tool` rows."""
    from annotate.grading import Grader

    refuse_output_over_inputs(args.out, [args.input])
    check_output(args.out)
    traces = formats.read(args.input, args.format, limit=args.limit)
    report = WriteReport()
    grader = Grader()
    try:
        pairs = preference.preference_pairs(traces, grader.is_equivalent, pairing=args.pairs_from,
                                            pairs_per_prefix=args.pairs_per_prefix, min_margin=args.min_margin,
                                            report=report)
    finally:
        grader.close()
    written = write_rows(args.out, preference.preference_rows(pairs, args.tool))
    print(f"wrote {written} {args.tool} pair(s) from {len(traces) - len(report.dropped)} of {len(traces)} "
          f"trace(s) to {args.out}")
    for line in report.details():
        print(f"  {line}")
    return 0
