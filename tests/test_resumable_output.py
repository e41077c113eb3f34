"""Every command that writes traces as it goes resumes a SIGKILL the same way (`prm.io.ResumableOutput`).

For each of `prm annotate`, `prm check`, `prm search`, `prm score` and `prm eval --benchmark`:
a real process is killed with SIGKILL once it has appended a few records, half a record is
added to the file as a write cut short would leave it, and the same command run again says
on stderr that it dropped that torn line and gives the output of an uninterrupted run
(wall-clock `seconds` fields aside), each record once.
The per-command tests (settings refused, locks, SIGTERM) are beside each command's tests.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.completers import write_search_problems
from helpers.reward_models import gsm8k_with_errors, processbench_folder, tiny_bert

from completers.world import generate_problems
from prm.app.cli import main
from prm.io import write_traces


@dataclass
class Case:
    """One command: its arguments for (the inputs, an output path), the file it appends to, and
    its final output (the appended file itself, or one written at the end)."""

    argv: Callable[[dict, Path], list]
    appended: Callable[[Path], Path]
    final: Callable[[Path], Path] | None = None

    def output(self, out: Path) -> Path:
        return (self.final or self.appended)(out)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data):
    """The inputs of every case, built once: world problems, a tiny reward model, a ProcessBench folder."""
    import torch

    from prm.reward.model import RewardModel

    root = tmp_path_factory.mktemp("resumable")
    write_traces(root / "world.jsonl", [p.to_trace() for p in generate_problems(4, seed=3)])
    write_search_problems(root / "problems.jsonl", 5)
    torch.manual_seed(0)
    RewardModel.from_backbone(str(tiny_bert(root / "bert"))).save_pretrained(root / "reward-model")
    write_traces(root / "to-score.jsonl", gsm8k_with_errors(30))
    processbench_folder(root / "processbench", per_subset=12)
    return {"root": root, "gsm8k": shared_data / "gsm8k" / "test.jsonl"}


CASES = {
    "annotate": Case(
        lambda i, out: ["annotate", i["root"] / "world.jsonl", out, "--completer", "tiny-gsm", "--method", "mc",
                        "--n", "2", "--max-new-tokens", "40", "--workers", "1", "--no-progress"],
        lambda out: out),
    "check": Case(
        lambda i, out: ["check", i["gsm8k"], out, "--limit", "100", "--checkers", "sympy", "--workers", "1",
                        "--no-progress"],
        lambda out: out.with_name(out.name + ".partial"), final=lambda out: out),
    "search": Case(
        lambda i, out: ["search", i["root"] / "problems.jsonl", out, "--strategy", "majority", "--budget", "4x",
                        "--tokens-per-solution", "70", "--chunk-size", "1", "--no-progress"],
        lambda out: out),
    "score": Case(
        lambda i, out: ["score", i["root"] / "reward-model", i["root"] / "to-score.jsonl", out, "--chunk", "1",
                        "--threads", "1"],
        lambda out: Path(str(out) + ".partial.jsonl"), final=lambda out: out),
    "eval --benchmark": Case(
        lambda i, out: ["eval", "--benchmark", "processbench", "--scorer", "checker:sympy", "--data",
                        i["root"] / "processbench", "--out", out.with_suffix(""), "--chunk", "1", "--threads", "1",
                        "--workers", "1"],
        lambda out: out.with_suffix("") / "scored.partial.jsonl",
        final=lambda out: out.with_suffix("") / "scored.jsonl"),
}


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def without_seconds(value):
    """A record without its wall-clock fields (`seconds`, `*_seconds`): all that may differ between runs."""
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if not k.endswith("seconds")}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


def records(path: Path) -> list:
    with open(path, encoding="utf-8") as handle:
        return [without_seconds(json.loads(line)) for line in handle]


@pytest.mark.parametrize("command", list(CASES))
def test_sigkill_then_the_same_command_gives_the_uninterrupted_output(command, inputs, tmp_path, capsys):
    case = CASES[command]
    whole, killed = tmp_path / "whole.jsonl", tmp_path / "killed.jsonl"
    assert main([str(a) for a in case.argv(inputs, whole)]) == 0
    uninterrupted = records(case.output(whole))
    argv = [str(a) for a in case.argv(inputs, killed)]
    appended, final = case.appended(killed), case.output(killed)

    with open(tmp_path / "stderr.txt", "w") as stderr:  # a file: a full pipe would stall the run
        process = subprocess.Popen([sys.executable, "-m", "prm.app.cli", *argv], stdout=subprocess.DEVNULL,
                                   stderr=stderr, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while lines(appended) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed: " + \
        (tmp_path / "stderr.txt").read_text()[-2000:]
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert 2 <= lines(appended) < len(uninterrupted), "the run must be killed part-way"
    assert final == appended or not final.exists()
    record = appended.read_bytes().splitlines(keepends=True)[0]
    with open(appended, "ab") as handle:  # a write cut short by the kill
        handle.write(record[: len(record) // 2])

    capsys.readouterr()
    assert main(argv) == 0  # the same command resumes
    assert "dropped a torn last line" in capsys.readouterr().err  # on stderr, as every command says it
    resumed = records(final)
    key = (lambda r: r["meta"]["problem_id"]) if command == "search" else (lambda r: r["id"])
    assert sorted(resumed, key=key) == sorted(uninterrupted, key=key)
    assert len({key(r) for r in resumed}) == len(resumed)  # each record once
    assert final == appended or not appended.exists()  # the partial file is gone
