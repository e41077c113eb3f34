"""`bench/scaling.py --quick`: every (source, recipe, size) point is measured and written as its
own result file, the reference rows are what they must be, the goal lines and the plot come
out, and a second run measures nothing again (each point resumes from its file)."""

import json

from bench.scaling import main as run_bench


def test_quick_scaling_bench_measures_each_point_once_and_prints_goal_lines(tmp_path, capsys):
    out = tmp_path / "work"
    assert run_bench(["--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    points = sorted(p.name for p in (out / "points").glob("*.json"))
    assert points == ["gold_head_4.json", "gold_head_8.json", "implicit_implicit_4.json", "implicit_implicit_8.json",
                      "mc-hard_head_4.json", "mc-hard_head_8.json", "reference.json"]
    reference = json.loads((out / "points" / "reference.json").read_text())["rows"]
    assert reference["oracle (pass@8)"]["0"] >= reference["perfect verifier (gold)"]["0"] >= 0
    mc = json.loads((out / "points" / "mc-hard_head_8.json").read_text())
    implicit = json.loads((out / "points" / "implicit_implicit_8.json").read_text())
    assert mc["cost"]["rollouts"] > 0 and mc["cost"]["label_cpu_seconds"] > 0
    assert implicit["cost"]["rollouts"] == 0 and implicit["cost"]["label_cpu_seconds"] == 0
    assert mc["cost"]["traces_trained"] == 8 and set(mc["per_seed"]) == {"0"}
    assert 0.0 <= mc["mean"]["best_of_8"] <= 1.0 and "blind_f1" in mc["mean"] and "false_alarms" in mc["mean"]
    result = json.loads((out / "scaling.json").read_text())
    assert {g["name"].split(" (")[0] for g in result["goals"]} >= {"checker-blind first-error F1"}
    assert any(g["name"].startswith("PRIME's claim") for g in result["goals"])
    assert "GOAL " in printed and (out / "label_scaling.png").stat().st_size > 10_000
    assert run_bench(["--quick", "--out", str(out)]) == 0  # every point resumes from its file
    again = capsys.readouterr().out
    assert "== point" not in again and "\ntraining " not in again and "\nlabelling " not in again
    assert json.loads((out / "points" / "mc-hard_head_8.json").read_text()) == mc
