"""The `prm` command line.

Each subcommand lives in its own module of `prm.app`, which defines `add_arguments(parser)`
and `run(args) -> int`. A module whose options come from config dataclasses lists them in
`CONFIGS`; its parser is then generated from their fields (help, choices, defaults, aliases)
by `transformers.HfArgumentParser`, so each option is defined once, in its dataclass. Only the chosen subcommand's module is imported, so `prm --help` is
instant and `prm` never imports the other packages until a command needs them.
Errors about bad input (`RecordError`) are printed as one clear line, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from prm.errors import RecordError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("prm.app.demo", "run the whole job on the embedded world: sample, label, train, evaluate"),
    "annotate": ("prm.app.annotate", "label steps with Monte Carlo completions or binary search"),
    "merge": ("prm.app.merge", "join the shards of a sharded annotation run, checking none is missing"),
    "select": ("prm.app.select", "active learning: choose the unlabelled traces the current PRM is least sure of"),
    "consensus": ("prm.app.consensus", "keep traces whose label sources (MC, judge, checker) agree on the first error"),
    "check": ("prm.app.check", "add symbolic/formal checker verdicts to records"),
    "check-report": ("prm.app.check_report", "measure the checkers on GSM8K and PRMBench"),
    "train": ("prm.app.train", "train a PRM or ORM head, or an implicit PRM, on labeled traces"),
    "calibrate": ("prm.app.calibrate", "fit isotonic or Platt calibration of a model's step scores, saved with it"),
    "score": ("prm.app.score", "write a reward model's per-step scores into records"),
    "search": ("prm.app.search", "solve problems with beam search, DVTS or best-of-N guided by a step scorer"),
    "eval": ("prm.app.eval", "evaluate scores or labels against gold: report.md, plots, metrics.json"),
    "convert": ("prm.app.convert", "convert records from one format to another"),
    "inspect": ("prm.app.inspect", "summarise a data set: counts, step lengths, label balance"),
    "view": ("prm.app.view", "write a page (one HTML file) to look through traces, their labels and evidence"),
    "export": ("prm.app.export_review", "write traces for review in Label Studio, or step-level preference pairs for DPO"),
    "import": ("prm.app.import_review", "read people's reviews from Label Studio back into the traces"),
    "serve-reward": ("prm.app.serve_reward", "serve a PRM as an HTTP reward model for RL trainers (OpenRLHF)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prm", description="Process reward model toolkit: label, train, score, evaluate.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<13} {text}" for name, (_, text) in COMMANDS.items())
        + "\n\nRun `prm COMMAND --help` for a command's options.")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="what to do")
    if command is not None:
        module_name, text = COMMANDS[command]
        module = importlib.import_module(module_name)
        settings = dict(prog=f"prm {command}", description=text[0].upper() + text[1:] + ".",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
        configs = getattr(module, "CONFIGS", ())
        if configs:
            from transformers import HfArgumentParser

            sub = HfArgumentParser(configs, **settings)
        else:
            sub = argparse.ArgumentParser(**settings)
        module.add_arguments(sub)
        return sub
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status: 0, 1 for bad input (one line), 2 for bad usage, 130
    after Ctrl-C and 143 after SIGTERM (finished work kept), 141 when stdout or stderr was a
    pipe that closed (the work is still finished, see `prm.app.pipes`)."""
    from prm.app.pipes import CLOSED_PIPE_STATUS, closed_pipes_are_quiet

    with closed_pipes_are_quiet() as pipe:
        code = _main(list(sys.argv[1:] if argv is None else argv))
    return CLOSED_PIPE_STATUS if pipe["closed"] and code == 0 else code


def _main(argv: list[str]) -> int:
    from prm.errors import Terminated

    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv[:1] or ["--help"])
        return 2
    command, rest = argv[0], argv[1:]
    parser = build_parser(command)
    args = parser.parse_args(rest)
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return int(module.run(args) or 0)
    except RecordError as err:
        print(f"prm {command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(f"prm {command}: {'terminated' if isinstance(err, Terminated) else 'interrupted'}; finished "
              "work is kept, re-run the same command to resume", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
