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
the pool. The load average is printed before and after; re-run it on an idle machine. The
CPU seconds of each run's processes (the main process; the fork server and workers under
it) are printed too: they depend much less on the load, and show the serial part (the main
process) and what two processes cost over one (the workers' total).
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


def run_eval(data: Path, out: Path, workers: int) -> tuple[float, dict]:
    """Wall seconds of one `prm eval --benchmark processbench --scorer checker:sympy` run, until
    its own process exits (as a shell waits; the fork server ends a fraction of a second
    later, on its own), and the CPU seconds of its processes (`ProcessCPU`)."""
    command = [sys.executable, "-m", "prm.app.cli", "eval", "--benchmark", "processbench", "--scorer",
               "checker:sympy", "--data", str(data), "--out", str(out), "--workers", str(workers), "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors, text=True)
        cpu = ProcessCPU(process.pid)
        while process.poll() is None:
            cpu.sample()
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        errors.seek(0)
        stderr = errors.read()
    if process.returncode:
        raise SystemExit(f"prm eval failed (exit status {process.returncode}):\n{stderr[-3000:]}")
    for line in stderr.splitlines():  # checks stopped at the time limit make runs differ
        if "time limit" in line:
            print(f"  ({workers} worker(s)) {line.strip()}", flush=True)
    return seconds, cpu.seconds()


class ProcessCPU:
    """CPU seconds (user + system, from /proc) of a process and of every process under it:
    the command's main process, and the fork server and checker workers it starts. Sampled
    every 0.1 s while the command runs, so a process's last tenth of a second before it
    ends can be missed. They depend much less on what else the machine runs than wall times
    do (about ±15% at load average 5 on 2 cores): the main process's share is the serial
    part two workers cannot shorten, and the workers' total shows what two processes cost
    over one (work done twice, and on a busy machine each slowing the other). Linux only
    ({} elsewhere)."""

    def __init__(self, pid: int):
        self.pid, self.last, self.parent = pid, {}, {}

    def sample(self) -> None:
        try:
            entries = [name for name in os.listdir("/proc") if name.isdigit()]
        except OSError:
            return
        stats = {}
        for name in entries:
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            stats[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
        family, grew = {self.pid}, True
        while grew:
            more = {pid for pid, (ppid, _) in stats.items() if ppid in family} - family
            family |= more
            grew = bool(more)
        for pid in family & set(stats):
            self.parent.setdefault(pid, stats[pid][0])
            self.last[pid] = max(self.last.get(pid, 0.0), stats[pid][1])

    def seconds(self) -> dict:
        """{"main": CPU s of the command's process, "helpers": of its children (the fork
        server, multiprocessing's resource tracker), "workers": of their children (the
        checker workers), "worker_processes": how many of those were seen}."""
        if not self.last:
            return {}
        helpers = [pid for pid in self.last if self.parent[pid] == self.pid]
        workers = [pid for pid in self.last if pid != self.pid and pid not in helpers]
        return {"main": round(self.last.get(self.pid, 0.0), 2),
                "helpers": round(sum(self.last[pid] for pid in helpers), 2),
                "workers": round(sum(self.last[pid] for pid in workers), 2), "worker_processes": len(workers)}


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


def measure(data: Path, workers: list[int], rounds: int, work: Path) -> tuple[dict, dict, dict]:
    """Wall seconds of every run ({workers: [seconds]}), their CPU seconds ({workers:
    [`ProcessCPU.seconds()`]}) and the step scores of the last run of each."""
    seconds: dict[int, list[float]] = {w: [] for w in workers}
    cpu: dict[int, list[dict]] = {w: [] for w in workers}
    found = {}
    for round_number in range(rounds):
        for count in workers:
            out = work / f"out-{count}-{round_number}"
            wall, used = run_eval(data, out, count)
            seconds[count].append(wall)
            cpu[count].append(used)
            found[count] = scores(out)
            print(f"round {round_number}: {count} worker(s) {wall:.1f} s; CPU s: {describe_cpu(used)}", flush=True)
    return seconds, cpu, found


def describe_cpu(used: dict) -> str:
    if not used:
        return "not measured (no /proc)"
    return (f"main process {used['main']:.1f}, fork server {used['helpers']:.1f}, {used['worker_processes']} "
            f"worker(s) {used['workers']:.1f}")


def main(argv=None) -> int:
    args = arguments(argv)
    machine_record = machine(threads=1)
    with tempfile.TemporaryDirectory(prefix="checker-scorer-") as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "processbench"
        built = None if args.data else build_data(data, args.gsm8k, args.math, args.seed)
        seconds, cpu, found = measure(data, args.workers, args.rounds, Path(tmp))
    base = args.workers[0]
    best = {w: min(s) for w, s in seconds.items()}
    traces = len(found[base])
    result = {"data": args.data or f"built from ../shared/data: {built}", "traces": traces,
              "seconds": seconds, "cpu_seconds": cpu, "traces_per_second": {w: traces / s for w, s in best.items()},
              "speedup": {w: best[base] / best[w] for w in args.workers},
              "identical_scores": all(found[w] == found[base] for w in args.workers),
              "command": "python bench/checker_scorer.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"{traces} traces ({result['data']}); {os.cpu_count()} CPUs")
    for w in args.workers:
        fastest = cpu[w][seconds[w].index(best[w])]
        print(f"  {w} worker(s): {best[w]:.1f} s, {traces / best[w]:.1f} traces/s, {result['speedup'][w]:.2f}x "
              f"{base} worker(s); CPU s: {describe_cpu(fastest)}")
    goal_list = [Goal("identical scores (so identical predictions)", result["identical_scores"], "==", True)]
    if 2 in args.workers and base == 1:
        goal_list.insert(0, Goal("2 workers / 1 (wall time)", round(result["speedup"][2], 3), ">=", 1.8, "x"))
    print_goals(goal_list)
    save_results(args.results, result, machine_record, goal_list)
    return 0 if result["identical_scores"] else 1


if __name__ == "__main__":
    sys.exit(main())
