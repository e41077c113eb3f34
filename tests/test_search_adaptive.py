"""`prm search --method adaptive`: best-of-N in rounds with tiny-gsm, where a problem stops
sampling once its best solution score reaches the target (scored by the sympy checker: a solution
whose every step sympy verified scores 1)."""

import pytest
from helpers.completers import write_search_problems

from prm.app.cli import main
from prm.io import read_traces

COMMON = ["--scorer", "checker:sympy", "--no-score-answer", "--tokens-per-solution", "70", "--no-progress", "--budget", "8x"]


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    return write_search_problems(tmp_path_factory.mktemp("adaptive") / "problems.jsonl", 8)


def test_a_problem_stops_after_the_round_that_reached_the_target_and_never_exceeds_the_budget(problems, tmp_path):
    out = tmp_path / "adaptive.jsonl"
    assert main(["search", str(problems), str(out), "--method", "adaptive", "--round-size", "2",
                 "--target", "0.9", *COMMON]) == 0
    traces = read_traces(out)
    assert len(traces) == 8
    stopped_early = 0
    for trace in traces:
        search = trace.meta["search"]
        candidates = search["candidates"]
        scores = [c["score"] if c["answer"] is not None and c["score"] is not None else -1 for c in candidates]
        assert search["strategy"] == "adaptive"
        assert len(candidates) == search["compute"]["completions"] <= 8 and len(candidates) % 2 == 0
        assert all(score < 0.9 for score in scores[:-2]), "it went on after reaching the target"
        if len(candidates) < 8:
            stopped_early += 1
            assert max(scores[-2:]) >= 0.9
        assert search["score"] == max(c["score"] for c in candidates if c["score"] is not None)
    assert stopped_early > 0


def test_one_round_as_large_as_the_budget_is_best_of_n(problems, tmp_path):
    out = tmp_path / "one_round.jsonl"
    assert main(["search", str(problems), str(out), "--method", "adaptive", "--round-size", "8", *COMMON]) == 0
    for trace in read_traces(out):
        search = trace.meta["search"]
        assert search["compute"]["completions"] == 8 and search["compute"]["completer_calls"] == 1
        assert search["score"] == max(c["score"] for c in search["candidates"] if c["score"] is not None)


def test_a_target_outside_zero_to_one_is_refused(problems, tmp_path):
    with pytest.raises(SystemExit):
        main(["search", str(problems), str(tmp_path / "x.jsonl"), "--method", "adaptive", "--target", "1.5", *COMMON])
