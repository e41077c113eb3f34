"""`prm eval --benchmark processbench|prmbench|deltabench|socratic-prmbench|hard2verify`: score a
benchmark and report its own metrics (the last three are registered in `evals.newer_benchmarks`).

    prm eval --benchmark processbench --scorer MODEL --out pb/ [--data DIR] [--subsets gsm8k,math]
             [--threshold 0.5 | --threshold-from gsm8k]
    prm eval --benchmark prmbench --scorer checker:sympy --out pbench/ --data /path/prmbench-train
    prm eval --benchmark processbench pb/scored.jsonl --out pb2/   # scores computed elsewhere

Data: `--data` is a folder of the benchmark's release files (ProcessBench: one JSON array
per subset, named after it; PRMBench: its JSONL files), else the hub copy is loaded with
`datasets` (`Qwen/ProcessBench`, `hitsmy/PRMBench_Preview`). A positional file of scored
traces (written by this command or `prm score`) is evaluated as it is, so one can score on a
GPU machine and evaluate anywhere; for ProcessBench, so is a file or folder of predicted first
errors (rows with `label` and `prediction`, as QwenLM/ProcessBench's run_eval.py writes them).

Scoring is resumable: scored traces are appended to `OUT/scored.partial.jsonl` chunk by chunk
(a `prm.io.ResumableOutput`; each chunk sorted by length and batched to `--max-batch-tokens`), and re-running the same
command continues where it stopped; at the end `OUT/scored.jsonl`, `OUT/metrics.json` and
`OUT/report.md` are written.

Threshold rule: a fixed threshold (`--threshold`; default 0.5, and 0.25 for a `checker:`
scorer so that exactly the refuted steps are errors), or for ProcessBench one
chosen on a named subset (`--threshold-from SUBSET`) and applied to the others, that subset
then not being reported; a threshold is never tuned on a subset it is reported for.
ProcessBench: a step is an error when its score is below the threshold. PRMBench: a step is
valid when its score is above it (its release's rule).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from prm.errors import RecordError
from prm.markdown import percent

BENCHMARKS = ("processbench", "prmbench", "deltabench", "socratic-prmbench", "hard2verify")


def _newer(benchmark: str):
    """The registration of a benchmark of `evals.newer_benchmarks`, or None."""
    from evals.newer_benchmarks import NAMES, newer_benchmarks

    return newer_benchmarks()[benchmark] if benchmark in NAMES else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark options of `prm eval` (its --out, --threshold and --batch-size are shared)."""
    group = parser.add_argument_group("benchmarks (--benchmark)")
    group.add_argument("--benchmark", choices=BENCHMARKS, help="run a benchmark end to end with --scorer")
    group.add_argument("--scorer", metavar="SPEC", help="model folder, hub name, checker:sympy[,z3], "
                       "MODEL+checker:sympy or judge:MODEL_OR_URL (an LLM critic: ProcessBench's "
                       "prediction is its voted index; --judge-* options) (see prm.app.scorers)")
    group.add_argument("--family", default="auto", help="the model's family (default: told from its folder; "
                       "see prm.reward.loading.FAMILIES)")
    group.add_argument("--subsets", help="comma-separated ProcessBench subsets, PRMBench / Socratic-PRMBench "
                       "classes or DeltaBench tasks (default: all)")
    group.add_argument("--threshold-from", metavar="SUBSET",
                       help="ProcessBench: choose the threshold on SUBSET, report the others")
    group.add_argument("--chunk", type=int, default=256, help="traces scored between two saves (default 256)")
    from prm.app.score import add_scale_arguments

    add_scale_arguments(group)
    from prm.app.arguments import add_judge_arguments

    add_judge_arguments(parser)
    from prm.app.ray_jobs import add_ray_arguments

    add_ray_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load (or read scored) traces, score what is missing, compute and write the metrics."""
    from prm.app.score import torch_threads

    with torch_threads(args.threads, args.scorer or ""):  # (a scored file: no model)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    subsets = [s.strip() for s in args.subsets.split(",") if s.strip()] if args.subsets else None
    if args.source and args.scorer:
        raise RecordError("give either a file of scored traces or --scorer, not both")
    if args.source and args.benchmark == "processbench" and _is_predictions(args.source):
        return _run_predictions(args, out, subsets)
    if args.source:
        traces = _read_scored(args.source, args.benchmark)
    else:
        if not args.scorer:
            raise RecordError("--benchmark needs --scorer SPEC (or a file of scored traces)")
        from prm.app.ray_jobs import ray_options
        from prm.app.scorers import check_spec

        _, checkers = check_spec(args.scorer)
        if checkers and args.workers and ray_options(args) is None:
            from annotate.checkers.parallel import start_fork_server

            start_fork_server(checkers)  # it imports and warms up the checkers while the benchmark is read
        traces, dropped = load_benchmark(args.benchmark, args.data, subsets)
        if not traces:
            raise RecordError(f"no {args.benchmark} records found", path=args.data)
        with open_output(out) as output:  # one run per OUT
            traces = score_resumably(traces, args, output)
            output.finish(traces)
    if subsets and args.source:
        key = "subset" if args.benchmark == "processbench" else "error_class"
        if _newer(args.benchmark):
            key = _newer(args.benchmark).subset_key
            if key is None:
                raise RecordError(f"{args.benchmark} has no subsets")
        traces = [t for t in traces if t.meta.get(key) in subsets]
    metrics = compute(args.benchmark, traces, args)
    metrics["inputs"] = {"benchmark": args.benchmark, "scorer": args.scorer, "data": args.data,
                         "scored_file": args.source, "traces": len(traces)}
    if not args.source:
        metrics["inputs"]["repeated_records_dropped"] = dropped
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown(args.benchmark, metrics), encoding="utf-8")
    print(summary_line(args.benchmark, metrics, out))
    return 0


def load_benchmark(benchmark: str, data: str | None, subsets: list[str] | None):
    """The benchmark's traces from local release files (`data`) or the hub, and how many
    repeated records were dropped (PRMBench's test release repeats some)."""
    if data is not None and not os.path.exists(data):
        raise RecordError("no such file or folder", path=data)
    if _newer(benchmark):
        return _newer(benchmark).load(data, subsets), 0
    if benchmark == "processbench":
        from evals.processbench import SUBSETS, load_processbench_benchmark

        unknown = [s for s in subsets or [] if s not in SUBSETS]
        if unknown:
            raise RecordError(f"unknown ProcessBench subset {unknown[0]!r}; choose from {', '.join(SUBSETS)}")
        return load_processbench_benchmark(data, subsets), 0
    from evals.prmbench import load_prmbench_release

    traces, dropped = load_prmbench_release(data, subsets)
    if dropped:
        print(f"prmbench: dropped {dropped} repeated record(s) (same classification and idx as an "
              "earlier one), keeping the first, as PRMBench's own loader does")
    return traces, dropped


def open_output(out: Path):
    """OUT/scored.jsonl as a `prm.io.ResumableOutput` streamed to OUT/scored.partial.jsonl and
    resumed by position (scoring goes chunk by chunk in input order)."""
    from prm.io import ResumableOutput

    return ResumableOutput(out / "scored.jsonl", "id", "prm eval --benchmark",
                           partial=out / "scored.partial.jsonl", in_order=True,
                           recorded=lambda trace: trace.meta.get("scored_with"), settings_field="meta.scored_with",
                           remedy="delete it to start again")


def score_resumably(traces, args: argparse.Namespace, output):
    """Score `traces` chunk by chunk into `output` (`open_output`), skipping what it holds;
    every scored trace, in input order (`prm.app.score.score_into`)."""
    import functools

    from prm.app.arguments import judge_config_from_args
    from prm.app.score import score_into
    from prm.app.scorers import is_judge, load_step_scorer

    settings = {"scorer": args.scorer, "family": args.family, "dtype": args.dtype}  # what decides the scores
    judge = judge_config_from_args(args) if is_judge(args.scorer) else None
    if judge is not None:
        settings["judge"] = judge.settings()
    load = functools.partial(load_step_scorer, args.scorer, judge=judge, family=args.family, device=args.device,
                             dtype=args.dtype, max_batch_tokens=args.max_batch_tokens, workers=args.workers)
    score = functools.partial(_score_chunk, batch_size=args.batch_size, settings=settings)
    return score_into(output, traces, settings, args, spec=args.scorer, load=load, score=score,
                      name=f"scoring {args.benchmark}", desc=f"scoring {args.benchmark}")


def _score_chunk(scorer, chunk: list, batch_size: int, settings: dict) -> list:
    """`chunk` scored, each trace marked with what scored it (in one process or a Ray actor)."""
    scorer.score_traces(chunk, batch_size=batch_size)
    for trace in chunk:
        trace.meta["scored_with"] = settings
    return chunk


def _is_predictions(path: str) -> bool:
    from evals.processbench import is_predictions

    if not os.path.exists(path):
        raise RecordError("no such file or folder", path=path)
    return is_predictions(path)


def _run_predictions(args: argparse.Namespace, out: Path, subsets: list[str] | None) -> int:
    """ProcessBench metrics from a file (or folder) of predicted first errors."""
    from evals.processbench import prediction_metrics, read_predictions

    pairs = read_predictions(args.source)
    if subsets:
        pairs = {name: items for name, items in pairs.items() if name in subsets}
    if not pairs:
        raise RecordError("no prediction of the chosen subsets", path=args.source)
    metrics = prediction_metrics(pairs)
    metrics["inputs"] = {"benchmark": "processbench", "predictions": args.source,
                         "traces": sum(len(items) for items in pairs.values())}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown("processbench", metrics), encoding="utf-8")
    print(summary_line("processbench", metrics, out))
    return 0


def _read_scored(path: str, benchmark: str):
    from prm import formats

    if not os.path.exists(path):
        raise RecordError("no such file", path=path)
    traces = formats.read(path)
    needed = "gold_first_error" if benchmark == "processbench" else "error_class"
    if _newer(benchmark):
        needed = _newer(benchmark).marker
    if traces and not all(needed in t.meta for t in traces):
        raise RecordError(f"not scored {benchmark} traces: meta.{needed} is missing (score with "
                          f"`prm eval --benchmark {benchmark} --scorer ...` or `prm score` on its traces)", path=path)
    if not any(s.score is not None for t in traces for s in t.steps):
        raise RecordError("no step has a score", path=path)
    return traces


def default_threshold(spec: str | None) -> float:
    """0.5, or for a checker-only scorer its threshold that makes exactly the refuted steps errors."""
    if spec and spec.startswith("checker:"):
        from annotate.checkers.scorer import DEFAULT_THRESHOLD

        return DEFAULT_THRESHOLD
    return 0.5


def compute(benchmark: str, traces, args: argparse.Namespace) -> dict:
    spec = args.scorer
    if spec is None and traces:  # a scored file: the scorer that wrote it
        spec = (traces[0].meta.get("scored_with") or {}).get("scorer")
    threshold = default_threshold(spec) if args.threshold is None else args.threshold
    if benchmark == "processbench":
        from evals.processbench import processbench_metrics

        return processbench_metrics(traces, threshold, args.threshold_from)
    if args.threshold_from:
        raise RecordError(f"--threshold-from is for ProcessBench; {benchmark} uses a fixed threshold")
    if _newer(benchmark):
        return _newer(benchmark).metrics(traces, threshold)
    from evals.prmbench import prmbench_metrics

    return prmbench_metrics(traces, threshold)


def report_markdown(benchmark: str, metrics: dict) -> str:
    """A short report: one table, the threshold rule and what was skipped."""
    title = _newer(benchmark).title if _newer(benchmark) else "ProcessBench" if benchmark == "processbench" else "PRMBench"
    lines = [f"# {title}", ""]
    inputs = metrics.get("inputs", {})
    source = inputs.get('scorer') or inputs.get('scored_file') or inputs.get('predictions')
    threshold = "none" if metrics["threshold"] is None else f"{metrics['threshold']:.4g}"
    lines.append(f"Scorer: `{source}`; {inputs.get('traces')} traces; "
                 f"threshold {threshold} ({metrics.get('threshold_rule', 'fixed')}); "
                 f"{metrics['skipped']} trace(s) left out (a step without a score).")
    lines.append("")
    if _newer(benchmark):
        lines += _newer(benchmark).report(metrics)
    elif benchmark == "processbench":
        lines += ["| subset | erroneous | correct | error acc. | correct acc. | F1 |", "|---|---|---|---|---|---|"]
        rows = list(metrics["subsets"].items()) + [("pooled", metrics["overall"])]
        for name, row in rows:
            lines.append(f"| {name} | {row['error_traces']} | {row['correct_traces']} | {percent(row['error_accuracy'])} "
                         f"| {percent(row['correct_accuracy'])} | {percent(row['f1'])} |")
        lines += ["", f"Average F1 over subsets: {percent(metrics['average_f1'])}"]
    else:
        lines += ["| class | samples | PRMScore | F1 | negative F1 | first-error acc. | similarity |",
                  "|---|---|---|---|---|---|---|"]
        rows = list(metrics["classes"].items()) + [("overall", metrics["overall"])]
        for name, row in rows:
            lines.append(f"| {name} | {row['samples']} | {percent(row['prm_score'])} | {percent(row['f1'])} "
                         f"| {percent(row['negative_f1'])} | {percent(row['first_error_acc'])} | {percent(row['similarity'])} |")
    return "\n".join(lines) + "\n"


def summary_line(benchmark: str, metrics: dict, out: Path) -> str:
    if _newer(benchmark):
        parts = [_newer(benchmark).summary(metrics)]
    elif benchmark == "processbench":
        parts = [f"{name} F1 {percent(row['f1'])}" for name, row in metrics["subsets"].items()]
        parts.append(f"average F1 {percent(metrics['average_f1'])}")
    else:
        parts = [f"PRMScore {percent(metrics['overall']['prm_score'])}"]
    return f"wrote {out / 'report.md'} ({', '.join(parts)})"
