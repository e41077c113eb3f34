"""Argument types shared by the hand-written command lines (argparse `type=` callables that
refuse a bad value with a one-line message naming it)."""

from __future__ import annotations

import argparse

from annotate.runner import parse_shard


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    """A whole number of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of at least 0 (a sampling temperature: 0 is greedy)."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def probability(text: str) -> float:
    """A number in (0, 1] (nucleus sampling's top-p)."""
    value = _finite(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def shard(text: str) -> tuple[int, int]:
    """`I/N`: shard I of N (see `annotate.runner.parse_shard`)."""
    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_judge_arguments(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    """The options of an LLM judge (`annotate.config.JudgeConfig`, whose defaults they show),
    shared by `prm annotate --method judge`, `prm score judge:...` and `prm eval --scorer judge:...`.
    `seed=False` where the command's own --seed seeds the judge."""
    from annotate.config import JudgeConfig
    from annotate.judge_templates import packaged_templates

    defaults = JudgeConfig()
    group = parser.add_argument_group("LLM judge (--method judge, or a judge:MODEL_OR_URL scorer)")
    group.add_argument("--judge-samples", type=positive_int, default=defaults.samples, metavar="K",
                       help="critiques per trace; the earliest-error index is their majority vote, ties to "
                       "the earliest (default: %(default)s)")
    group.add_argument("--judge-temperature", type=float, default=defaults.temperature, metavar="T",
                       help="sampling temperature of the critiques (default: %(default)s, greedy; "
                       "ProcessBench votes over 8 at 1.0 with top-p 0.9)")
    group.add_argument("--judge-top-p", type=float, default=defaults.top_p, metavar="P",
                       help="(default: %(default)s)")
    group.add_argument("--judge-max-new-tokens", type=positive_int, default=defaults.max_new_tokens, metavar="N",
                       help="tokens per critique at most; a critique cut before its \\boxed{} answer "
                       "is recorded as unparseable (default: %(default)s)")
    group.add_argument("--judge-template", default=defaults.template, metavar="NAME_OR_FILE",
                       help=f"critic prompt template: {' | '.join(packaged_templates())} | a file with the "
                       "fields {problem} and {tagged_response} (default: %(default)s)")
    if seed:
        group.add_argument("--judge-seed", type=int, default=defaults.seed,
                           help="seed; each trace's critiques use a seed derived from it and the trace id "
                           "(default: %(default)s)")


def judge_config_from_args(args: argparse.Namespace):
    """The `JudgeConfig` of the command line (a bad value is one `RecordError` line)."""
    from annotate.config import JudgeConfig
    from annotate.judge_templates import load_template
    from prm.errors import RecordError

    try:
        load_template(args.judge_template)
        return JudgeConfig(samples=args.judge_samples, temperature=args.judge_temperature, top_p=args.judge_top_p,
                           max_new_tokens=args.judge_max_new_tokens, seed=getattr(args, "judge_seed", 0),
                           template=args.judge_template)
    except ValueError as err:
        raise RecordError(str(err), field="--judge-template" if "template" in str(err) else None) from None
