"""`prm annotate` / `prm merge` end to end with a real model: SIGKILL and resume, shards,
GSM8K test traces exported to TRL and Math-Shepherd."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from completers.world import generate_problems
from prm.app.cli import main
from prm.io import read_traces, write_traces

MODEL = os.environ.get("ANNOTATE_TEST_MODEL", "tiny-gsm")  # TEMP
FAST = ["--n", "2", "--max-new-tokens", "40", "--no-progress"]


@pytest.fixture(scope="module")
def world_input(tmp_path_factory):
    """Reference solutions of six world problems (2 to 6 steps) as native traces."""
    path = tmp_path_factory.mktemp("annotate") / "world.jsonl"
    write_traces(path, [p.to_trace() for p in generate_problems(6, seed=3)])
    return path


def normalised(path):
    """Records without wall-clock times, the only thing allowed to differ between runs."""
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    for record in records:
        record["meta"]["annotation"].pop("seconds")
        for step in record["steps"]:
            if step["rollouts"]:
                step["rollouts"].pop("seconds")
    return records


def count_lines(path):
    return open(path, "rb").read().count(b"\n") if os.path.exists(path) else 0


def test_sigkill_during_annotation_then_resume_equals_an_uninterrupted_run(world_input, tmp_path):
    args = [str(world_input), "--completer", MODEL, "--method", "mc", *FAST]
    full, killed = tmp_path / "full.jsonl", tmp_path / "killed.jsonl"
    assert main(["annotate", args[0], str(full), *args[1:]]) == 0

    env = dict(os.environ, OMP_NUM_THREADS="1")  # the same arithmetic as this process (1 thread)
    # two traces at a time (their calls merged), so that the run is killed part-way
    process = subprocess.Popen([sys.executable, "-m", "prm.app.cli", "annotate", args[0], str(killed), *args[1:],
                                "--workers", "2"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while count_lines(killed) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    lines_at_kill = count_lines(killed)
    assert 2 <= lines_at_kill < 6, "the run must be killed part-way"

    assert main(["annotate", args[0], str(killed), *args[1:]]) == 0  # the same command resumes
    assert normalised(killed) == normalised(full)
    ids = [r["id"] for r in normalised(killed)]
    assert len(ids) == len(set(ids)) == 6


def test_shards_of_a_real_run_merge_to_the_unsharded_output(world_input, tmp_path, capsys):
    args = ["--completer", MODEL, "--method", "binary", "--search-correct", *FAST]
    single = tmp_path / "single.jsonl"
    assert main(["annotate", str(world_input), str(single), *args]) == 0
    shards = [str(tmp_path / f"shard{i}.jsonl") for i in range(2)]
    for i, shard in enumerate(shards):
        assert main(["annotate", str(world_input), shard, "--shard", f"{i}/2", *args]) == 0
    assert main(["merge", str(tmp_path / "merged.jsonl"), *shards, "--input", str(world_input)]) == 0
    assert normalised(tmp_path / "merged.jsonl") == normalised(single)
    assert main(["merge", str(tmp_path / "bad.jsonl"), shards[0], "--input", str(world_input)]) == 1
    assert "missing" in capsys.readouterr().err and not (tmp_path / "bad.jsonl").exists()


def test_prm_annotate_labels_gsm8k_test_traces_that_export_to_trl_and_math_shepherd(shared_data, tmp_path, capsys):
    from prm.formats import WriteReport, read, write

    out = tmp_path / "gsm8k.jsonl"
    assert main(["annotate", str(shared_data / "gsm8k" / "test.jsonl"), str(out), "--completer", MODEL,
                 "--limit", "5", *FAST]) == 0
    summary = capsys.readouterr().out
    assert "annotated 5 trace(s)" in summary and "step labels:" in summary
    traces = read_traces(out)
    assert [t.id for t in traces] == [f"gsm8k-test-{i}" for i in range(5)]
    for trace in traces:
        assert trace.meta["gold_labels"] == [1] * len(trace.steps)  # the importer's gold is kept
        skipped = {s["step"] for s in trace.meta["annotation"]["skipped"]}
        for index, step in enumerate(trace.steps):
            if index in skipped:  # prompt longer than tiny-gsm's 512 tokens: unknown, not 0
                assert step.hard_label is None and step.rollouts is None
            else:
                assert step.label_source == "monte-carlo" and step.rollouts.total == 2
                assert step.hard_label == int(step.rollouts.correct > 0)

    for fmt in ("trl", "math-shepherd"):
        report = WriteReport()
        write(tmp_path / f"{fmt}.jsonl", traces, fmt, report=report)
        back = read(tmp_path / f"{fmt}.jsonl", fmt)
        kept = [t for t in traces if t.hard_labels[0] is not None]  # a trace unknown from step 0 is dropped
        assert len(back) == len(kept) == report.written
        for original, exported in zip(kept, back):
            known = [label for label in original.hard_labels if label is not None]  # cut at the first unknown
            assert exported.hard_labels == known
            assert exported.step_texts == original.step_texts[:len(known)]


def test_bad_input_is_one_clear_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "problem": "p", "steps": ["s"]}\n')
    assert main(["annotate", str(bad), str(tmp_path / "out.jsonl"), "--completer", MODEL]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 1" in err and "reference_answer" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_per_trace_budget_is_honoured_with_a_real_model(world_input, tmp_path):
    out = tmp_path / "budget.jsonl"
    assert main(["annotate", str(world_input), str(out), "--completer", MODEL, "--limit", "3", "--n", "4",
                 "--max-new-tokens", "30", "--max-rollouts", "7", "--max-tokens", "150", "--no-progress"]) == 0
    for trace in read_traces(out):
        spent = [s.rollouts for s in trace.steps if s.rollouts]
        assert sum(r.total for r in spent) == trace.meta["annotation"]["rollouts"] <= 7
        assert sum(r.tokens for r in spent) == trace.meta["annotation"]["tokens"] <= 150
        assert trace.meta["annotation"]["budget_limited"]
        assert trace.meta["annotation"]["rollouts"] >= 5  # 150 tokens always fit 5 completions of 30


def test_annotating_through_an_http_server_with_workers_equals_annotating_locally(world_input, tmp_path):
    from completers.loading import load_completer
    from completers.server import CompletionServer

    args = ["--limit", "4", "--method", "binary", "--search-correct", *FAST]
    local = tmp_path / "local.jsonl"
    assert main(["annotate", str(world_input), str(local), "--completer", MODEL, *args]) == 0
    with CompletionServer(load_completer(MODEL), "tiny") as server:
        remote = tmp_path / "remote.jsonl"
        assert main(["annotate", str(world_input), str(remote), "--completer", server.url, "--workers", "2",
                     *args]) == 0
    by_id = sorted(normalised(remote), key=lambda r: r["id"])
    for record in by_id:  # the completer spec differs, nothing else
        assert record["meta"]["annotation"].pop("completer") == server.url
    expected = sorted(normalised(local), key=lambda r: r["id"])
    for record in expected:
        record["meta"]["annotation"].pop("completer")
    assert by_id == expected


@pytest.mark.parametrize("method", ["mc", "binary"])
def test_labelling_traces_together_gives_the_labels_of_one_at_a_time_with_fewer_forward_passes(world_input, method):
    from annotate.config import AnnotateConfig
    from annotate.grading import Grader
    from annotate.runner import annotate_trace, label_traces
    from completers.loading import load_completer

    completer, grader = load_completer(MODEL), Grader()
    traces = read_traces(world_input)
    config = AnnotateConfig(method=method, n=4, max_new_tokens=40, skip_correct=False)

    def passes(label):
        completer.prompt_cache.clear()
        completer.counters["forward_calls"] = 0
        labelled = [t.to_dict() for t in label()]
        for record in labelled:
            record["meta"]["annotation"].pop("seconds")
            for step in record["steps"]:
                if step["rollouts"]:
                    step["rollouts"].pop("seconds")
        return labelled, completer.counters["forward_calls"]

    alone, alone_passes = passes(lambda: [annotate_trace(t, completer, config, grader) for t in traces])
    together, together_passes = passes(lambda: label_traces(traces, completer, config, grader))  # calls merged
    assert together == alone
    assert together_passes < alone_passes / 2


def test_annotation_threads_set_torchs_threads_and_leave_the_labels_as_they_were(world_input, tmp_path):
    import torch

    before = torch.get_num_threads()
    outputs = {}
    try:
        for threads in (1, 2):
            outputs[threads] = tmp_path / f"threads{threads}.jsonl"
            assert main(["annotate", str(world_input), str(outputs[threads]), "--completer", MODEL, "--limit", "3",
                         "--threads", str(threads), *FAST]) == 0
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    labels = {k: [[s.hard_label for s in t.steps] for t in read_traces(path)] for k, path in outputs.items()}
    assert labels[1] == labels[2] and len(labels[1]) == 3
