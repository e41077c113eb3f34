"""`prm select POOL OUT --scorer MODEL --budget-rollouts R`: the unlabelled traces worth labelling.

Examples:

    prm select pool.jsonl round1.jsonl --scorer prm_round0/ --budget-rollouts 2000 --exclude labelled.jsonl
    prm annotate round1.jsonl round1.labelled.jsonl --method mc --n 8
    prm select pool.jsonl baseline.jsonl --strategy random --budget-rollouts 2000 --seed 1

Active learning (ActPRM): the current PRM scores every pool trace, and the traces it is least
sure of (the largest step-score entropy) are chosen, most uncertain first, while their
estimated labelling cost fits in the budget (Monte Carlo: N per step; binary search: N per
probe, about log2(steps + 1) probes). Label them with `prm annotate`, retrain, and select
again. `--strategy random` is the baseline (no scorer needed). See `annotate.select`.
"""

from __future__ import annotations

import argparse

from prm.app.arguments import count, positive_int
from prm.errors import RecordError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from annotate.select import STRATEGIES

    parser.epilog = __doc__.split("Examples:", 1)[1]
    parser.add_argument("pool", metavar="POOL", help="unlabelled traces to choose from (any format prm convert reads)")
    parser.add_argument("output", metavar="OUT", help="the chosen traces, most uncertain first (JSONL, Parquet, folder)")
    parser.add_argument("--budget-rollouts", type=count, required=True, metavar="R",
                        help="rollouts the chosen traces may cost in all (estimated, see --method)")
    parser.add_argument("--scorer", metavar="MODEL", help="the current PRM (any scorer prm score takes); "
                        "needed for --strategy uncertain")
    parser.add_argument("--strategy", choices=STRATEGIES, default="uncertain",
                        help="uncertain: the PRM's least certain traces first; random: the baseline "
                        "(default: %(default)s)")
    parser.add_argument("--method", choices=["mc", "binary"], default="mc",
                        help="the labelling method whose cost is estimated (default: %(default)s)")
    parser.add_argument("--n", type=positive_int, default=8, help="completions per step / probe (default: %(default)s)")
    parser.add_argument("--exclude", metavar="FILE", nargs="*", default=[],
                        help="traces already labelled (matched by id) are not chosen again")
    parser.add_argument("--seed", type=int, default=0, help="seed of --strategy random (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="scoring batch size (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from annotate.select import select
    from prm import formats
    from prm.io import check_output, refuse_output_over_inputs, write_traces

    check_output(args.output)  # before any work: a folder of the user's is never replaced
    refuse_output_over_inputs(args.output, [args.pool, *args.exclude, args.scorer])
    for path in [args.pool, *args.exclude]:
        if not Path(path).exists():
            raise RecordError("no such file", path=path)
    if args.strategy == "uncertain" and not args.scorer:
        raise RecordError("--strategy uncertain needs --scorer MODEL (the current PRM)", field="--scorer")
    done = {t.id for path in args.exclude for t in formats.read(path)}
    pool = [t for t in formats.read(args.pool) if t.id not in done]
    if not pool:
        raise RecordError("no trace left to choose from", path=args.pool)
    if args.strategy == "uncertain":
        from prm.app.scorers import load_step_scorer

        load_step_scorer(args.scorer).score_traces(pool, batch_size=args.batch_size, progress=True)
    chosen = select(pool, args.budget_rollouts, strategy=args.strategy, method=args.method, n=args.n, seed=args.seed)
    for trace, uncertainty, estimate in zip(chosen.traces, chosen.uncertainty, chosen.estimated):
        trace.meta["selection"] = {"strategy": args.strategy, "scorer": args.scorer,
                                   "uncertainty": round(uncertainty, 6), "estimated_rollouts": estimate}
        for step in trace.steps:  # the PRM's scores chose the trace; they are not labels
            step.score = None
    write_traces(args.output, chosen.traces)
    print(f"chose {len(chosen.traces)} of {len(pool)} trace(s) ({len(done)} excluded as already labelled), "
          f"about {chosen.spent} of {args.budget_rollouts} rollouts ({args.method}, n={args.n}) -> {args.output}")
    return 0
