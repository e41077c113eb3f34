"""`prm check IN OUT --checkers sympy,z3`: add checker verdicts to every step of a file.

Examples:

    prm check ../shared/data/gsm8k/test.jsonl gsm8k.checked.jsonl
    prm check traces.jsonl checked.parquet --checkers z3 --timeout 2 --workers 4

Each step gets one verdict per checker (replacing an older verdict of the same checker).
The checks run in worker processes (`--workers`, default: one per CPU), every check under a
hard time limit: a check still running past it is stopped (its worker is killed and
replaced) and the step gets an `unknown` verdict with the evidence "time limit ...".

Finished traces are appended to OUT.partial (JSONL, through `prm.io.ResumableOutput`: flushed
one trace at a time, fsynced at most once a second), each with the run's settings in
`meta.check.settings`. Killing the run at any moment
(Ctrl-C, SIGTERM, SIGKILL) keeps them; the same command resumes from there, and refuses a
partial file made with other settings. At the end OUT is written at once (JSONL, Parquet or
a `datasets` folder), in input order, and the partial file is removed.

Options combine the verdicts with the existing labels (see `annotate.checkers.combine`):
`--consensus-filter` keeps only traces whose labels and checkers agree on the first error,
`--override-refuted` labels refuted steps 0. Both print what they did as counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from prm.errors import RecordError
from prm.app.arguments import positive_int

STATUSES = ("verified", "refuted", "unknown", "unavailable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from annotate.checkers.parallel import default_workers
    from prm.formats import FORMATS

    readable = ["auto"] + [name for name, fmt in FORMATS.items() if fmt.reader is not None]
    parser.epilog = "examples:\n" + __doc__.split("Examples:", 1)[1].strip("\n").split("\n\n")[0]
    parser.add_argument("input", metavar="IN",
                        help="traces to check: native JSONL, Parquet, a `datasets` folder, or any "
                             "layout of --format (GSM8K, ProcessBench, ...)")
    parser.add_argument("output", metavar="OUT",
                        help="where to write the traces with verdicts (.jsonl, .parquet or a folder)")
    parser.add_argument("--checkers", default="sympy,z3",
                        help="comma-separated checkers: sympy, z3, lean (default: sympy,z3)")
    parser.add_argument("--format", choices=readable, default="auto",
                        help="input layout (default: told from the fields)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="only the first N input traces")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip records that cannot be read (they are listed) instead of stopping")
    parser.add_argument("--allow-empty", action="store_true",
                        help="accept an input without traces (default: an error)")
    parser.add_argument("--override-refuted", action="store_true",
                        help="label every refuted step 0 (label_source checker:<name>)")
    parser.add_argument("--consensus-filter", action="store_true",
                        help="keep only traces whose labels and checkers agree on the first error")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds allowed per step and checker; a check still running is "
                             "stopped and the step is unknown (default 5)")
    parser.add_argument("--z3-timeout-ms", type=int, default=1000,
                        help="timeout of each z3 solver call in milliseconds (default 1000)")
    parser.add_argument("--z3-refute", choices=("counterexample", "contradiction"),
                        default="counterexample",
                        help="z3 refutes a claim that does not follow (counterexample, default) "
                             "or only one that contradicts the earlier steps")
    parser.add_argument("--lean-project", default=None,
                        help="Lake project with the Lean REPL (default: $PRM_LEAN_PROJECT)")
    parser.add_argument("--workers", type=positive_int, default=default_workers(), metavar="N",
                        help="checker processes (default: one per CPU, here %(default)s)")
    parser.add_argument("--recheck", action="store_true",
                        help="discard the partial output of an interrupted run and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
    from prm.app.ray_jobs import add_ray_arguments

    add_ray_arguments(parser)


# -- checkers and their settings ----------------------------------------------------------------

def checker_names(text: str) -> list[str]:
    from annotate.checkers import CHECKERS

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise RecordError("no checker named", field="--checkers")
    unknown = [n for n in names if n not in CHECKERS]
    if unknown:
        raise RecordError(f"unknown checker(s) {unknown}; choose from {', '.join(CHECKERS)}",
                          field="--checkers")
    if len(set(names)) != len(names):
        raise RecordError(f"a checker is named twice in {text!r}", field="--checkers")
    return names


def checker_options(names: list[str], args) -> dict[str, dict]:
    """Constructor options of each checker, from the command line (JSON values only: they
    are recorded in the output and compared on resume)."""
    lean_project = args.lean_project or os.environ.get("PRM_LEAN_PROJECT")
    options = {"sympy": {"seconds": args.timeout},
               "z3": {"seconds": max(args.timeout, args.z3_timeout_ms / 1000 * 4),
                      "timeout_ms": args.z3_timeout_ms, "refute": args.z3_refute},
               "lean": {"project": lean_project}}
    return {name: options[name] for name in names}


LEAN_SECONDS = 90.0  # Lean's own limit is 60 s a proof; starting the REPL takes time too


def time_limits(options: dict[str, dict]) -> dict[str, float]:
    """Seconds one check of each checker may take before it is stopped."""
    return {name: float(opts.get("seconds", LEAN_SECONDS)) for name, opts in options.items()}


def build_checkers(names: list[str], args) -> dict:
    """The checkers by name, built in this process (for `prm check-report`)."""
    from annotate.checkers import get_checker

    options = checker_options(checker_names(",".join(names)), args)
    return {name: get_checker(name, **opts) for name, opts in options.items()}


# -- input ----------------------------------------------------------------------------------------

def read_input(args):
    """The traces to check, in any format `prm.formats` reads; one clear error for a missing
    path, a folder without data, an empty input (unless --allow-empty) or duplicate ids."""
    from prm.formats import read
    from prm.io import ReadReport

    path = Path(args.input)
    if not path.exists():
        raise RecordError("no such file or folder", path=str(path))
    report = ReadReport()
    traces = read(path, None if args.format == "auto" else args.format, skip_invalid=args.skip_invalid,
                  report=report, limit=args.limit)
    if report.skipped:
        print(report.summary(), file=sys.stderr)
    if not traces and not args.allow_empty:
        raise RecordError("holds no traces; nothing to check (pass --allow-empty to write an "
                          "empty output anyway)", path=str(path))
    seen: dict[str, int] = {}
    for number, trace in enumerate(traces, start=1):
        if trace.id in seen:
            raise RecordError(f"record {number}: duplicate id {trace.id!r} (first in record "
                              f"{seen[trace.id]}); ids must be unique to resume", path=str(path),
                              field="id")
        seen[trace.id] = number
    return traces


# -- the partial output -----------------------------------------------------------------------

def partial_path(output: str | os.PathLike) -> Path:
    """Where finished traces are streamed before OUT is written: OUT.partial."""
    output = Path(output)
    return output.with_name(output.name + ".partial")


def open_output(output: Path):
    """OUT as a `prm.io.ResumableOutput` streamed to OUT.partial: locked, its torn line
    repaired, and each finished trace checked against this run (same input trace, once, same
    settings) before it is resumed."""
    from prm.io import ResumableOutput

    return ResumableOutput(output, "id", "prm check", partial=partial_path(output),
                           recorded=lambda trace: (trace.meta.get("check") or {}).get("settings"),
                           settings_field="meta.check.settings", difference=_difference,
                           remedy="pass --recheck to start over")


def _difference(stored: dict | None, settings: dict) -> str:
    if not isinstance(stored, dict):
        return "none recorded"
    if stored.get("checkers") != settings["checkers"]:
        return f"checkers {','.join(stored.get('checkers') or [])} there, " \
               f"{','.join(settings['checkers'])} now"
    changed = []
    for name, opts in settings["options"].items():
        before = (stored.get("options") or {}).get(name) or {}
        changed += [f"{name} {key} {before.get(key)!r} there, {value!r} now"
                    for key, value in opts.items() if before.get(key) != value]
    return "; ".join(changed) or "settings differ"


@contextmanager
def sigterm_interrupts():
    """SIGTERM stops the run like Ctrl-C: finished traces are kept, workers are stopped."""
    def on_term(signum, frame):
        from prm.errors import Terminated

        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- the run ------------------------------------------------------------------------------------

def run(args) -> int:
    from annotate.checkers.combine import consensus_filter, override_refuted
    from annotate.checkers.parallel import CheckerPool
    from prm.app.ray_jobs import ray_options
    from prm.io import check_output, refuse_output_over_inputs

    check_output(args.output)  # before any work: a folder of the user's is never replaced
    refuse_output_over_inputs(args.output, [args.input])
    names = checker_names(args.checkers)
    options = checker_options(names, args)
    settings = json.loads(json.dumps({"checkers": names, "options": options}))
    on_ray = ray_options(args) is not None  # (Ray flags without --ray are refused before any file is made)
    traces = read_input(args)
    output = Path(args.output)
    partial = partial_path(output)

    with open_output(output) as out:
        if args.recheck:
            out.start_over()
        wanted = {t.id: t for t in traces}
        done = {t.id: t for t in out.resume(list(wanted), settings, unchanged=lambda t: (
            t.problem, t.step_texts) == (wanted[t.id].problem, wanted[t.id].step_texts))}
        todo = [t for t in traces if t.id not in done]
        for trace in todo:
            trace.meta["check"] = {"settings": settings}
        if on_ray:  # the checks run in Ray actors, each with its own pool
            from prm.app.ray_jobs import checker_pool_on_ray

            pool = checker_pool_on_ray(args, options, time_limits(options))
        else:
            pool = CheckerPool(options, time_limits(options), workers=args.workers)
        started = time.perf_counter()
        with sigterm_interrupts():
            steps = stream(pool, todo, out, done, total=len(traces), progress=not args.no_progress)
        seconds = time.perf_counter() - started
        checked = [done[t.id] for t in traces]  # input order

        lines = [f"checked {steps} step(s) of {len(todo)} trace(s) in {seconds:.1f} s "
                 f"({steps / seconds if seconds else 0:.1f} steps/s, {pool.workers} worker(s) "
                 f"using {pool.stats.worker_cpu_seconds:.1f} CPU s)"
                 + (f"; {len(traces) - len(todo)} trace(s) were done before, in {partial}"
                    if len(todo) < len(traces) else "")]
        lines += _verdict_counts(checked, names) + _trouble(pool.stats)
        if args.consensus_filter:
            checked, consensus = consensus_filter(checked, names)
            lines.append("consensus filter: " + json.dumps(consensus.as_dict()))
        if args.override_refuted:
            override = override_refuted(checked, names)
            lines.append("override refuted: " + json.dumps(override.as_dict()))
        out.finish(checked)
    lines.append(f"wrote {len(checked)} trace(s) to {output}")
    print("\n".join(lines))
    return 0


def stream(pool, todo: list, output, done: dict, *, total: int, progress: bool) -> int:
    """Check `todo` in the pool, appending each finished trace to `output` (a
    `prm.io.ResumableOutput`; and to `done`, by id) as soon as it is finished; the number of
    steps checked."""
    from prm.progress import progress_bar

    started = time.monotonic()
    steps = 0
    with progress_bar(total, initial=total - len(todo), unit="trace", desc="prm check",
                      enabled=progress) as bar:
        for _, trace in pool.check_traces(todo):
            output.append(trace)
            done[trace.id] = trace
            steps += len(trace.steps)
            bar.update(1)
            busy = f", {pool.status()}" if hasattr(pool, "status") else ""  # Ray: the busy actors
            bar.set_postfix_str(f"{steps / (time.monotonic() - started):.1f} steps/s{busy}",
                                refresh=False)
    return steps


def _trouble(stats) -> list[str]:
    """Summary lines for checks that did not end normally (none in a normal run)."""
    lines = []
    if stats.timed_out:
        lines.append(f"{stats.timed_out} check(s) stopped at the time limit (unknown): "
                     + "; ".join(stats.timed_out_where[:5]) + (" ..." if stats.timed_out > 5 else ""))
    if stats.worker_deaths or stats.checker_errors:
        lines.append(f"{stats.worker_deaths} check(s) lost to a dying worker and "
                     f"{stats.checker_errors} to a checker error (both unknown)")
    return lines


def _verdict_counts(traces: list, names: list[str]) -> list[str]:
    counts = {name: collections.Counter() for name in names}
    for trace in traces:
        for step in trace.steps:
            for verdict in step.verdicts:
                if verdict.checker in counts:
                    counts[verdict.checker][verdict.status] += 1
    return [f"  {name}: " + ", ".join(f"{s} {counts[name][s]}" for s in STATUSES) for name in names]
