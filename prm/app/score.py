"""`prm score`: write a reward model's per-step scores into trace records.

    prm score SCORER IN OUT [--format auto|FAMILY] [--aggregation min|prod|last|mean]
              [--batch-size N] [--max-batch-tokens N] [--dtype bf16] [--device cuda] ...

SCORER is a folder written by `prm train` (or any `RewardModel`), a published PRM
(Math-Shepherd, TRL token classification, Qwen2.5-Math-PRM, Skywork-PRM, RLHFlow; the
family is told from the folder, see `prm.reward.loading`), a hub name, `checker:sympy[,z3]`
(checkers alone) or `MODEL+checker:sympy` (the model, with checker-refuted steps set to 0);
or `judge:MODEL_OR_URL` (an LLM judge: the step score is the share of its critiques that put
the first error after the step; `--judge-*` options); see `prm.app.scorers`. Every step of every record in IN gets `score` (None for a step that
did not fit in the model's max length); `meta["solution_score"]` holds the aggregated score
and `meta["reward_model"]` says which model and aggregation produced it. OUT is written
atomically (JSONL, Parquet or a `datasets` folder).

At scale: each chunk is sorted by length and batched to a token budget (`--max-batch-tokens`),
the model runs on CUDA when present (`--dtype bf16` halves its memory), and on CPU torch uses
every core unless `--threads` says otherwise. Long runs are resumable: finished records are
appended to `OUT.partial.jsonl` in chunks (a `prm.io.ResumableOutput`), and re-running the
same command skips them.
A partial output made with another model or other scoring options is refused, never mixed
in (each record's `meta.reward_model.settings` says what made it), and so is a second run
writing the same OUT (its lock). An input with no records is an error unless
`--allow-empty`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prm.aggregate import AGGREGATIONS
from prm.errors import RecordError
from prm.reward.loading import FAMILIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="SCORER", help="reward model folder, published PRM, hub name, "
                        "checker:sympy[,z3], MODEL+checker:sympy or judge:MODEL_OR_URL")
    parser.add_argument("input", metavar="IN", help="traces to score")
    parser.add_argument("output", metavar="OUT", help="where to write the scored traces")
    parser.add_argument("--format", "--family", dest="format", default="auto", choices=["auto", *FAMILIES],
                        help="the model's family (default: told from its config.json and tokenizer)")
    parser.add_argument("--aggregation", choices=AGGREGATIONS,
                        help="step -> solution aggregation (default: the model's own, else min)")
    parser.add_argument("--batch-size", type=int, default=16, help="traces per batch (default 16)")
    parser.add_argument("--chunk", type=int, default=512,
                        help="records scored between two saves of the partial output (default 512)")
    parser.add_argument("--max-length", type=int, help="published formats: longest input in tokens")
    parser.add_argument("--step-tag", default=" ки", help="math-shepherd: tag after each step (default ' ки')")
    parser.add_argument("--step-separator", default="\n",
                        help="token-classification: separator TRL's PRMTrainer used (default '\\n')")
    parser.add_argument("--allow-empty", action="store_true",
                        help="an input with no records writes an empty output (default: an error)")
    add_scale_arguments(parser)
    from prm.app.arguments import add_judge_arguments

    add_judge_arguments(parser)
    from prm.app.ray_jobs import add_ray_arguments

    add_ray_arguments(parser)


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for scoring at scale, shared with `prm eval --benchmark`."""
    parser.add_argument("--max-batch-tokens", type=int,
                        help="padded tokens per forward pass (default: the scorer's, 16384)")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"],
                        help="cast the model (e.g. bf16 on CUDA; default: the checkpoint's own)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: every core)")
    from annotate.checkers.parallel import default_workers
    from prm.app.arguments import positive_int

    parser.add_argument("--workers", type=positive_int, default=default_workers(), metavar="N",
                        help="checker: scorers: checker processes, as in prm check (default: one per CPU, "
                             "here %(default)s)")


@contextlib.contextmanager
def torch_threads(threads: int | None, spec: str | None = None):
    """Torch uses `threads` CPU threads (every core when not given) inside the block; the
    previous count comes back after it (the command may run inside another program). With
    a scorer `spec` that loads no model (checker:...), torch is not even imported."""
    from prm.app.scorers import loads_model

    if spec is not None and not loads_model(spec):
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run(args: argparse.Namespace) -> int:
    with torch_threads(args.threads, args.model):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from prm import formats
    from prm.io import check_output, refuse_output_over_inputs, write_traces

    check_output(args.output)  # before any work: a folder of the user's is never replaced
    refuse_output_over_inputs(args.output, [args.input, args.model])
    if not os.path.exists(args.input):
        raise RecordError("no such file", path=args.input)
    traces = formats.read(args.input)
    if not traces:
        if not args.allow_empty:
            raise RecordError("holds no records: nothing to score (pass --allow-empty to write an empty "
                              "output anyway)", path=args.input)
        print(f"prm score: {args.input} holds no records; writing an empty {args.output} (--allow-empty)")
    with open_output(args.output) as output:  # a second run on the same OUT is refused
        if not traces:
            write_traces(args.output, [])
            return 0
        return _score(args, traces, output)


def partial_path(output: str | os.PathLike) -> Path:
    """Where scored records are streamed before OUT is written: OUT.partial.jsonl."""
    return Path(str(output) + ".partial.jsonl")


def open_output(output: str | os.PathLike):
    """OUT as a `prm.io.ResumableOutput` streamed to OUT.partial.jsonl, resumed by position
    (scoring goes chunk by chunk in input order): locked, its torn line repaired, and the
    records there checked to be this input's first ones, scored with the same settings."""
    from prm.io import ResumableOutput

    return ResumableOutput(output, "id", "prm score", partial=partial_path(output), in_order=True,
                           recorded=lambda trace: (trace.meta.get("reward_model") or {}).get("settings"),
                           settings_field="meta.reward_model.settings", remedy="delete it to start again")


def run_settings(args: argparse.Namespace) -> dict:
    """What decides the scores (recorded in each record's meta.reward_model.settings and
    compared when a partial output is resumed); batch sizes, device and threads do not."""
    model = args.model
    if os.path.exists(model):
        model = os.path.abspath(model)
    settings = {"model": model, "format": args.format, "aggregation": args.aggregation,
                "max_length": args.max_length, "step_tag": args.step_tag, "step_separator": args.step_separator,
                "dtype": args.dtype}
    from prm.app.scorers import is_judge

    if is_judge(args.model):
        from prm.app.arguments import judge_config_from_args

        settings["judge"] = judge_config_from_args(args).settings()
    return settings


def _score(args: argparse.Namespace, traces: list, output) -> int:
    import functools

    settings = run_settings(args)
    scored = score_into(output, traces, settings, args, spec=args.model, load=functools.partial(load_for, args),
                        score=functools.partial(score_chunk, args=args, settings=settings),
                        name="prm score", desc="scoring")
    output.finish(scored)
    unscored = sum(s.score is None for t in scored for s in t.steps)
    note = f" ({unscored} step(s) too long for the model have no score)" if unscored else ""
    how = scored[0].meta["reward_model"]["aggregation"] if scored else args.aggregation
    print(f"prm score: {len(scored)} record(s) scored with {args.model} ({how}) -> {args.output}{note}")
    return 0


def score_into(output, traces: list, settings: dict, args: argparse.Namespace, *, spec: str,
               load: Callable[[], Any], score: Callable[[Any, list], list], name: str, desc: str) -> list:
    """Score what `output` (a `prm.io.ResumableOutput` resumed by position) does not hold yet,
    `args.chunk` traces at a time, in this process or in Ray actors (`--ray`), appending each
    chunk as soon as it is scored; returns every scored trace, in input order. `load()` builds
    the scorer `spec` names (in each actor on Ray), `score(scorer, chunk)` scores one chunk;
    `name` names a Ray run in its messages, `desc` the progress bar. Shared by `prm score`
    and `prm eval --benchmark`."""
    from prm.app.ray_jobs import ray_options
    from prm.errors import opening_model
    from prm.progress import progress_bar

    done = output.resume([t.id for t in traces], settings)
    chunks = [traces[start:start + args.chunk] for start in range(len(done), len(traces), args.chunk)]
    if not chunks:
        return output.read_back()
    status = None
    if ray_options(args) is not None:  # the scorer is loaded in each Ray actor
        from prm.app.ray_jobs import score_chunks_on_ray

        pool, scored_chunks = score_chunks_on_ray(args, chunks, load, score, name)
        status = pool.status
    else:
        with opening_model(spec):
            scorer = load()
        scored_chunks = (score(scorer, chunk) for chunk in chunks)
    bar = progress_bar(len(traces), initial=len(done), desc=desc, unit="trace")
    for chunk in scored_chunks:
        output.append(*chunk)
        bar.update(len(chunk))
        if status is not None:
            bar.set_postfix_str(status(), refresh=False)
    bar.close()
    return output.read_back()


def score_chunk(scorer, chunk: list, args: argparse.Namespace, settings: dict) -> list:
    """`chunk` scored by `scorer`, each trace with its solution score and what made it; a
    non-finite score stops the run before any of the chunk is written."""
    import math

    how = args.aggregation or scorer.aggregation
    scorer.score_traces(chunk, batch_size=args.batch_size)
    for trace in chunk:
        bad = next((i for i, score in enumerate(trace.scores)
                    if score is not None and not math.isfinite(score)), None)
        if bad is not None:
            raise RecordError(f"the model gave a non-finite score ({trace.scores[bad]}) to step {bad} of "
                              f"trace {trace.id!r}: its weights may be broken; nothing of this chunk "
                              "was written", path=args.model)
        trace.meta["solution_score"] = scorer.solution_score(trace.scores, how)
        trace.meta["reward_model"] = {"model": args.model, "aggregation": how, "settings": settings}
    return chunk


# Words in a model's name that say it was trained as a PRM read through its LM head
# (peiyi9979/math-shepherd-mistral-7b-prm, RLHFlow/Llama3.1-8B-PRM-Deepseek-Data).
PRM_NAME_WORDS = ("prm", "shepherd", "reward")


def refuse_a_plain_causal_lm(model: str, family: str) -> None:
    """A causal LM is read as a Math-Shepherd or RLHFlow PRM only when its name says it is
    one: from its architecture alone, `tiny-gsm` or `smollm2-135m` would be scored through
    an LM head never trained to judge steps, and the scores would mean nothing. Any other
    causal LM needs `--family` (ValueError otherwise)."""
    from prm.model_names import resolve_model
    from prm.reward.loading import read_config

    if family not in ("math-shepherd", "rlhflow"):
        return
    from prm.reward import vllm_pooling

    if vllm_pooling.is_spec(model):
        model = vllm_pooling.model_of_spec(model)
    config = read_config(resolve_model(model))
    names = f"{model} {Path(resolve_model(model)).name} {config.get('_name_or_path') or ''}".lower()
    if any(word in names for word in PRM_NAME_WORDS):
        return
    architecture = ", ".join(config.get("architectures") or []) or "a causal LM"
    raise ValueError(f"{model} is a plain causal language model ({architecture}) with no PRM head; "
                     f"only its architecture would make it a {family} PRM, and the scores would mean "
                     "nothing. If it was trained as a PRM read through its LM head, say so with "
                     "--family math-shepherd or --family rlhflow")


def load_for(args: argparse.Namespace):
    """The scorer the command line names, with the options its family takes."""
    from prm.app.scorers import is_judge, load_step_scorer, parse_spec
    from prm.reward.loading import detect_family

    if is_judge(args.model):
        from prm.app.arguments import judge_config_from_args

        return load_step_scorer(args.model, judge=judge_config_from_args(args))
    model, _ = parse_spec(args.model)
    if model is None:
        return load_step_scorer(args.model, workers=args.workers)
    try:
        kind = detect_family(model) if args.format == "auto" else args.format
        if args.format == "auto":
            refuse_a_plain_causal_lm(model, kind)
    except (OSError, ValueError) as err:
        raise RecordError(f"cannot open the model: {err}", path=model) from None
    options = {"family": kind, "device": args.device, "dtype": args.dtype,
               "max_batch_tokens": args.max_batch_tokens}
    if kind != "reward-model":
        options["max_length"] = args.max_length
    if kind == "math-shepherd":
        options["step_tag"] = args.step_tag
    elif kind == "token-classification":
        options["step_separator"] = args.step_separator
    return load_step_scorer(args.model, workers=args.workers, **options)
