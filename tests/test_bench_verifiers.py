"""`bench/verifiers.py --quick` on a quick demo: the table's reference rows are what they must
be, the goal lines are printed, and a second run reuses every cache (nothing retrained)."""

import json
import runpy
import sys
from pathlib import Path

import pytest

from prm.app.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "verifiers.py"


def run_bench(argv):
    saved = sys.argv
    sys.argv = [str(SCRIPT), *argv]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        sys.argv = saved
    return exit_info.value.code


@pytest.mark.slow
def test_quick_verifier_bench_measures_every_row_and_resumes_from_its_caches(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(demo), "--threads", "1"]) == 0
    args = ["--demo", str(demo), "--out", str(tmp_path / "work"), "--quick", "--verifiers", "MC PRM (demo)",
            "--results", str(tmp_path / "verifiers.json")]
    capsys.readouterr()
    assert run_bench(args) == 0
    first = capsys.readouterr().out
    result = json.loads((tmp_path / "verifiers.json").read_text())
    table = result["table"]
    assert set(table) == {"MC PRM (demo)", "MC PRM (demo) + sympy", "ORM", "ORM + sympy",
                          "perfect verifier (gold)", "majority vote", "oracle (pass@8)"}
    assert table["perfect verifier (gold)"]["blind_f1"]["mean"] == 1.0
    assert table["perfect verifier (gold)"]["false_alarms"]["mean"] == 0.0
    assert table["oracle (pass@8)"]["best_of_8"]["mean"] >= table["perfect verifier (gold)"]["best_of_8"]["mean"]
    assert result["costs"]["MC PRM (demo)"]["rollouts_per_trace"] > 0 == result["costs"]["ORM"]["rollouts_per_trace"]
    assert "training MC_PRM__demo" in first and "PRM alone best-of-8" in first and "false alarms" in first
    assert run_bench(args) == 0  # everything cached: nothing trained again, same figures
    assert "training" not in capsys.readouterr().out
    assert json.loads((tmp_path / "verifiers.json").read_text())["table"] == table
