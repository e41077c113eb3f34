"""`prm export --to label-studio IN OUT.json`: traces out for people to review.

Writes the tasks (OUT.json, Label Studio's import format, pre-annotated with the automatic
labels as `predictions`) and the labelling interface that goes with them
(OUT.label_config.xml). In Label Studio: create a project, paste the config under
Settings > Labeling Interface, import OUT.json; reviewers then confirm or correct each
step, and `prm import --from label-studio` reads their answers back.

    prm export --to label-studio labels_checked.jsonl review/tasks.json               # disputed steps
    prm export --to label-studio labels_checked.jsonl review/traces.json --unit trace  # whole traces
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prm import formats
from prm.formats import label_studio
from prm.io import atomic_write, refuse_output_over_inputs

TOOLS = ("label-studio",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", dest="tool", choices=TOOLS, required=True, help="the review tool")
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


def config_path(out: Path) -> Path:
    return out.with_name(out.stem + ".label_config.xml")


def run(args: argparse.Namespace) -> int:
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
