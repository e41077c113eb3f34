"""`prm score`: write a reward model's per-step scores into trace records.

    prm score MODEL IN OUT [--format auto|reward-model|math-shepherd|token-classification]
              [--aggregation min|prod|last|mean] [--batch-size N] ...

MODEL is a folder written by `prm train` (or any `RewardModel`), a published PRM in the
Math-Shepherd or TRL token-classification format, or a hub name. Every step of every
record in IN gets `score` (None for a step that did not fit in the model's max length);
`meta["solution_score"]` holds the aggregated score and `meta["reward_model"]` says which
model and aggregation produced it. OUT is written atomically (JSONL, Parquet or a
`datasets` folder). Long runs are resumable: finished records are appended to
`OUT.partial.jsonl` in chunks, and re-running the same command skips them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from prm.errors import RecordError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="reward model folder, published PRM or hub name")
    parser.add_argument("input", metavar="IN", help="traces to score")
    parser.add_argument("output", metavar="OUT", help="where to write the scored traces")
    parser.add_argument("--format", default="auto",
                        choices=["auto", "reward-model", "math-shepherd", "token-classification"],
                        help="the model's format (default: told from its config.json)")
    parser.add_argument("--aggregation", choices=["min", "prod", "last", "mean"],
                        help="step -> solution aggregation (default: the model's own, else min)")
    parser.add_argument("--batch-size", type=int, default=16, help="traces per batch (default 16)")
    parser.add_argument("--chunk", type=int, default=512,
                        help="records scored between two saves of the partial output (default 512)")
    parser.add_argument("--max-length", type=int, help="published formats: longest input in tokens")
    parser.add_argument("--step-tag", default=" ки", help="math-shepherd: tag after each step (default ' ки')")
    parser.add_argument("--step-separator", default="\n",
                        help="token-classification: separator TRL's PRMTrainer used (default '\\n')")
    parser.add_argument("--threads", type=int, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from prm.io import dumps, read_traces, read_records, write_traces
    from prm.reward.published import load_scorer
    from prm.records import Trace

    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.path.exists(args.input):
        raise RecordError("no such file", path=args.input)
    traces = read_traces(args.input)
    partial = Path(str(args.output) + ".partial.jsonl")
    done = list(read_records(partial, Trace.from_dict)) if partial.exists() else []
    if [t.id for t in done] != [t.id for t in traces[:len(done)]]:
        raise RecordError(f"{partial} does not belong to this input; delete it to start again", path=str(partial))

    kwargs = {}
    if args.format in ("auto", "math-shepherd", "token-classification"):
        kwargs = {"max_length": args.max_length}
    scorer = _load(load_scorer, args, kwargs)
    how = args.aggregation or scorer.aggregation
    bar = tqdm(total=len(traces), initial=len(done), desc="scoring", unit="trace")
    partial.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "a", encoding="utf-8") as handle:
        for start in range(len(done), len(traces), args.chunk):
            chunk = traces[start:start + args.chunk]
            scorer.score_traces(chunk, batch_size=args.batch_size)
            for trace in chunk:
                trace.meta["solution_score"] = scorer.solution_score(trace.scores, how)
                trace.meta["reward_model"] = {"model": args.model, "aggregation": how}
                handle.write(dumps(trace) + "\n")
            handle.flush()
            bar.update(len(chunk))
    bar.close()
    scored = list(read_records(partial, Trace.from_dict))
    write_traces(args.output, scored)
    partial.unlink()
    unscored = sum(s.score is None for t in scored for s in t.steps)
    note = f" ({unscored} step(s) too long for the model have no score)" if unscored else ""
    print(f"prm score: {len(scored)} record(s) scored with {args.model} ({how}) -> {args.output}{note}")
    return 0


def _load(load_scorer, args, kwargs):
    from prm.reward.published import detect_format

    try:
        kind = detect_format(args.model) if args.format == "auto" else args.format
    except (OSError, ValueError) as err:
        raise RecordError(f"cannot open the model: {err}", path=args.model) from None
    if kind == "math-shepherd":
        kwargs["step_tag"] = args.step_tag
    elif kind == "token-classification":
        kwargs["step_separator"] = args.step_separator
    else:
        kwargs = {}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return load_scorer(args.model, kind, **kwargs)
    except OSError as err:
        raise RecordError(f"cannot load the model: {err}", path=args.model) from None
