"""bench/_harness.py: goals render one way in stdout, results JSON and README; `cached` computes
once and resumes; the common flags parse the same in every bench."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._harness import (Goal, cached, cached_traces, machine, merge_results, parser, readme_table,  # noqa: E402
                            save_results)
from prm.records import Step, Trace  # noqa: E402


def test_goal_lines_say_met_or_missed_by_how_much():
    assert str(Goal("2 workers / 1", 1.44, ">=", 1.8, "x")) == "GOAL 2 workers / 1: 1.44x >= 1.8x: missed by 0.36x"
    assert str(Goal("rollout share", 0.3, "<=", 1 / 3)) == "GOAL rollout share: 0.3 <= 0.333: met"
    assert str(Goal("tokens/s", 8361.2, ">=", 8000, "tokens/s")) == "GOAL tokens/s: 8361 tokens/s >= 8000 tokens/s: met"
    assert str(Goal("labels identical", False, "==", True)) == "GOAL labels identical: no: missed"
    assert str(Goal("labels identical", True, "==", True)) == "GOAL labels identical: yes: met"
    with pytest.raises(ValueError, match="op must be one of"):
        Goal("x", 1, "=>", 2)


def test_a_goal_reads_the_same_in_the_results_json_and_the_readme(tmp_path):
    goals = [Goal("speedup", 1.97, ">=", 1.8, "x"), Goal("overhead", 12.5, "<=", 10, "%")]
    record = save_results(tmp_path / "r.json", {"figure": 1}, machine(threads=2), goals)
    written = json.loads((tmp_path / "r.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert [g["line"] for g in written["goals"]] == [str(g) for g in goals]
    assert [Goal.from_dict(g) for g in written["goals"]] == goals
    assert written["goals"][1]["met"] is False and written["figure"] == 1
    assert len(written["machine"]["load_average_start"]) == len(written["machine"]["load_average_end"]) == 3
    table = readme_table(goals).splitlines()
    assert table[2] == "| speedup | 1.97x | >= 1.8x | met |"
    assert table[3] == "| overhead | 12.5% | <= 10% | missed by 2.5% |"


def test_cached_computes_once_then_reads_back(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"tokens": 3, "labels": [1, 0]}

    path = tmp_path / "deep" / "cache.json"
    assert cached(path, compute) == {"tokens": 3, "labels": [1, 0]}
    assert cached(path, compute) == {"tokens": 3, "labels": [1, 0]}
    assert len(calls) == 1 and list(path.parent.iterdir()) == [path]


def test_cached_leaves_no_file_when_compute_fails(tmp_path):
    def broken():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached(tmp_path / "c.json", broken)
    assert list(tmp_path.iterdir()) == []
    assert cached(tmp_path / "c.json", lambda: [1]) == [1]


def test_cached_traces_are_computed_once_and_read_back_equal(tmp_path):
    made = []

    def sample():
        made.append(1)
        return [Trace("t1", "1+1?", [Step("1+1=2", hard_label=1)], final_answer="2")]

    first = cached_traces(tmp_path / "traces.jsonl", sample)
    again = cached_traces(tmp_path / "traces.jsonl", sample)
    assert [t.to_dict() for t in first] == [t.to_dict() for t in again] and len(made) == 1
    assert again[0].steps[0].hard_label == 1


def test_merge_results_keeps_the_other_rows(tmp_path):
    path = tmp_path / "rows.json"
    merge_results(path, "a", {"f1": 0.5}, machine())
    merge_results(path, "b", {"f1": 0.7}, machine())
    merged = merge_results(path, "a", {"f1": 0.6}, machine())
    assert json.loads(path.read_text()) == merged
    assert {k: v["f1"] for k, v in merged.items()} == {"a": 0.6, "b": 0.7}
    assert "load_average_end" in merged["b"]["machine"]


def test_the_common_flags_default_to_the_bench_name_and_parse():
    args = parser("Title line.\n\nMore text.", "demo", threads=2).parse_args([])
    assert (args.results.name, args.results.parent.name) == ("demo.json", "results")
    assert (args.out.name, args.out.parent.name, args.threads, args.seed, args.quick) == ("demo", "out", 2, 0, False)
    args = parser("x", "demo").parse_args(["--out", "w", "--results", "r.json", "--threads", "1", "--seed", "3",
                                           "--quick"])
    assert (str(args.out), str(args.results), args.threads, args.seed, args.quick) == ("w", "r.json", 1, 3, True)
    assert not hasattr(parser("x", "demo", quick=None).parse_args([]), "quick")
