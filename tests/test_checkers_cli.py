"""`prm check` end to end on a real GSM8K slice, the combine options with their counts,
resuming, the checker registry, and `prm check-report` on a few records."""

import json
import random

import pytest

from annotate.checkers import Checker, get_checker
from annotate.checkers.combine import checker_first_error, consensus_filter, override_refuted
from prm.app.cli import main
from prm.formats.gsm8k import inject_calculator_error, read_gsm8k
from prm.io import read_traces, write_traces
from prm.records import Rollouts, Verdict


@pytest.fixture
def gsm8k_file(tmp_path, shared_data):
    """8 correct GSM8K solutions and 6 with an injected calculator error."""
    traces = read_gsm8k(shared_data / "gsm8k" / "train.jsonl", limit=14)
    rng = random.Random(3)
    corrupted = [inject_calculator_error(t, rng) for t in traces[8:]]
    path = tmp_path / "gsm8k.jsonl"
    write_traces(path, traces[:8] + corrupted)
    return path


def test_prm_check_adds_one_verdict_per_checker_to_every_step(gsm8k_file, tmp_path, capsys):
    out = tmp_path / "checked.jsonl"
    assert main(["check", str(gsm8k_file), str(out), "--checkers", "sympy,z3"]) == 0
    printed = capsys.readouterr().out
    assert "sympy: verified" in printed and "z3: verified" in printed
    traces = read_traces(out)
    assert len(traces) == 14
    for trace in traces:
        for step in trace.steps:
            assert [v.checker for v in step.verdicts] == ["sympy", "z3"]
    for trace in traces:
        gold = trace.meta["gold_first_error"]
        if gold >= 0:  # the corrupted step is refuted by both, and nothing before it
            assert checker_first_error(trace, ["sympy"]) == gold
            assert checker_first_error(trace, ["z3"]) == gold
        else:
            assert checker_first_error(trace) == -1


def test_prm_check_with_lean_absent_marks_it_unavailable(gsm8k_file, tmp_path, capsys):
    out = tmp_path / "checked.jsonl"
    assert main(["check", str(gsm8k_file), str(out), "--checkers", "sympy,lean"]) == 0
    if "lean: verified 0, refuted 0, unknown 0, unavailable" not in capsys.readouterr().out:
        pytest.skip("a Lean toolchain is configured here")
    assert {s.verdict("lean").status for t in read_traces(out) for s in t.steps} == {"unavailable"}


def test_prm_check_rejects_an_unknown_checker_in_one_line(gsm8k_file, tmp_path, capsys):
    assert main(["check", str(gsm8k_file), str(tmp_path / "o.jsonl"), "--checkers", "magic"]) == 1
    assert "unknown checker" in capsys.readouterr().err


def test_prm_check_names_file_and_line_of_a_bad_record(gsm8k_file, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(gsm8k_file.read_text() + '{"id": "x", "problem": "p"}\n')
    assert main(["check", str(bad), str(tmp_path / "o.jsonl"), "--checkers", "sympy"]) == 1
    assert "line 15" in capsys.readouterr().err
    assert main(["check", str(bad), str(tmp_path / "o.jsonl"), "--checkers", "sympy",
                 "--skip-invalid"]) == 0
    assert len(read_traces(tmp_path / "o.jsonl")) == 14


def test_prm_check_resumes_from_the_partial_output_of_an_interrupted_run(gsm8k_file, tmp_path, capsys):
    out = tmp_path / "checked.jsonl"
    assert main(["check", str(gsm8k_file), str(out), "--checkers", "sympy"]) == 0
    partial = tmp_path / "again.jsonl.partial"  # what a run killed after 5 traces leaves
    partial.write_text("".join(out.read_text().splitlines(keepends=True)[:5]))
    capsys.readouterr()
    assert main(["check", str(gsm8k_file), str(tmp_path / "again.jsonl"), "--checkers", "sympy"]) == 0
    rest = sum(len(t.steps) for t in read_traces(gsm8k_file)[5:])
    assert f"checked {rest} step(s) of 9 trace(s)" in capsys.readouterr().out
    assert not partial.exists()
    again = read_traces(tmp_path / "again.jsonl")
    assert again[:5] == read_traces(out)[:5]  # kept as they were, verdict times included
    assert [[(v.status, v.evidence) for s in t.steps for v in s.verdicts] for t in again] == \
        [[(v.status, v.evidence) for s in t.steps for v in s.verdicts] for t in read_traces(out)]


def mc_labelled(shared_data):
    """Injected-error traces whose 'Monte Carlo' labels are the gold ones, except where changed."""
    traces = read_gsm8k(shared_data / "gsm8k" / "train.jsonl", limit=6)
    rng = random.Random(7)
    traces = [inject_calculator_error(t, rng) for t in traces]
    checker = get_checker("sympy")
    for trace in traces:
        for i, step in enumerate(trace.steps):
            step.verdicts = [checker.check(trace.problem, trace.step_texts[:i], step.text)]
            step.label_source, step.soft_label = "monte-carlo", float(step.hard_label)
            step.rollouts = Rollouts(correct=8 * step.hard_label, total=8)
    return traces


def test_override_sets_refuted_steps_to_zero_and_counts(shared_data):
    traces = mc_labelled(shared_data)
    for trace in traces:  # MC missed every error: all steps labelled good
        for step in trace.steps:
            step.hard_label, step.soft_label = 1, 1.0
    counts = override_refuted(traces, ["sympy"])
    assert counts.refuted_steps == counts.overridden == counts.from_good == len(traces)
    assert counts.traces_changed == len(traces) and counts.already_bad == 0
    for trace in traces:
        step = trace.steps[trace.meta["gold_first_error"]]
        assert (step.hard_label, step.soft_label, step.label_source) == (0, 0.0, "checker:sympy")
        assert step.rollouts.total == 8  # the Monte Carlo evidence is kept
    again = override_refuted(traces, ["sympy"])
    assert again.overridden == 0 and again.already_bad == len(traces)


def test_consensus_filter_keeps_traces_that_agree_on_the_first_error(shared_data):
    traces = mc_labelled(shared_data)
    late = traces[0]  # MC puts the first error one step late (or nowhere)
    for i, step in enumerate(late.steps):
        step.hard_label = 1 if i <= late.meta["gold_first_error"] else 0
    unlabelled = traces[1]
    unlabelled.steps[0].hard_label = None
    kept, counts = consensus_filter(traces, ["sympy"])
    assert [t.id for t in kept] == [t.id for t in traces[2:]]
    assert counts.kept == len(traces) - 2 and counts.dropped == 2
    assert counts.dropped_checker_earlier == 1 and counts.dropped_unlabeled == 1
    assert counts.agree_on_step == len(traces) - 2


def test_prm_check_combine_options_print_counts(gsm8k_file, tmp_path, capsys):
    out = tmp_path / "combined.jsonl"
    assert main(["check", str(gsm8k_file), str(out), "--checkers", "sympy",
                 "--consensus-filter", "--override-refuted"]) == 0
    printed = capsys.readouterr().out
    consensus = json.loads(printed.split("consensus filter: ")[1].splitlines()[0])
    override = json.loads(printed.split("override refuted: ")[1].splitlines()[0])
    assert consensus["kept"] == 14 and consensus["dropped"] == 0
    assert override["refuted_steps"] == 6 and override["already_bad"] == 6


def test_registry_builds_checkers_by_name():
    for name in ("sympy", "z3", "lean"):
        checker = get_checker(name)
        assert isinstance(checker, Checker) and checker.name == name
    with pytest.raises(ValueError):
        get_checker("nope")
    verdict = get_checker("sympy").check("", [], "2 + 2 = 4")
    assert isinstance(verdict, Verdict) and verdict.passed


def test_check_report_writes_markdown_and_json(tmp_path, shared_data, capsys):
    out = tmp_path / "report"
    assert main(["check-report", "--out", str(out), "--limit", "2", "--data", str(shared_data)]) == 0
    report = json.loads((out / "report.json").read_text())
    a, b, c = report["a_gsm8k_reference"], report["b_gsm8k_injected"], report["c_prmbench"]
    assert a["calculator_notes"]["total"] > 0 and a["calculator_notes"]["refuted"] == 0
    assert b["by_checker"]["sympy"]["caught"] == b["solutions_with_notes"] == 2
    assert c["error_steps_base"]["has_zero"] == 0 and set(c["by_class"]) >= {"confidence", "circular"}
    markdown = (out / "report.md").read_text()
    assert "(a) GSM8K" in markdown and "(c) PRMBench" in markdown


def test_check_report_finds_its_data_from_the_current_directory(tmp_path, shared_data, monkeypatch,
                                                                 capsys):
    work = tmp_path / "work" / "repo"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert main(["check-report", "--out", "r", "--limit", "1", "--parts", "a"]) != 0
    error = capsys.readouterr().err
    assert "../shared/data" in error and "--data" in error and "Traceback" not in error
    (tmp_path / "work" / "shared").mkdir()
    (tmp_path / "work" / "shared" / "data").symlink_to(shared_data)  # ../shared/data from here
    assert main(["check-report", "--out", "r", "--limit", "1", "--parts", "a"]) == 0
    assert json.loads((work / "r" / "report.json").read_text())["a_gsm8k_reference"]["solutions"] == 1
