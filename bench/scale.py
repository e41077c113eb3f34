"""One process vs a local Ray cluster, for `prm annotate` and `prm check`, side by side in one run.

    python bench/scale.py                   # the idle-machine run (about 5 minutes)
    python bench/scale.py --quick           # a smaller run (a few minutes on an idle machine)

1. Annotation: the demo's Monte Carlo annotation (`prm demo`'s settings: n = 8 completions
   per step, its temperature, 320 new tokens, seed 0) of a fixed trace set: solutions that
   tiny-gsm samples for world problems as the demo samples them (cached in
   bench/out/scale/, `--out`). The real command runs as a subprocess three ways:
   one process (one torch thread), `--ray --actors 1` and `--ray --actors 2` (one CPU and one
   thread per actor), each Ray run starting its own local Ray on this 2-core machine.
2. Checking: `prm check` on the GSM8K test solutions (sympy and z3), one checker process
   vs `--ray --actors 1` and `--ray --actors 2` (one checker process per actor).
3. The kill-an-actor test (tests/test_ray_jobs.py) runs as a subprocess.

Each run's rate is measured two ways: end to end (the command's wall time: imports, Ray's
start, model loads) and in steady state (traces per second between the first and the last
trace written, read off the growing output file, so the fixed start-up cost is left out).
The goals use the steady state; the end-to-end figures say what the start-up costs. The
outputs of all three runs are compared record by record (the wall-clock `seconds` fields
aside; for checks, a step whose check hit its time limit in either run is counted apart).

Goals: labels identical; 2 actors at least 1.7x one process; Ray's overhead on 1 actor at
most 10%; the kill-an-actor test passes. The machine's load average is recorded before and
after each run: on a shared machine the ratios mean little. Results: bench/results/scale.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import ROOT, Goal, cached_traces, machine, parser, print_goals, save_results  # noqa: E402

GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
ARMS = {"one process": [], "Ray, 1 actor": ["--ray", "--actors", "1"], "Ray, 2 actors": ["--ray", "--actors", "2"]}


def build_traces(problems: int, samples: int, seed: int, out: Path) -> Path:
    """Solutions tiny-gsm samples for `problems` world problems, as `prm demo` samples them."""
    def sample():
        import torch

        from annotate.config import AnnotateConfig
        from completers.base import SamplingParams
        from completers.transformers_completer import TransformersCompleter
        from completers.world import generate_problems, sample_traces

        torch.set_num_threads(1)
        completer = TransformersCompleter("tiny-gsm")
        params = SamplingParams(n=samples, temperature=AnnotateConfig.temperature, max_new_tokens=320,
                                seed=seed + 1000)
        return sample_traces(completer, generate_problems(problems, seed=seed), samples, params)

    path = out / f"traces_{problems}x{samples}_seed{seed}.jsonl"
    cached_traces(path, sample)
    return path


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def run(command: list[str], watch: Path, total: int) -> dict:
    """Run a `prm` command; its wall time, and the times the first and last trace were written."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PRM_PROGRESS_SECONDS="3600")
    env.pop("RAY_ADDRESS", None)  # each Ray run starts its own local Ray
    seen: dict[int, float] = {}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "prm.app.cli", *command], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            count = lines(watch)
            if count and count not in seen:
                seen[count] = time.perf_counter() - started
            stop.wait(0.05)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    out, err = process.communicate()
    wall = time.perf_counter() - started
    stop.set()
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): prm {' '.join(command)}\n{err[-2000:]}")
    first = min(seen.items())[1] if seen else wall
    last = max(seen.items())[1] if seen else wall
    written = max(seen, default=total)
    steady = (written - min(seen, default=1)) / (last - first) if last > first else float("nan")
    return {"wall_seconds": round(wall, 2), "first_trace_at": round(first, 2), "last_trace_at": round(last, 2),
            "traces_per_s_end_to_end": round(total / wall, 4), "traces_per_s_steady": round(steady, 4),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "summary": out.strip().splitlines()[:3]}


def records(path: Path) -> dict:
    def drop_seconds(value):
        if isinstance(value, dict):
            return {k: drop_seconds(v) for k, v in value.items() if k != "seconds"}
        if isinstance(value, list):
            return [drop_seconds(v) for v in value]
        return value

    return {r["id"]: drop_seconds(r) for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def compare(first: dict, second: dict) -> dict:
    """Records that differ, and steps whose check hit a time limit in either run (set apart)."""
    timed_out = 0
    for trace_id in first.keys() & second.keys():
        for a, b in zip(first[trace_id]["steps"], second[trace_id]["steps"]):
            if "time limit" in json.dumps(a.get("verdicts")) + json.dumps(b.get("verdicts")):
                a["verdicts"] = b["verdicts"] = None
                timed_out += 1
    differ = sorted(i for i in first.keys() | second.keys() if first.get(i) != second.get(i))
    labels_differ = sorted(i for i in first.keys() | second.keys() if labels(first.get(i)) != labels(second.get(i)))
    return {"records": len(first), "differ": len(differ), "first_differing": differ[:5],
            "labels_differ": len(labels_differ), "steps_timed_out": timed_out}


def labels(record: dict | None):
    """What a run decided about each step: its label and each checker's status (the evidence
    text of a z3 verdict can name the same hypotheses in another order; see bench/README.md)."""
    if record is None:
        return None
    return [(step.get("hard_label"), step.get("soft_label"), step.get("rollouts"),
             [(v["checker"], v["status"]) for v in step["verdicts"]] if isinstance(step.get("verdicts"), list)
             else None) for step in record["steps"]]


def measure(job: str, base: list[str], source: Path, total: int, workdir: Path, output_of) -> dict:
    """The three arms of one job, their outputs compared with the one-process output."""
    result = {"runs": {}}
    outputs = {}
    for name, flags in ARMS.items():
        out = workdir / f"{job}-{name.replace(' ', '_').replace(',', '')}.jsonl"
        command = [job, str(source), str(out), *base, *flags]
        print(f"  {name}: prm {' '.join(command)}", flush=True)
        result["runs"][name] = run(command, output_of(out), total)
        result["runs"][name]["command"] = "prm " + " ".join(command)
        outputs[name] = records(out)
        print(f"    {result['runs'][name]['wall_seconds']:.1f} s end to end, "
              f"{result['runs'][name]['traces_per_s_steady']:.3f} traces/s steady "
              f"(load {result['runs'][name]['load_before']} -> {result['runs'][name]['load_after']})", flush=True)
    for name in list(ARMS)[1:]:
        result["runs"][name]["same_output_as_one_process"] = compare(outputs["one process"], outputs[name])
    one, ray1, ray2 = (result["runs"][name] for name in ARMS)
    result["speedup_2_actors_steady"] = round(ray2["traces_per_s_steady"] / one["traces_per_s_steady"], 3)
    result["speedup_2_actors_end_to_end"] = round(one["wall_seconds"] / ray2["wall_seconds"], 3)
    result["overhead_1_actor_steady"] = round(one["traces_per_s_steady"] / ray1["traces_per_s_steady"] - 1, 3)
    result["overhead_1_actor_end_to_end_seconds"] = round(ray1["wall_seconds"] - one["wall_seconds"], 2)
    result["identical"] = all(result["runs"][n]["same_output_as_one_process"]["labels_differ"] == 0
                              for n in list(ARMS)[1:])
    result["identical_records"] = all(result["runs"][n]["same_output_as_one_process"]["differ"] == 0
                                      for n in list(ARMS)[1:])
    return result


def annotation_cost(path: Path) -> dict:
    """Rollouts, tokens and steps per 1,000 traces of an annotation output."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    per = 1000 / len(rows)
    return {"traces": len(rows), "steps_per_1000": round(per * sum(len(r["steps"]) for r in rows)),
            "rollouts_per_1000": round(per * sum(r["meta"]["annotation"]["rollouts"] for r in rows)),
            "tokens_per_1000": round(per * sum(r["meta"]["annotation"]["tokens"] for r in rows))}


def kill_test() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/test_ray_jobs.py", "-k", "killed"], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    return {"passed": process.returncode == 0, "seconds": round(time.perf_counter() - started, 1),
            "tail": process.stdout.strip().splitlines()[-1:]}


def goals(report: dict) -> list[Goal]:
    """Labels identical; 2 actors >= 1.7x one process and Ray's overhead on 1 actor <= 10% (steady
    state); the kill-an-actor test passes."""
    out = []
    for job in ("annotate", "check"):
        figures = report[job]
        out += [Goal(f"{job}: labels identical (Ray 1 and 2 actors vs one process)", figures["identical"], "==", True),
                Goal(f"{job}: 2 actors / one process (steady state)", figures["speedup_2_actors_steady"], ">=", 1.7,
                     "x"),
                Goal(f"{job}: Ray overhead on 1 actor (steady state)",
                     round(100 * figures["overhead_1_actor_steady"], 1), "<=", 10, "%")]
    if "kill_test" in report:
        out.append(Goal("the kill-an-actor test passes", report["kill_test"]["passed"], "==", True))
    return out


def arguments():
    args = parser(__doc__, "scale", quick="6 problems, n = 4, 400 GSM8K traces")
    args.add_argument("--problems", type=int, default=40, help="world problems")
    args.add_argument("--samples", type=int, default=2, help="solutions per problem")
    args.add_argument("--n", type=int, default=8, help="completions per step (the demo's)")
    args.add_argument("--check-traces", type=int, default=1319, help="GSM8K test traces checked (default all)")
    args.add_argument("--skip-kill-test", action="store_true")
    args = args.parse_args()  # --seed: of the problems, samples and annotation
    if args.quick:
        args.problems, args.n, args.check_traces = 6, 4, 400
    return args


def main() -> int:
    args = arguments()
    from annotate.config import AnnotateConfig

    machine_record = machine(threads=1)
    report = {"command": "python bench/scale.py " + " ".join(sys.argv[1:])}
    source = build_traces(args.problems, args.samples, args.seed, args.out)
    total = lines(source)
    print(f"annotation: {total} traces of {args.problems} world problems, tiny-gsm, n = {args.n}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = Path(tmp)
        annotate = ["--completer", "tiny-gsm", "--method", "mc", "--n", str(args.n), "--temperature",
                    str(AnnotateConfig.temperature), "--max-new-tokens", "320", "--seed", str(args.seed)]
        report["annotate"] = measure("annotate", annotate, source, total, workdir, lambda out: out)
        report["annotate"]["cost"] = annotation_cost(workdir / "annotate-one_process.jsonl")
        print(f"check: {args.check_traces} GSM8K test traces, sympy and z3", flush=True)
        check = ["--checkers", "sympy,z3", "--limit", str(args.check_traces), "--workers", "1"]
        report["check"] = measure("check", check, GSM8K, args.check_traces, workdir,
                                  lambda out: out.with_name(out.name + ".partial"))
    if not args.skip_kill_test:
        report["kill_test"] = kill_test()
    for job in ("annotate", "check"):
        figures = report[job]
        print(f"{job}: whole records (seconds aside) {'identical' if figures['identical_records'] else 'differ'}; "
              f"end to end 2 actors {figures['speedup_2_actors_end_to_end']:.2f}x, Ray start-up on 1 actor "
              f"{figures['overhead_1_actor_end_to_end_seconds']:+.1f} s")
    cost = report["annotate"]["cost"]
    print(f"cost per 1,000 traces (tiny-gsm, n = {args.n}): {cost['steps_per_1000']} steps, "
          f"{cost['rollouts_per_1000']} rollouts, {cost['tokens_per_1000']} generated tokens; "
          f"{1000 / report['annotate']['runs']['one process']['traces_per_s_steady']:.0f} s of one CPU thread")
    print_goals(goal_list := goals(report))
    save_results(args.results, report, machine_record, goal_list)
    return 0


if __name__ == "__main__":
    sys.exit(main())
