"""`prm demo --quick`: every stage runs on the embedded world and writes its report; a second
run with the same folder reuses every stage's output instead of recomputing it."""

import json

from prm.app.cli import main


def test_quick_demo_writes_a_report_with_measured_figures_and_resumes_without_recomputing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["solve_rate"]) == {"train", "val", "test"}
    for name in ("Monte Carlo (hard)", "binary search", "Monte Carlo + sympy override"):
        quality = summary["label_quality"][name]
        assert 0.0 <= quality["agreement"] <= 1.0
        assert quality["rollouts"]["per_trace_mean"] >= 0
    assert 0.0 <= summary["step"]["accuracy"] <= 1.0
    assert summary["best_of_n"]["methods"]["oracle"][-1] >= summary["best_of_n"]["methods"]["majority"][-1]

    implicit = summary["implicit"]  # trained on outcome labels only: no rollout
    assert implicit["cost"]["rollouts"] == 0 and implicit["cost"]["sampled_tokens"] > 0
    assert 0.0 <= implicit["step"]["accuracy"] <= 1.0 and "prm_min" in implicit["best_of_n"]["methods"]

    report = (out / "report.md").read_text()
    assert "| Monte Carlo (hard) |" in report and "| prm_min |" in report
    assert "| implicit PRM (outcome labels only) |" in report and "| implicit_min |" in report
    assert (out / "eval" / "report.md").exists() and list((out / "eval").glob("*.png"))
    for name in ("traces_train.jsonl", "labels_mc.jsonl", "labels_binary.jsonl", "labels_checked.jsonl",
                 "scored_test.jsonl", "prm/config.json", "orm/config.json", "implicit/config.json",
                 "scored_test_implicit.jsonl"):
        assert (out / name).exists(), name

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.jsonl")}
    assert main(["demo", "--quick", "--out", str(out), "--threads", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.jsonl")} == stamps
