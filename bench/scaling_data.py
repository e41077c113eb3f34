"""The traces of the label-scaling bench (`bench/scaling.py`): fresh problems of the embedded
world, sampled once by tiny-gsm and cached, none of them the demo's.

World seeds (the demo uses seed 0 for all its splits, tiny-gsm trained on seed 0 and held out
seed 1000003):

- training pool: `generate_problems(POOL_PROBLEMS, seed=2900)`, SAMPLES_PER_PROBLEM solutions each;
  a size of N traces is the first N / SAMPLES_PER_PROBLEM problems (nested: 1,200 contains 600);
- validation (thresholds, best checkpoints): 40 problems of seed 2901 x 8;
- test seed k (k = 0, 1, 2): 80 problems of seed 2910 + k x 8, sampled with sampling seed k.

Every split is sampled in chunks of problems, one file each (`completers.world.sample_in_chunks`),
so an interrupted run resumes at the chunk it was in. Traces carry the world's gold step labels (`meta.gold_labels`) and
sympy verdicts on the validation and test traces.
"""

from __future__ import annotations

from pathlib import Path

TRAIN_SEED, VAL_SEED, TEST_SEED = 2900, 2901, 2910
SAMPLES_PER_PROBLEM = 4
EVAL_SAMPLES = 8
VAL_PROBLEMS, TEST_PROBLEMS = 40, 80
CHUNK_PROBLEMS = 100


def sample_split(completer, folder: Path, world_seed: int, problems: int, samples: int, sampling_seed: int,
                split: str) -> list:
    """`problems` problems of `world_seed` x `samples` solutions, sampled in chunks of
    CHUNK_PROBLEMS into `folder` (`completers.world.sample_in_chunks`: only the chunks not
    there yet are sampled); returns the traces in problem order."""
    from completers.base import SamplingParams
    from completers.world import generate_problems, sample_in_chunks

    params = SamplingParams(n=samples, temperature=1.0, max_new_tokens=320)
    return sample_in_chunks(completer, generate_problems(problems, seed=world_seed), samples, folder, params,
                            lambda start: sampling_seed * 1_000_003 + start, chunk=CHUNK_PROBLEMS, split=split)


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
                test_problems: int = TEST_PROBLEMS, val_problems: int = VAL_PROBLEMS) -> dict:
    """{"train": pool traces, "val": ..., "test": {seed: ...}}, sampled where missing."""
    completer = completer_factory()

    def cached(name, seed, problems, samples, sampling_seed, split):
        return sample_split(completer, work / "traces" / name, seed, problems, samples, sampling_seed, split)

    pool_problems = -(-pool_traces // SAMPLES_PER_PROBLEM)
    splits = {"val": cached("val", VAL_SEED, val_problems, EVAL_SAMPLES, 101, "val"),
              "test": {s: cached(f"test_seed{s}", TEST_SEED + s, test_problems, EVAL_SAMPLES, 200 + s, "test")
                       for s in test_seeds}}
    splits["train"] = cached("train", TRAIN_SEED, pool_problems, SAMPLES_PER_PROBLEM, 0, "train")[:pool_traces]
    splits["val"] = with_sympy(splits["val"], work / "traces" / f"val_sympy_{val_problems}.jsonl")
    splits["test"] = {s: with_sympy(t, work / "traces" / f"test_seed{s}_sympy_{test_problems}.jsonl")
                      for s, t in splits["test"].items()}
    return splits
