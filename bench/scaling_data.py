"""The traces of the label-scaling bench (`bench/scaling.py`): fresh problems of the embedded
world, sampled once by tiny-gsm and cached, none of them the demo's.

World seeds (the demo uses seed 0 for all its splits, tiny-gsm trained on seed 0 and held out
seed 1000003):

- training pool: `generate_problems(POOL_PROBLEMS, seed=2900)`, SAMPLES_PER_PROBLEM solutions each;
  a size of N traces is the first N / SAMPLES_PER_PROBLEM problems (nested: 1,200 contains 600);
- validation (thresholds, best checkpoints): 40 problems of seed 2901 x 8;
- test seed k (k = 0, 1, 2): 80 problems of seed 2910 + k x 8, sampled with sampling seed k.

Every file is sampled in chunks of problems and appended, so an interrupted run resumes at
the chunk it was in. Traces carry the world's gold step labels (`meta.gold_labels`) and
sympy verdicts on the validation and test traces.
"""

from __future__ import annotations

import time
from pathlib import Path

TRAIN_SEED, VAL_SEED, TEST_SEED = 2900, 2901, 2910
SAMPLES_PER_PROBLEM = 4
EVAL_SAMPLES = 8
VAL_PROBLEMS, TEST_PROBLEMS = 40, 80
CHUNK_PROBLEMS = 100


def sample_file(completer, path: Path, world_seed: int, problems: int, samples: int, sampling_seed: int,
                split: str, log=print) -> list:
    """`problems` problems of `world_seed` x `samples` solutions in `path` (JSONL), sampling
    only the chunks of problems not there yet; returns the traces."""
    from completers.base import SamplingParams
    from completers.world import generate_problems, sample_traces
    from prm.io import dumps, read_traces

    chosen = generate_problems(problems, seed=world_seed)
    done = read_traces(path) if path.exists() else []
    have = {t.meta["problem_id"] for t in done}
    todo = [p for p in chosen if p.id not in have]
    path.parent.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), CHUNK_PROBLEMS):
        chunk = todo[start:start + CHUNK_PROBLEMS]
        began = time.process_time()
        params = SamplingParams(n=samples, temperature=1.0, max_new_tokens=320,
                                seed=sampling_seed * 1_000_003 + int(chunk[0].id.rsplit("-", 1)[1]))
        traces = sample_traces(completer, chunk, samples, params)
        cpu = (time.process_time() - began) / len(traces)
        with open(path, "a", encoding="utf-8") as handle:
            for trace in traces:
                trace.meta["split"] = split
                trace.meta["sample_cpu_seconds"] = round(cpu, 5)
                handle.write(dumps(trace) + "\n")
        log(f"{path.name}: {len(have) + start + len(chunk)}/{problems} problems sampled")
    order = {p.id: i for i, p in enumerate(chosen)}
    traces = [t for t in read_traces(path) if t.meta["problem_id"] in order]
    traces.sort(key=lambda t: (order[t.meta["problem_id"]], t.id))
    return traces


def with_sympy(traces: list, path: Path) -> list:
    """`traces` with a sympy verdict on every step (cached in `path`)."""
    from prm.io import read_traces, write_traces

    if path.exists():
        return read_traces(path)
    from annotate.checkers import get_checker
    from annotate.checkers.combine import add_verdicts

    add_verdicts(traces, get_checker("sympy"))
    write_traces(path, traces)
    return traces


def load_splits(work: Path, completer_factory, pool_traces: int, test_seeds: list[int],
                test_problems: int = TEST_PROBLEMS, val_problems: int = VAL_PROBLEMS, log=print) -> dict:
    """{"train": pool traces, "val": ..., "test": {seed: ...}}, sampled where missing."""
    holder = {}

    def completer():
        if "c" not in holder:
            holder["c"] = completer_factory()
        return holder["c"]

    def cached(name, seed, problems, samples, sampling_seed, split):
        path = work / "traces" / f"{name}.jsonl"
        from completers.world import generate_problems
        from prm.io import read_traces

        if path.exists():
            wanted = {p.id for p in generate_problems(problems, seed=seed)}
            traces = [t for t in read_traces(path) if t.meta["problem_id"] in wanted]
            if len({t.meta["problem_id"] for t in traces}) == problems:
                order = {p.id: i for i, p in enumerate(generate_problems(problems, seed=seed))}
                return sorted(traces, key=lambda t: (order[t.meta["problem_id"]], t.id))
        return sample_file(completer(), path, seed, problems, samples, sampling_seed, split, log)

    pool_problems = -(-pool_traces // SAMPLES_PER_PROBLEM)
    splits = {"val": cached("val", VAL_SEED, val_problems, EVAL_SAMPLES, 101, "val"),
              "test": {s: cached(f"test_seed{s}", TEST_SEED + s, test_problems, EVAL_SAMPLES, 200 + s, "test")
                       for s in test_seeds}}
    splits["train"] = cached("train", TRAIN_SEED, pool_problems, SAMPLES_PER_PROBLEM, 0, "train")[:pool_traces]
    splits["val"] = with_sympy(splits["val"], work / "traces" / f"val_sympy_{val_problems}.jsonl")
    splits["test"] = {s: with_sympy(t, work / "traces" / f"test_seed{s}_sympy_{test_problems}.jsonl")
                      for s, t in splits["test"].items()}
    return splits
