"""`prm annotate IN OUT`: label the steps of traces with a completer, resumably.

Examples:

    prm annotate traces.jsonl labelled.jsonl --completer tiny-gsm --method mc --n 8
    prm annotate ../shared/data/gsm8k/test.jsonl gsm8k.labelled.jsonl --method binary --limit 100
    prm annotate big.jsonl part0.jsonl --completer http://127.0.0.1:8000/v1 --shard 0/4 --workers 8
    prm merge labelled.jsonl part0.jsonl part1.jsonl part2.jsonl part3.jsonl --input big.jsonl
    prm annotate traces.jsonl judged.jsonl --method judge --judge http://127.0.0.1:8000/v1 --judge-samples 8
    prm annotate big.jsonl labelled.jsonl --completer vllm:Qwen/Qwen2.5-Math-7B-Instruct --ray --ray-address auto --gpus-per-actor 1

Interrupt it at any time; the same command resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys

from annotate.config import AnnotateConfig
from annotate.runner import input_formats
from prm.app.arguments import (add_judge_arguments, count, judge_config_from_args, non_negative_float,
                               positive_int, probability, shard)
from prm.app.ray_jobs import add_ray_arguments, ray_options

DEFAULTS = AnnotateConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = __doc__.split("Examples:", 1)[1]
    parser.add_argument("input", metavar="IN", help="traces to label: native JSONL, a `datasets` folder, Parquet, "
                        "or any layout of --format (GSM8K, MATH500, ...); each needs a reference answer")
    parser.add_argument("output", metavar="OUT", help="labelled traces, JSONL, written one trace at a time")
    parser.add_argument("--completer", default="tiny-gsm",
                        help="tiny-gsm | a model folder | http://host:port/v1 (default: %(default)s)")
    parser.add_argument("--method", choices=["mc", "binary", "judge"], default=DEFAULTS.method,
                        help="mc: per-step Monte Carlo (Math-Shepherd); binary: binary search for the "
                        "first error (OmegaPRM); judge: an LLM judge's critiques name the first error "
                        "(--judge; no reference answer needed) (default: %(default)s)")
    parser.add_argument("--judge", metavar="MODEL_OR_URL",
                        help="--method judge: the judge, any completer (a model folder, smollm2-135m, "
                        "http://host:port/v1, vllm:MODEL); --completer is then not used")
    parser.add_argument("--n", type=positive_int, default=DEFAULTS.n,
                        help="completions per step (mc) or per probe (binary) (default: %(default)s)")
    parser.add_argument("--min-successes", type=positive_int, default=DEFAULTS.min_successes, metavar="M",
                        help="mc: a step is good when at least M of its N completions reach the answer "
                        "(default: %(default)s, Math-Shepherd's hard label)")
    parser.add_argument("--temperature", type=non_negative_float, default=DEFAULTS.temperature,
                        help="sampling temperature, >= 0 (default: %(default)s)")
    parser.add_argument("--top-p", type=probability, default=DEFAULTS.top_p, help="in (0, 1] (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=DEFAULTS.max_new_tokens, metavar="T",
                        help="tokens per completion at most (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed,
                        help="run seed; each trace's samples depend only on (seed, trace id)")
    parser.add_argument("--max-rollouts", type=count, default=None, metavar="R",
                        help="at most this many completions per trace (never exceeded)")
    parser.add_argument("--max-tokens", type=count, default=None, metavar="T",
                        help="at most this many generated tokens per trace (never exceeded: a completion "
                        "starts only if max-new-tokens still fit)")
    parser.add_argument("--keep-texts", action="store_true", help="keep every completion's full text")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore rollouts already in the input (default: count them as evidence)")
    binary = parser.add_argument_group("binary search")
    binary.add_argument("--after-error", choices=["negative", "unknown"], default=DEFAULTS.after_error,
                        help="label of the steps after the first error (binary and judge) (default: %(default)s)")
    binary.add_argument("--search-correct", action="store_true",
                        help="search traces whose final answer is already correct too (default: label "
                        "them all positive without rollouts)")
    binary.add_argument("--probe-first", type=positive_int, default=None, metavar="K",
                        help="completions in a probe's first call; the rest only if none succeeds "
                        "(default: n/4 rounded up)")
    add_judge_arguments(parser, seed=False)  # --seed seeds the judge too
    run = parser.add_argument_group("running")
    run.add_argument("--shard", type=shard, default=None, metavar="I/N",
                     help="annotate only shard I of N (by a hash of the trace id)")
    run.add_argument("--workers", type=positive_int, default=None, metavar="W",
                     help="traces annotated at once, in threads (default: 64 for a local transformers model, "
                          "whose calls are merged into one batch; 1 otherwise: raise it for HTTP completers)")
    run.add_argument("--threads", type=int, default=1, metavar="T",
                     help="torch threads of a local model (0: torch's default, the machine's cores). Default 1: "
                          "annotation's merged calls are many small matrix products, where a second thread costs "
                          "more than it gives on tiny-gsm (1.8-2x the tokens/s of 2 threads on 2 cores: "
                          "bench/annotate.py, prm demo); raise it for larger models")
    run.add_argument("--format", choices=input_formats(), default="auto",
                        help="input layout (default: told from the fields)")
    run.add_argument("--limit", type=positive_int, default=None, metavar="N", help="only the first N input traces")
    run.add_argument("--grading-timeout", type=float, default=DEFAULTS.grading_timeout, metavar="S",
                     help="seconds per answer comparison (default: %(default)s)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    http = parser.add_argument_group("HTTP completers (--completer http://...)")
    http.add_argument("--timeout", type=float, default=None, metavar="S",
                      help="seconds to wait for one response (default: 120)")
    http.add_argument("--max-retries", type=count, default=None, metavar="K",
                      help="tries after the first one, for a failed request (default: 4)")
    add_ray_arguments(parser)


def config_from_args(args: argparse.Namespace) -> AnnotateConfig:
    return AnnotateConfig(method=args.method, n=args.n, min_successes=args.min_successes,
                          temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed, max_rollouts=args.max_rollouts,
                          max_tokens=args.max_tokens, keep_texts=args.keep_texts, reuse_rollouts=not args.fresh,
                          after_error=args.after_error, skip_correct=not args.search_correct,
                          probe_first=args.probe_first, grading_timeout=args.grading_timeout,
                          judge=judge_config_from_args(args))


def run(args: argparse.Namespace) -> int:
    from prm.errors import RecordError

    from annotate.runner import load_input, run as run_annotation, samples_reproducible

    from prm.io import check_output, refuse_output_over_inputs

    check_output(args.output, file=True)  # JSONL, appended to: never a folder
    refuse_output_over_inputs(args.output, [args.input, args.completer, args.judge])
    if args.method == "mc" and args.min_successes > args.n:
        raise RecordError(f"--min-successes {args.min_successes} is more than --n {args.n}: no step "
                          "could ever be labelled good")
    config = config_from_args(args)
    if config.method == "judge":
        if not args.judge:
            raise RecordError("--method judge needs --judge MODEL_OR_URL", field="--judge")
        args.completer = args.judge  # the judge is the completer of this run
    elif args.judge:
        raise RecordError("--judge is for --method judge", field="--judge")
    traces = load_input(args.input, args.format, args.limit, need_reference=config.method != "judge")
    if not traces:
        raise RecordError("no traces to annotate", path=args.input)

    from completers.loading import load_completer
    from completers.openai_completer import CompletionError
    from prm.errors import opening_model

    http_options = {name: getattr(args, name) for name in ("timeout", "max_retries")
                    if getattr(args, name) is not None}
    is_http = args.completer.strip().startswith(("http://", "https://"))
    if http_options and not is_http:
        raise RecordError(f"--timeout and --max-retries apply to HTTP completers, not {args.completer!r}")
    if ray_options(args) is not None:  # the completer is loaded in each Ray actor
        from prm.app.ray_jobs import annotate_on_ray

        print(annotate_on_ray(args, traces, config, http_options).text())
        return 0
    try:
        if is_http:
            completer = load_completer(args.completer, **http_options)
        else:
            if args.threads > 0:
                import torch

                torch.set_num_threads(args.threads)
            with opening_model(args.completer):  # a missing or corrupt model: one line naming it
                completer = load_completer(args.completer)
    except (OSError, ValueError) as err:
        print(f"prm annotate: error: cannot load completer {args.completer!r}: {err}", file=sys.stderr)
        return 1
    try:
        if not samples_reproducible(completer):
            kind = getattr(getattr(completer, "server_kind", None), "name", "its server")
            print(f"prm annotate: note: {args.completer} ({kind}) does not reproduce a "
                  "sample from its seed: if this run stops, a resume re-samples the unfinished traces "
                  "(finished ones are kept as written)", file=sys.stderr)
        summary = run_annotation(traces, args.output, completer, config, completer_spec=args.completer,
                                 shard=args.shard, workers=args.workers, progress=not args.no_progress)
    except (CompletionError, RuntimeError) as err:
        if not isinstance(err, CompletionError) and not isinstance(err.__cause__, CompletionError):
            raise  # a bug: keep its traceback
        print(f"prm annotate: error: {err}\nprm annotate: the traces finished so far are kept in "
              f"{args.output}; re-run the same command to resume", file=sys.stderr)
        return 1
    finally:
        completer.close()
    print(summary.text())
    return 0
