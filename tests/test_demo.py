"""`prm demo --quick`: every stage runs on the embedded world and writes its report; a second
run with the same folder reuses every stage's output instead of recomputing it, and reports the
same figures; no stage changes the traces it is given (issue 27)."""

import argparse
import json

import pytest

from prm.app import demo
from prm.app.cli import build_parser, main
from prm.io import read_traces
from prm.records import Step, Trace


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """A quick demo run, then the same command again (every stage resumed from OUT); the
    summary of each, and the mtimes of the first run's JSONL files."""
    out = tmp_path_factory.mktemp("quick") / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--threads", "1"]) == 0
    fresh = json.loads((out / "summary.json").read_text())
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.jsonl")}
    assert main(["demo", "--quick", "--out", str(out), "--threads", "1"]) == 0
    resumed = json.loads((out / "summary.json").read_text())
    return out, fresh, resumed, stamps


def test_quick_demo_writes_a_report_with_measured_figures(quick_demo):
    out, summary, _, _ = quick_demo
    assert set(summary["solve_rate"]) == {"train", "val", "test"}
    for name in ("Monte Carlo (hard)", "binary search", "Monte Carlo + sympy override"):
        quality = summary["label_quality"][name]
        assert 0.0 <= quality["agreement"] <= 1.0
        assert quality["rollouts"]["per_trace_mean"] >= 0
    assert 0.0 <= summary["step"]["accuracy"] <= 1.0
    assert summary["best_of_n"]["methods"]["oracle"][-1] >= summary["best_of_n"]["methods"]["majority"][-1]

    implicit = summary["implicit"]  # trained on outcome labels only: no rollout
    assert implicit["cost"]["rollouts"] == 0 and implicit["cost"]["sampled_tokens"] > 0
    assert implicit["cost"]["traces"] == demo.QUICK["train_traces"]  # --train-traces: more than the 24 labelled
    assert 0.0 <= implicit["step"]["accuracy"] <= 1.0 and "prm_min" in implicit["best_of_n"]["methods"]

    report = (out / "report.md").read_text()
    assert "| Monte Carlo (hard) |" in report and "| prm_min |" in report
    assert "| implicit PRM (outcome labels only) |" in report and "| implicit_min |" in report
    assert (out / "eval" / "report.md").exists() and list((out / "eval").glob("*.png"))
    for name in ("traces_train.jsonl", "labels_mc.jsonl", "labels_binary.jsonl", "labels_checked.jsonl",
                 "scored_test.jsonl", "prm/config.json", "orm/config.json", "implicit/config.json",
                 "scored_test_implicit.jsonl"):
        assert (out / name).exists(), name


def test_a_demo_folder_refuses_to_resume_with_other_settings_and_keeps_its_results(quick_demo, capsys):
    out, _, _, _ = quick_demo
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["demo", "--quick", "--out", str(out), "--threads", "1", "--train_traces", "64"]) == 1
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "demo_settings.json" in message and "field 'train_traces'" in message
    assert f"--train_traces {demo.QUICK['train_traces']}" in message
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_a_resumed_demo_recomputes_nothing_and_reports_the_figures_of_the_fresh_run(quick_demo):
    out, fresh, resumed, stamps = quick_demo
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.jsonl")} == stamps
    for summary in (fresh, resumed):  # wall times differ; nothing else may
        summary.pop("seconds"), summary.pop("stages")
    assert resumed == fresh
    mc = read_traces(out / "labels_mc.jsonl")
    checked = read_traces(out / "labels_checked.jsonl")
    overridden = sum(a.hard_label != b.hard_label for x, y in zip(mc, checked) for a, b in zip(x.steps, y.steps))
    if overridden:  # sympy changed labels: the two rows are measured on different labels
        assert fresh["label_quality"]["Monte Carlo (hard)"] != fresh["label_quality"]["Monte Carlo + sympy override"]


def test_scoring_leaves_the_callers_splits_as_they_were(quick_demo, tmp_path):
    out, *_ = quick_demo
    val, test = read_traces(out / "traces_val.jsonl"), read_traces(out / "traces_test.jsonl")
    before = [t.to_dict() for t in val + test]
    scored_val, scored_test = demo.score(out / "prm", out / "orm", val, test, tmp_path)
    assert [t.to_dict() for t in val + test] == before
    assert all(s.score is not None for t in scored_val + scored_test for s in t.steps)


def test_the_sympy_override_row_shares_no_object_with_the_monte_carlo_row(tmp_path):
    mc = [Trace(id="t", problem="What is 2 + 3?", steps=[Step("2 + 3 = 6", hard_label=1, label_source="mc"),
                                                          Step("The answer is 6", hard_label=1, label_source="mc")])]
    before = [t.to_dict() for t in mc]
    checked = demo.check_and_combine(mc, tmp_path / "labels_checked.jsonl")
    assert [t.to_dict() for t in mc] == before  # the Monte Carlo labels are not overridden in place
    assert checked[0].steps[0].hard_label == 0 and checked[0].steps[0].label_source == "checker:sympy"
    shared = {id(o) for t in mc for o in (t, t.steps, t.meta, *t.steps)} & \
        {id(o) for t in checked for o in (t, t.steps, t.meta, *t.steps)}
    assert not shared


def parsed(*argv: str) -> argparse.Namespace:
    return build_parser("demo").parse_args(list(argv))


def test_quick_overrides_demo_config_and_the_command_line_overrides_quick():
    assert demo.config_from_args(parsed()) == demo.DemoConfig()
    quick = demo.config_from_args(parsed("--quick"))
    assert quick == demo.DemoConfig(**demo.QUICK)
    assert quick.seed == demo.DemoConfig().seed and quick.train_problems < demo.DemoConfig().train_problems
    given = demo.config_from_args(parsed("--quick", "--mc_n", "8", "--no_implicit", "--out", "x"))
    assert (given.mc_n, given.implicit, given.out, given.train_problems) == (8, False, "x", demo.QUICK["train_problems"])


def test_the_implicit_prms_extra_traces_are_fresh_problems_none_of_them_held_out(quick_demo):
    out, *_ = quick_demo
    extra = read_traces(out / f"traces_train_implicit_{demo.QUICK['train_traces']}.jsonl")
    held_out = {t.meta["problem_id"] for name in ("train", "val", "test")
                for t in read_traces(out / f"traces_{name}.jsonl")}
    assert extra and not {t.meta["problem_id"] for t in extra} & held_out
    assert len({t.id for t in extra}) == len(extra)


def test_an_interrupted_sampling_of_fresh_problems_resumes_at_its_chunk(tmp_path, monkeypatch):
    import completers.world
    from completers.transformers_completer import TransformersCompleter

    config, completer = demo.DemoConfig.quick(train_samples=2), TransformersCompleter("tiny-gsm")
    whole = tmp_path / "whole.jsonl"
    demo.sample_fresh_problems(config, completer, 4, whole, chunk=2)

    calls, sample = [], completers.world.sample_traces

    def interrupted(*args, **kwargs):
        calls.append(args[1][0].id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return sample(*args, **kwargs)

    monkeypatch.setattr(completers.world, "sample_traces", interrupted)
    resumed = tmp_path / "resumed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        demo.sample_fresh_problems(config, completer, 4, resumed, chunk=2)
    assert not resumed.exists()
    calls.clear()
    monkeypatch.setattr(completers.world, "sample_traces", lambda *a, **k: calls.append(a[1][0].id) or sample(*a, **k))
    demo.sample_fresh_problems(config, completer, 4, resumed, chunk=2)
    assert len(calls) == 1  # only the chunk the interruption lost

    def records(path):  # the same traces; the CPU-seconds each chunk took are measured anew
        return [{**t.to_dict(), "meta": {k: v for k, v in t.meta.items() if k != "sample_cpu_seconds"}}
                for t in read_traces(path)]

    assert records(resumed) == records(whole)
    assert len(read_traces(whole)) == 8
    assert all(t.meta["sample_cpu_seconds"] > 0 and t.meta["split"] == "train" for t in read_traces(whole))
