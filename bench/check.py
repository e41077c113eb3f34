"""`prm check` with one worker process vs two, on real data, side by side in one run.

    python bench/check.py                          # GSM8K test + 100 MATH500 solutions, ~5 min
    python bench/check.py --math 40 --repeats 1     # quicker

For each input (the 1,319 GSM8K test solutions, one step a line with calculator notes; and
the first `--math` MATH500 reference solutions, one sentence a step, LaTeX: slower steps,
closer to ProcessBench's MATH subset), the checks of `prm check IN OUT --checkers sympy,z3` run
with 1 and 2 worker processes, alternately (`--repeats` times each, so that load from other
processes falls on both alike):

1. steps/s of each run (checking time, without reading the input; measured here around the
   command's own `CheckerPool` with its default checker options) and the ratio of the medians, workers 2 over workers 1 (goal: at least 1.8 on 2 cores);
   also steps per CPU-second of the worker processes, which shows what the pool costs
   whatever else runs on the machine (equal figures: no work is lost to running in parallel);
2. the verdicts of the two runs are compared (everything but the wall-clock `seconds`):
   steps whose statuses differ, and steps whose evidence text alone differs;
3. a `prm check --workers 2` subprocess is SIGKILLed at a random moment, the same command is run again, and
   its output is compared with the uninterrupted run's in the same way.

The load average of the machine before and after each run, and the busiest processes, are
recorded: other processes on a shared machine make the ratio unreliable, and the JSON says
how loaded it was.
Results: bench/results/check.json.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import ROOT, Goal, Stopwatch, machine, parser, print_goals, save_results  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
CHECKERS = "sympy,z3"


def prm_check(source: Path, out: Path, workers: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "prm.app.cli", "check", str(source), str(out), "--checkers",
            CHECKERS, "--workers", str(workers), "--no-progress", *extra]


def command_options(source: Path) -> tuple[list, dict, dict]:
    """What `prm check SOURCE OUT --checkers sympy,z3` checks with: its traces, its checker
    options and time limits (the command's own parser and defaults)."""
    from prm.app import check

    cli = argparse.ArgumentParser()
    check.add_arguments(cli)
    args = cli.parse_args([str(source), "unused.jsonl", "--checkers", CHECKERS])
    options = check.checker_options(check.checker_names(args.checkers), args)
    return args, options, check.time_limits(options)


def timed_run(traces: list, options: dict, limits: dict, out: Path, workers: int) -> dict:
    """One complete check of `traces` with `workers` processes, written to `out`: steps, seconds,
    steps/s, the workers' CPU seconds and the load around it."""
    from annotate.checkers.parallel import CheckerPool
    from prm.io import write_traces

    pool = CheckerPool(options, limits, workers=workers)
    with Stopwatch() as watch:
        checked = [trace for _, trace in sorted(pool.check_traces(traces), key=lambda pair: pair[0])]
    write_traces(out, checked)
    steps, cpu = sum(len(t.steps) for t in traces), pool.stats.worker_cpu_seconds
    return {"workers": workers, "steps": steps, "traces": len(traces),
            "seconds": round(watch.seconds, 2), "steps_per_s": round(steps / watch.seconds, 1),
            "worker_cpu_seconds": round(cpu, 1), "steps_per_cpu_s": round(steps / max(cpu, 1e-9), 1),
            # CPUs the workers got on average: 1 and 2 on a free machine, less when it is shared
            "cpus_used_by_workers": round(cpu / max(watch.seconds, 1e-9), 2),
            "timed_out": pool.stats.timed_out,
            "load_before": watch.load_average[0], "load_after": watch.load_average[1]}


def verdicts(path: Path) -> list:
    """Every verdict of a file without its wall-clock time, trace by trace, in file order."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for step in record["steps"]:
            for verdict in step["verdicts"]:
                verdict.pop("seconds", None)
        records.append(record)
    return records


def differences(a: list, b: list) -> dict:
    """How two outputs differ, step by step: `status` (a verdict's status differs), of which
    `timed` (a time limit in either: load-dependent by nature), and `evidence_only` (same
    statuses, other wording), each with a few examples "trace id, step i: ..."."""
    if [r["id"] for r in a] != [r["id"] for r in b]:
        return {"status": ["the traces (or their order) differ"], "timed": [], "evidence_only": []}
    found = {"status": [], "timed": [], "evidence_only": []}
    for left, right in zip(a, b):
        for index, (x, y) in enumerate(zip(left["steps"], right["steps"])):
            if x == y:
                continue
            where = f"{left['id']}, step {index}: " + " | ".join(
                f"{u['checker']} {u['status']} {_short(u['evidence'])} / {v['status']} {_short(v['evidence'])}"
                for u, v in zip(x["verdicts"], y["verdicts"]) if u != v)
            if [v["status"] for v in x["verdicts"]] == [v["status"] for v in y["verdicts"]]:
                found["evidence_only"].append(where)
            else:
                found["status"].append(where)
            if any("time limit" in (v["evidence"] or "") or "Timeout" in (v["evidence"] or "")
                   for v in x["verdicts"] + y["verdicts"]):
                found["timed"].append(where)
    return found


def _short(text: str | None) -> str:
    return repr((text or "")[:80])


def summary(found: dict) -> dict:
    return {"steps_with_other_status": len(found["status"]),
            "steps_with_a_time_limit_involved": len(found["timed"]),
            "steps_with_other_evidence_only": len(found["evidence_only"]),
            "examples": (found["status"] + found["evidence_only"])[:6]}


def kill_and_resume(source: Path, folder: Path, extra: list[str], expected: Path, seconds: float,
                    rng: random.Random) -> dict:
    """SIGKILL a `prm check --workers 2` subprocess at a random moment, run the same command
    again, compare its output with the uninterrupted run's."""
    out = folder / "killed.jsonl"
    partial = out.with_name(out.name + ".partial")
    at = rng.uniform(0.2, 0.8) * seconds
    process = subprocess.Popen(prm_check(source, out, 2, extra), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    time.sleep(at)
    finished_before_kill = process.poll() is not None
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = partial.read_bytes().count(b"\n") if partial.exists() else 0
    subprocess.run(prm_check(source, out, 2, extra), stdout=subprocess.DEVNULL, check=True)
    resumed, found = verdicts(out), differences(verdicts(out), verdicts(expected))
    return {"killed_after_seconds": round(at, 2), "finished_before_kill": finished_before_kill,
            "traces_kept_at_kill": kept, "traces_checked_after_resume": len(resumed) - kept,
            "statuses_equal_to_uninterrupted": not found["status"],
            "equal_to_uninterrupted": not found["status"] and not found["evidence_only"],
            "differences": summary(found)}


def bench_input(name: str, source: Path, repeats: int, extra: list[str], folder: Path,
                rng: random.Random) -> dict:
    from prm.app.check import read_input

    args, options, limits = command_options(source)
    args.limit = int(extra[1]) if extra else None
    traces = read_input(args)
    runs = []
    for repeat in range(repeats):
        for workers in (1, 2):  # alternately, so that outside load falls on both
            out = folder / f"{name}-w{workers}-{repeat}.jsonl"
            runs.append(timed_run(traces, options, limits, out, workers))
            print(f"  {name}: workers {workers}: {runs[-1]['steps_per_s']:.1f} steps/s "
                  f"({runs[-1]['seconds']:.1f} s, workers on {runs[-1]['cpus_used_by_workers']:.2f} "
                  f"CPUs, load {runs[-1]['load_before']:.1f})", flush=True)
    one = statistics.median(r["steps_per_s"] for r in runs if r["workers"] == 1)
    two = statistics.median(r["steps_per_s"] for r in runs if r["workers"] == 2)
    found = differences(verdicts(folder / f"{name}-w1-0.jsonl"), verdicts(folder / f"{name}-w2-0.jsonl"))
    seconds_two = statistics.median(r["seconds"] for r in runs if r["workers"] == 2)
    killed = kill_and_resume(source, folder, extra, folder / f"{name}-w2-0.jsonl", seconds_two, rng)
    print(f"  {name}: ratio {two / one:.2f}; statuses identical: {not found['status']}, "
          f"evidence identical: {not found['evidence_only']}; kill at {killed['killed_after_seconds']} s "
          f"+ resume: statuses equal {killed['statuses_equal_to_uninterrupted']}, all equal "
          f"{killed['equal_to_uninterrupted']}", flush=True)
    return {"input": str(source), "steps": runs[0]["steps"], "traces": runs[0]["traces"],
            "runs": runs, "steps_per_s_workers_1": one, "steps_per_s_workers_2": two,
            "ratio": round(two / one, 3),
            "steps_per_cpu_s_workers_1": statistics.median(r["steps_per_cpu_s"] for r in runs if r["workers"] == 1),
            "steps_per_cpu_s_workers_2": statistics.median(r["steps_per_cpu_s"] for r in runs if r["workers"] == 2),
            "statuses_identical": not found["status"],
            "verdicts_identical": not found["status"] and not found["evidence_only"],
            "workers_1_vs_2": summary(found), "kill_and_resume": killed}


def busy_processes(count: int = 8) -> list[str]:
    """The processes using the most CPU right now (other jobs on a shared machine)."""
    done = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True,
                          text=True, check=False)
    rows = [line.strip()[:110] for line in done.stdout.splitlines()[1:]]
    return [row for row in rows if "bench/check.py" not in row][:count]


def arguments():
    args = parser(__doc__, "check", quick="300 GSM8K traces, 40 MATH500 solutions, 1 repeat")
    args.add_argument("--gsm8k", type=int, default=None, help="GSM8K test traces (default: all 1,319)")
    args.add_argument("--math", type=int, default=100, help="MATH500 solutions (0: none)")
    args.add_argument("--repeats", type=int, default=2, help="runs of each worker count per input")
    args = args.parse_args()  # --seed: the kill moment's
    if args.quick:
        args.gsm8k, args.math, args.repeats = args.gsm8k or 300, min(args.math, 40), 1
    return args


def goals(results: dict) -> list[Goal]:
    out = []
    for name, result in results.items():
        out += [Goal(f"{name}: 2 workers / 1 (steps/s)", result["ratio"], ">=", 1.8, "x"),
                Goal(f"{name}: verdicts of 1 and 2 workers identical", result["statuses_identical"], "==", True),
                Goal(f"{name}: killed and resumed = uninterrupted",
                     result["kill_and_resume"]["statuses_equal_to_uninterrupted"], "==", True)]
    return out


def main() -> int:
    args = arguments()
    machine_record = {**machine(), "busiest_processes_before": busy_processes()}
    rng = random.Random(args.seed)
    inputs = [("gsm8k", DATA / "gsm8k" / "test.jsonl", ["--limit", str(args.gsm8k)] if args.gsm8k else [])]
    if args.math:
        inputs.append(("math500", DATA / "math500" / "test.jsonl", ["--limit", str(args.math)]))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-check-") as folder:
        for name, source, extra in inputs:
            print(f"{name}: {source}", flush=True)
            results[name] = bench_input(name, source, args.repeats, extra, Path(folder), rng)
    loads = [run[key] for r in results.values() for run in r["runs"] for key in ("load_before", "load_after")]
    machine_record |= {"load_average_during_runs": {"min": min(loads), "max": max(loads)},
                       "busiest_processes_after": busy_processes()}
    print_goals(goal_list := goals(results))
    save_results(args.results, {"command": "python bench/check.py " + " ".join(sys.argv[1:]),
                                "min_ratio": min(r["ratio"] for r in results.values()), "inputs": results},
                 machine_record, goal_list)
    return 0


if __name__ == "__main__":
    sys.exit(main())
