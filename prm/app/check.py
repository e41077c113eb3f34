"""`prm check IN OUT --checkers sympy,z3`: add checker verdicts to every step of a file.

Each step gets one verdict per checker (replacing an older verdict of the same checker).
Options combine the verdicts with the existing labels (see `annotate.checkers.combine`):
`--consensus-filter` keeps only traces whose labels and checkers agree on the first error,
`--override-refuted` labels refuted steps 0. Both print what they did as counts.

Interrupting (Ctrl-C) writes OUT with the verdicts found so far; running the same command
again reuses them (matched by trace id, step number and step text) and checks the rest.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from prm.errors import RecordError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="traces to check (JSONL, Parquet or a datasets folder)")
    parser.add_argument("output", help="where to write the traces with verdicts")
    parser.add_argument("--checkers", default="sympy,z3",
                        help="comma-separated checkers: sympy, z3, lean (default: sympy,z3)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip records that cannot be read (they are listed) instead of stopping")
    parser.add_argument("--override-refuted", action="store_true",
                        help="label every refuted step 0 (label_source checker:<name>)")
    parser.add_argument("--consensus-filter", action="store_true",
                        help="keep only traces whose labels and checkers agree on the first error")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds allowed per step and checker (default 5)")
    parser.add_argument("--z3-timeout-ms", type=int, default=1000,
                        help="timeout of each z3 solver call in milliseconds (default 1000)")
    parser.add_argument("--z3-refute", choices=("counterexample", "contradiction"),
                        default="counterexample",
                        help="z3 refutes a claim that does not follow (counterexample, default) "
                             "or only one that contradicts the earlier steps")
    parser.add_argument("--lean-project", default=None,
                        help="Lake project with the Lean REPL (default: $PRM_LEAN_PROJECT)")
    parser.add_argument("--recheck", action="store_true",
                        help="ignore verdicts already in OUTPUT from an interrupted run")


def build_checkers(names: list[str], args) -> dict:
    from annotate.checkers import CHECKERS, get_checker

    unknown = [n for n in names if n not in CHECKERS]
    if unknown:
        raise RecordError(f"unknown checker(s) {unknown}; choose from {', '.join(CHECKERS)}",
                          field="--checkers")
    options = {"sympy": {"seconds": args.timeout},
               "z3": {"seconds": max(args.timeout, args.z3_timeout_ms / 1000 * 4),
                      "timeout_ms": args.z3_timeout_ms, "refute": args.z3_refute},
               "lean": {"project": args.lean_project}}
    return {name: get_checker(name, **options[name]) for name in names}


def _previous_verdicts(path: Path) -> dict:
    """Verdicts of an earlier (interrupted) run: (trace id, step index, text) -> verdicts."""
    from prm.io import read_traces

    found = {}
    try:
        traces = read_traces(path)
    except (RecordError, OSError, ValueError):
        return found
    for trace in traces:
        for index, step in enumerate(trace.steps):
            if step.verdicts:
                found[(trace.id, index, step.text)] = step.verdicts
    return found


def run(args) -> int:
    from tqdm import tqdm

    from annotate.checkers.combine import consensus_filter, override_refuted
    from prm.io import ReadReport, read_traces, write_traces

    names = [n.strip() for n in args.checkers.split(",") if n.strip()]
    if not names:
        raise RecordError("no checker named", field="--checkers")
    checkers = build_checkers(names, args)
    report = ReadReport()
    traces = read_traces(args.input, skip_invalid=args.skip_invalid, report=report)
    if report.skipped:
        print(report.summary(), file=sys.stderr)
    output = Path(args.output)
    earlier = {} if args.recheck or not output.exists() else _previous_verdicts(output)

    counts = {name: collections.Counter() for name in names}
    reused = 0
    total_steps = sum(len(t.steps) for t in traces)
    try:
        with tqdm(total=total_steps, unit="step", desc="prm check", file=sys.stderr,
                  disable=None) as progress:
            for trace in traces:
                texts = trace.step_texts
                for index, step in enumerate(trace.steps):
                    old = {v.checker: v for v in earlier.get((trace.id, index, step.text), [])}
                    for name, checker in checkers.items():
                        verdict = old.get(name)
                        if verdict is None:
                            verdict = checker.check(trace.problem, texts[:index], step.text)
                        else:
                            reused += 1
                        step.verdicts = [v for v in step.verdicts if v.checker != name] + [verdict]
                        counts[name][verdict.status] += 1
                    progress.update(1)
    except KeyboardInterrupt:
        write_traces(output, traces)  # what is done is kept; the rerun reuses it
        raise

    lines = [f"checked {total_steps} step(s) of {len(traces)} trace(s)"
             + (f" ({reused} verdict(s) reused from {output})" if reused else "")]
    for name in names:
        statuses = ", ".join(f"{s} {counts[name][s]}" for s in
                             ("verified", "refuted", "unknown", "unavailable"))
        lines.append(f"  {name}: {statuses}")
    if args.consensus_filter:
        traces, consensus = consensus_filter(traces, names)
        lines.append("consensus filter: " + json.dumps(consensus.as_dict()))
    if args.override_refuted:
        override = override_refuted(traces, names)
        lines.append("override refuted: " + json.dumps(override.as_dict()))
    write_traces(output, traces)
    lines.append(f"wrote {len(traces)} trace(s) to {output}")
    print("\n".join(lines))
    for checker in checkers.values():
        close = getattr(checker, "close", None)
        if close is not None:
            close()
    return 0
