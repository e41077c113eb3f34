"""What every script in bench/ shares: paths, flags, machine record, timing, caches and goals.

Each bench measures a baseline and this project's way side by side and prints ratios against
goals. Written once here so that the benches differ only in what they measure:

- `parser(description, name)`: the common flags `--results` (the results JSON, default
  bench/results/<name>.json), `--out` (the work and cache folder, default bench/out/<name>),
  `--threads`, `--seed` and `--quick`.
- `machine()`: what the figures were measured on, with the load average at the start;
  `save_results` adds the load average at the end (a timing beside other jobs is no finding,
  so every result says how loaded the machine was).
- `cpu_seconds()`, `Stopwatch` and `matmul_peak()`: CPU time and this machine's float32 matmul
  throughput, measured one way.
- `cached(path, compute)` (JSON) and `cached_traces(path, compute)` (JSONL): the read-or-compute
  cache that lets a long bench be interrupted and resumed.
- `save_results(path, results, machine, goals)`: the results JSON; `merge_results` for a bench
  whose runs each add one row to it.
- `Goal`: one goal, rendered one way in stdout (`GOAL name: value op target: met` or
  `missed by X`), in the results JSON (`to_dict`) and in bench/README.md (`readme_row`).

Importing this module (as `bench._harness`, with the project root on sys.path) also drops
bench/ from sys.path: `python bench/x.py` puts it first, where bench/completers.py and
bench/annotate.py would shadow the `completers` and `annotate` packages.
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
OUT = BENCH / "out"
README = BENCH / "README.md"

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# -- flags ----------------------------------------------------------------------------------------

def parser(description: str, name: str, *, threads: int = 1, seed: int = 0,
           quick: str | None = "a smoke run on the smallest inputs") -> argparse.ArgumentParser:
    """An ArgumentParser with the flags every bench shares; `description` may be the module
    docstring (its first paragraph is used). `quick=None` leaves out --quick (a bench with no
    smaller mode)."""
    result = argparse.ArgumentParser(description=description.strip().split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    result.add_argument("--results", type=Path, default=RESULTS / f"{name}.json", help="results JSON")
    result.add_argument("--out", type=Path, default=OUT / name, help="work and cache folder")
    result.add_argument("--threads", type=int, default=threads, help="torch threads")
    result.add_argument("--seed", type=int, default=seed)
    if quick is not None:
        result.add_argument("--quick", action="store_true", help=quick)
    return result


def use_threads(threads: int) -> None:
    """Set torch's threads and OMP_NUM_THREADS (which subprocesses inherit)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


# -- the machine and its time -------------------------------------------------------------------

def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine(threads: int | None = None) -> dict:
    """What the figures were measured on, with the load average (1, 5, 15 min) at the start."""
    record = {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "python": platform.python_version(), "threads": threads, "load_average_start": load_average()}
    if "torch" in sys.modules:
        record["torch"] = sys.modules["torch"].__version__
    return record


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU seconds of this process (or of its finished children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Stopwatch:
    """`with Stopwatch() as watch: ...` then `watch.seconds`, `watch.cpu_seconds` (this process)
    and `watch.load_average` ([1-min load before, after])."""

    def __enter__(self) -> Stopwatch:
        self._load, self._cpu, self._wall = os.getloadavg()[0], cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = cpu_seconds() - self._cpu
        self.load_average = [round(self._load, 2), round(os.getloadavg()[0], 2)]

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 3), "cpu_seconds": round(self.cpu_seconds, 3),
                "load_average": self.load_average}


@dataclass(frozen=True)
class MatmulPeak:
    """float32 matmul throughput: GFLOP per wall second and per CPU second of this process."""
    gflops: float
    gflops_per_cpu_second: float


def matmul_peak(size: int = 1024, seconds: float = 2.0) -> MatmulPeak:
    """This machine's float32 matmul throughput with torch's current threads: the ceiling that a
    bench's achieved FLOP/s is read against."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    runs, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        torch.mm(a, b)
        runs += 1
    work = 2 * size ** 3 * runs / 1e9
    return MatmulPeak(work / (time.perf_counter() - wall), work / max(time.process_time() - cpu, 1e-9))


# -- caches and results -------------------------------------------------------------------------

def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (`prm.io.atomic_write`), so that an interrupted bench never leaves
    a torn file that a later run would read as done."""
    from prm.io import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(json.dumps(data, indent=1, default=float) + "\n")


def cached(path: Path, compute: Callable[[], Any]) -> Any:
    """The JSON at `path` if it exists, else `compute()`, written there (atomically) and returned.
    A long bench resumes from what it already measured; delete the file to measure again."""
    path = Path(path)
    if not path.exists():
        write_json(path, compute())
    return json.loads(path.read_text())  # the same types whether computed now or read back


def cached_traces(path: Path, compute: Callable[[], list]) -> list:
    """`cached` for a list of traces (sampled, labelled or scored), kept as JSONL."""
    from prm.io import read_traces, write_traces

    if not Path(path).exists():
        write_traces(path, compute())  # atomic
    return read_traces(path)


def save_results(path: Path, results: dict, machine_record: dict, goals: list[Goal] = ()) -> dict:
    """Write a bench's results JSON: its figures, the machine (with the load average at the end)
    and its goals. Returns what was written."""
    record = {**results, "machine": {**machine_record, "load_average_end": load_average()},
              "goals": [goal.to_dict() for goal in goals]}
    write_json(path, record)
    print(f"results: {path}")
    return record


def merge_results(path: Path, key: str, entry: dict, machine_record: dict) -> dict:
    """For a bench whose every run adds one row (named by its settings) to one results JSON:
    set `key` to `entry` with its machine record, keep the other rows."""
    path = Path(path)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = {**entry, "machine": {**machine_record, "load_average_end": load_average()}}
    write_json(path, results)
    return results


# -- goals --------------------------------------------------------------------------------------

OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


def number(value: Any) -> str:
    """Three significant digits without trailing zeros (0.361, 1.8, 8361); exponent notation only
    below 0.001 (8.3e-07)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or value == 0 or not math.isfinite(value):
        return str(value)
    if abs(value) < 1e-3:
        return f"{value:.3g}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Goal:
    """One goal of a bench: `value op target` (op one of >=, <=, >, <, ==), e.g.
    Goal("2 workers / 1", 1.44, ">=", 1.8, "x"). A yes/no goal is Goal(name, True/False, "==", True)."""
    name: str
    value: Any
    op: str
    target: Any
    unit: str = ""

    def __post_init__(self):
        if self.op not in OPERATORS:
            raise ValueError(f"goal {self.name!r}: op must be one of {', '.join(OPERATORS)}, not {self.op!r}")

    @property
    def met(self) -> bool:
        return bool(OPERATORS[self.op](self.value, self.target))

    @property
    def shortfall(self) -> float | None:
        """How far a missed numeric goal is from its target (None when met or not numeric)."""
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (self.value, self.target))
        return None if self.met or not numeric else abs(self.value - self.target)

    def _with_unit(self, value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        return f"{number(value)} {self.unit}".strip() if self.unit not in ("x", "%") else f"{number(value)}{self.unit}"

    @property
    def verdict(self) -> str:
        if self.met:
            return "met"
        return "missed" if self.shortfall is None else f"missed by {self._with_unit(self.shortfall)}"

    def __str__(self) -> str:
        if isinstance(self.target, bool) and self.op == "==":
            return f"GOAL {self.name}: {self._with_unit(self.value)}: {self.verdict}"
        return f"GOAL {self.name}: {self._with_unit(self.value)} {self.op} {self._with_unit(self.target)}: {self.verdict}"

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "op": self.op, "target": self.target, "unit": self.unit,
                "met": self.met, "line": str(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Goal:
        return cls(data["name"], data["value"], data["op"], data["target"], data.get("unit", ""))

    def readme_row(self) -> str:
        """This goal as a row of bench/README.md's goal tables (see `README_HEADER`)."""
        target = "yes" if self.target is True and self.op == "==" else f"{self.op} {self._with_unit(self.target)}"
        return f"| {self.name} | {self._with_unit(self.value)} | {target} | {self.verdict} |"


README_HEADER = "| goal | measured | target | |\n|---|---|---|---|"


def print_goals(goals: list[Goal]) -> bool:
    """Print every goal line; True when all are met."""
    for goal in goals:
        print(goal, flush=True)
    return all(goal.met for goal in goals)


def readme_table(goals: list[Goal]) -> str:
    """The goals as a markdown table for bench/README.md (paste it with the command and load)."""
    return "\n".join([README_HEADER, *(goal.readme_row() for goal in goals)])


if __name__ == "__main__":  # `python bench/_harness.py bench/results/x.json`: a results file's goal table
    for results_file in sys.argv[1:]:
        print(readme_table([Goal.from_dict(g) for g in json.loads(Path(results_file).read_text()).get("goals", [])]))
