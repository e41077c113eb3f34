"""`prm eval`: measure scored (or labelled) traces against gold and write a report.

    prm eval SCORED.jsonl --out report/                  # scores already in the records
    prm eval MODEL_DIR --data test.jsonl --out report/   # score with a reward model first
    prm eval MODEL_DIR --data processbench/ --out pb/    # ProcessBench's released files
    prm eval --benchmark processbench --scorer MODEL --out pb/   # a benchmark end to end
                                                          # (prm.app.benchmark)

Gold labels come from `--gold`: "meta" (meta.gold_labels / gold_first_error, the default),
"labels" (every step hard label), a label source (e.g. "human"), or a file of the same
traces (matched by id) holding the gold labels. Thresholds are `--threshold`, else chosen
on `--val` traces, else on a split of the input by trace id; the report says which.

Scoring here is for small sets; for a large one run `prm score` first (it can be
interrupted and resumed) and evaluate the scored file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from evals.gold import attach_gold
from evals.step_metrics import OBJECTIVES
from prm.errors import RecordError
from prm.records import LABEL_SOURCES, Trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SCORED_DATA_OR_MODEL", nargs="?",
                        help="scored/labelled traces (native records, or any format prm convert reads, "
                             "e.g. ProcessBench or PRMBench files); with --data, a reward model folder; "
                             "with --benchmark, optional scored benchmark traces")
    parser.add_argument("--data", metavar="IN", help="traces to score with the model SOURCE")
    parser.add_argument("--val", metavar="VAL", help="validation traces to choose thresholds on (scored "
                        "by the model too when SOURCE is a model); default: a split of the input by id")
    parser.add_argument("--gold", default="meta",
                        help="where gold labels are: meta (default), labels, a label source such as "
                             "human, or a file of the same traces holding gold labels")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for report.md, metrics.json, plots")
    parser.add_argument("--threshold", type=float, help="fixed score threshold (step bad when score < it)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="accuracy",
                        help="what the step threshold maximises on validation (default accuracy)")
    parser.add_argument("--val-fraction", type=float, default=0.5,
                        help="share of traces used for thresholds when --val is not given (default 0.5)")
    parser.add_argument("--n", type=int, nargs="+", metavar="N",
                        help="best-of-N sizes (default 1 2 4 ... up to the traces per problem)")
    parser.add_argument("--repeats", type=int, default=64, help="random subsets per problem and N (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the best-of-N subsets (default 0)")
    parser.add_argument("--orm", metavar="MODEL", help="an outcome reward model whose last-step score "
                        "becomes meta.orm_score (for the ORM best-of-N line)")
    parser.add_argument("--batch-size", type=int, default=16, help="scoring batch size (default 16)")
    from prm.app import benchmark

    benchmark.add_arguments(parser)


def load_traces(path: str) -> list[Trace]:
    """Traces from any format `prm convert` reads (guessed from the fields). ProcessBench
    files, a folder of them, or a hub split (`processbench:gsm8k`) are tagged with their
    subset, which ProcessBench reports F1 per."""
    from evals.processbench import is_processbench, load_processbench
    from prm import formats

    if path.startswith("processbench:") or is_processbench(path):
        return load_processbench(path.removeprefix("processbench:"))
    return formats.read(path)


def load_model(name: str):
    """A step scorer: a `RewardModel` folder or a published PRM (folder, short name or hub name)."""
    from prm.app.scorers import load_step_scorer
    from prm.errors import opening_model

    with opening_model(name):  # a missing or corrupt model is one line naming it
        return load_step_scorer(name)


def score_with(model, traces: list[Trace], batch_size: int) -> list[Trace]:
    """Write the model's step scores into `traces` (steps cut by truncation get None). A
    calibrated model's raw scores are kept in meta["uncalibrated_scores"], so that the report
    gives ECE and Brier before and after calibration."""
    from prm.reward.calibration import CalibratedScorer

    if not isinstance(model, CalibratedScorer):
        return model.score_traces(traces, batch_size=batch_size, progress=True)
    raw, calibrated = model.raw_and_calibrated([(t.problem, t.step_texts) for t in traces], batch_size, True)
    for trace, before, after in zip(traces, raw, calibrated):
        trace.meta["uncalibrated_scores"] = before
        for step, value in zip(trace.steps, after):
            step.score = value
    return traces


def run(args: argparse.Namespace) -> int:
    from prm.io import refuse_output_over_inputs

    gold_file = args.gold if args.gold not in ("meta", "labels") else None
    refuse_output_over_inputs(args.out, [args.source, args.data, args.val, args.orm, gold_file,
                                         args.scorer])
    if args.benchmark:  # `prm eval --benchmark ...`: prm.app.benchmark
        from prm.app import benchmark

        return benchmark.run(args)
    if not args.source:
        raise RecordError("give SCORED_DATA_OR_MODEL, or --benchmark with --scorer")
    if args.ray:
        raise RecordError("--ray scores a benchmark (--benchmark --scorer); score other traces with `prm score --ray`")
    traces = load_traces(args.data if args.data else args.source)
    val = load_traces(args.val) if args.val else None
    inputs = {"data": args.data or args.source}
    groups = [traces] + ([val] if val is not None else [])
    if args.data:
        inputs["model"] = args.source
        model = load_model(args.source)
        for group in groups:
            score_with(model, group, args.batch_size)
    if args.orm:
        inputs["orm"] = args.orm
        orm = load_model(args.orm)
        for group in groups:
            add_orm_scores(orm, group, args.batch_size)
    gold = args.gold
    if gold not in ("meta", "labels", *LABEL_SOURCES) and not gold.startswith("checker:") \
            and not os.path.exists(gold):
        raise RecordError(f"--gold must be meta, labels, a label source ({', '.join(LABEL_SOURCES)}, "
                          f"checker:NAME) or an existing file; got {gold!r}")
    if gold not in ("meta", "labels") and os.path.exists(gold):
        gold_traces = load_traces(gold)
        inputs["gold_file"] = gold
        for group in groups:
            attach_gold(group, gold_traces, path=gold)
        gold = "meta"
    if val is not None:
        inputs["validation"] = args.val
    from evals.report import EvalConfig, write_report  # (scikit-learn, matplotlib: seconds to import)

    config = EvalConfig(gold=gold, threshold=args.threshold, objective=args.objective,
                        val_fraction=args.val_fraction, ns=args.n, repeats=args.repeats, seed=args.seed)
    metrics = write_report(args.out, traces, config, val, inputs)
    print(summary_line(metrics, Path(args.out)))
    return 0


def add_orm_scores(orm, traces: list[Trace], batch_size: int) -> None:
    """meta.orm_score = the outcome reward model's solution score (its last step's score);
    the traces' own step scores are kept."""
    items = [(t.problem, t.step_texts) for t in traces]
    for trace, scores in zip(traces, orm.score_many(items, batch_size, progress=True)):
        trace.meta["orm_score"] = orm.solution_score(scores)


def summary_line(metrics: dict, out: Path) -> str:
    parts = []
    if "step" in metrics:
        parts.append(f"step accuracy {100 * metrics['step']['accuracy']:.1f}%")
        if metrics["step"]["auroc"] is not None:
            parts.append(f"AUROC {metrics['step']['auroc']:.3f}")
    first = metrics.get("first_error", {})
    if first.get("average_f1") is not None:
        parts.append(f"ProcessBench F1 {100 * first['average_f1']:.1f}%")
    if "label_quality" in metrics and metrics["label_quality"]["agreement"] is not None:
        parts.append(f"label agreement {100 * metrics['label_quality']['agreement']:.1f}%")
    return f"wrote {out / 'report.md'} ({', '.join(parts) or 'see report'})"
