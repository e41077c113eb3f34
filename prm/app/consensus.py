"""`prm consensus OUT NAME=FILE NAME=FILE...`: keep the traces whose label sources agree on
the first error (Qwen's "Lessons" rule: Monte Carlo and an LLM judge), see `annotate.consensus`.

Examples:

    prm consensus kept.jsonl mc=labels_mc.jsonl judge=labels_judge.jsonl --disagreements review.jsonl
    prm consensus kept.jsonl mc=checked.jsonl judge=judged.jsonl checker:sympy=checked.jsonl
    prm consensus kept.jsonl binary=labels_binary.jsonl gold=labels_binary.jsonl --report agreement.json

A source's NAME says how its first error is read: `checker` or `checker:sympy,z3` (refuted
steps of `prm check` verdicts), `gold` (meta gold labels), anything else the file's step
labels (e.g. mc, binary, judge). Traces are matched by id, in the first source's order.
"""

from __future__ import annotations

import argparse
import json

from prm.errors import RecordError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = __doc__.split("Examples:", 1)[1]
    parser.add_argument("output", metavar="OUT", help="the traces every source agrees on (.jsonl, .parquet or a folder)")
    parser.add_argument("sources", metavar="NAME=FILE", nargs="+",
                        help="two or more label sources; the first one's traces (labels, rollouts) are written")
    parser.add_argument("--disagreements", metavar="FILE",
                        help="write the other traces here, each with meta.consensus (default: OUT's name + "
                        ".disagreements before its suffix)")
    parser.add_argument("--report", metavar="FILE", help="also write the counts and the agreement matrix as JSON")


def parse_sources(texts: list[str]) -> dict[str, str]:
    """NAME=FILE pairs, in order; a name given twice or a pair without '=' is refused."""
    sources: dict[str, str] = {}
    for text in texts:
        name, sep, path = text.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise RecordError(f"a source is written NAME=FILE (e.g. mc=labels.jsonl), got {text!r}")
        if name.strip() in sources:
            raise RecordError(f"source {name.strip()!r} is named twice")
        sources[name.strip()] = path.strip()
    if len(sources) < 2:
        raise RecordError("a consensus needs at least two sources")
    return sources


def default_disagreements(output: str) -> str:
    from pathlib import Path

    path = Path(output)
    return str(path.with_name(path.stem + ".disagreements" + path.suffix))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from annotate.consensus import consensus
    from prm import formats
    from prm.io import check_output, refuse_output_over_inputs, write_traces

    # before any work: a folder of the user's is never replaced, and no output is a source
    # (nor another output of this run)
    paths = parse_sources(args.sources)
    check_output(args.output)
    disagreements_path = args.disagreements or default_disagreements(args.output)
    outputs = {"OUT": args.output, "--disagreements": disagreements_path, "--report": args.report}
    written: dict[Path, str] = {}
    for option, output in outputs.items():
        if output is None:
            continue
        check_output(output, file=option == "--report")
        refuse_output_over_inputs(output, paths.values())
        if Path(output).resolve() in written:
            raise RecordError(f"is also {written[Path(output).resolve()]}; each output needs its own file",
                              path=output, field=option)
        written[Path(output).resolve()] = option
    loaded: dict[str, list] = {}
    for name, path in paths.items():
        if not Path(path).exists():
            raise RecordError("no such file", path=path)
        loaded[name] = formats.read(path)
    kept, disagreements, report = consensus(loaded)
    write_traces(args.output, kept)
    write_traces(disagreements_path, disagreements)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            json.dump(report.as_dict(), handle, indent=2)
    print(report.text())
    print(f"\nwrote {len(kept)} trace(s) to {args.output} and {len(disagreements)} to {disagreements_path}")
    return 0
