"""`prm eval --benchmark processbench --scorer checker:sympy` with 1 worker vs 2, side by side.

    python bench/checker_scorer.py                 # about 4 minutes on 2 idle cores
    python bench/checker_scorer.py --gsm8k 100 --math 50 --workers 1 2

The checker scorer checks its steps on `prm check`'s worker pool (`--workers`). This runs
the command end to end (a subprocess each, so the runs share nothing) on the same data with
each worker count, in alternating rounds, and prints the wall time of each, the ratio of 1
worker's time to N's, and whether every step score (and so every prediction) is identical.

Data: the ProcessBench release is not on this machine, so a ProcessBench-format folder is
built from ../shared/data (`--data` takes the real release instead): `gsm8k.json` from
GSM8K test reference solutions, each with a copy whose one calculator result is changed
(`prm.formats.gsm8k.inject_calculator_error`; that step is the first error), and
`math.json` from MATH500 reference solutions (steps: the solution's lines/sentences, no
error). The olympiadbench and omnimath subsets have no counterpart here.

The ratio needs idle cores: on a machine shared with other jobs it measures the load, not
the pool. The load average is printed before and after; re-run it on an idle machine.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import ROOT, Goal, machine, parser, print_goals, save_results  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def build_data(folder: Path, gsm8k: int, math: int, seed: int = 0) -> dict:
    """A ProcessBench-format folder from GSM8K test (with injected errors) and MATH500."""
    from prm.formats.gsm8k import inject_calculator_error, read_gsm8k
    from prm.formats.processbench import write_processbench
    from prm.records import Step, Trace

    rng = random.Random(seed)
    traces = []
    for trace in read_gsm8k(SHARED / "gsm8k" / "test.jsonl", limit=gsm8k):
        trace.id = f"gsm8k-{trace.id}"
        traces.append(trace)
        broken = inject_calculator_error(trace, rng)
        if broken is not None:
            traces.append(broken)
    folder.mkdir(parents=True, exist_ok=True)
    write_processbench(folder / "gsm8k.json", traces)
    rows = [json.loads(line) for line in (SHARED / "math500" / "test.jsonl").read_text().splitlines()][:math]
    math_traces = []
    for index, row in enumerate(rows):
        steps = [s.strip() for s in re.split(r"\n\s*\n|(?<=\.)\s+(?=[A-Z])", row["solution"]) if s.strip()]
        math_traces.append(Trace(f"math-{index}", row["problem"], [Step(text, hard_label=1) for text in steps],
                                 final_answer=row["answer"], reference_answer=row["answer"], outcome_label=1))
    write_processbench(folder / "math.json", math_traces)
    return {"gsm8k": len(traces), "math": len(math_traces),
            "steps": sum(len(t.steps) for t in traces + math_traces)}


def run_eval(data: Path, out: Path, workers: int) -> float:
    """Wall seconds of one `prm eval --benchmark processbench --scorer checker:sympy` run."""
    command = [sys.executable, "-m", "prm.app.cli", "eval", "--benchmark", "processbench", "--scorer",
               "checker:sympy", "--data", str(data), "--out", str(out), "--workers", str(workers), "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    seconds = time.perf_counter() - start
    for line in done.stderr.splitlines():  # checks stopped at the time limit make runs differ
        if "time limit" in line:
            print(f"  ({workers} worker(s)) {line.strip()}", flush=True)
    return seconds


def scores(out: Path) -> list:
    return [[s.get("score") for s in json.loads(line)["steps"]]
            for line in (out / "scored.jsonl").read_text().splitlines()]


def arguments(argv):
    args = parser(__doc__, "checker_scorer", quick="40 GSM8K problems, 20 MATH500 solutions")
    args.add_argument("--data", help="a ProcessBench release folder (default: built from ../shared/data)")
    args.add_argument("--gsm8k", type=int, default=300, help="GSM8K test problems (each + an erroneous copy)")
    args.add_argument("--math", type=int, default=200, help="MATH500 solutions")
    args.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args.add_argument("--rounds", type=int, default=1, help="alternating rounds of every worker count")
    args = args.parse_args(argv)
    if args.quick:
        args.gsm8k, args.math = min(args.gsm8k, 40), min(args.math, 20)
    return args


def measure(data: Path, workers: list[int], rounds: int, work: Path) -> tuple[dict, dict]:
    """Wall seconds of every run ({workers: [seconds]}) and the step scores of the last run of each."""
    seconds: dict[int, list[float]] = {w: [] for w in workers}
    found = {}
    for round_number in range(rounds):
        for count in workers:
            out = work / f"out-{count}-{round_number}"
            seconds[count].append(run_eval(data, out, count))
            found[count] = scores(out)
            print(f"round {round_number}: {count} worker(s) {seconds[count][-1]:.1f} s", flush=True)
    return seconds, found


def main(argv=None) -> int:
    args = arguments(argv)
    machine_record = machine(threads=1)
    with tempfile.TemporaryDirectory(prefix="checker-scorer-") as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "processbench"
        built = None if args.data else build_data(data, args.gsm8k, args.math, args.seed)
        seconds, found = measure(data, args.workers, args.rounds, Path(tmp))
    base = args.workers[0]
    best = {w: min(s) for w, s in seconds.items()}
    traces = len(found[base])
    result = {"data": args.data or f"built from ../shared/data: {built}", "traces": traces,
              "seconds": seconds, "traces_per_second": {w: traces / s for w, s in best.items()},
              "speedup": {w: best[base] / best[w] for w in args.workers},
              "identical_scores": all(found[w] == found[base] for w in args.workers),
              "command": "python bench/checker_scorer.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"{traces} traces ({result['data']}); {os.cpu_count()} CPUs")
    for w in args.workers:
        print(f"  {w} worker(s): {best[w]:.1f} s, {traces / best[w]:.1f} traces/s, {result['speedup'][w]:.2f}x "
              f"{base} worker(s)")
    goal_list = [Goal("identical scores (so identical predictions)", result["identical_scores"], "==", True)]
    if 2 in args.workers and base == 1:
        goal_list.insert(0, Goal("2 workers / 1 (wall time)", round(result["speedup"][2], 3), ">=", 1.8, "x"))
    print_goals(goal_list)
    save_results(args.results, result, machine_record, goal_list)
    return 0 if result["identical_scores"] else 1


if __name__ == "__main__":
    sys.exit(main())
