"""`prm search` for real: tiny-gsm in-process and behind the loopback OpenAI-compatible server,
every strategy, resumption after an interruption, refusal of changed settings, shards."""

import json

import pytest
from helpers.completers import write_search_problems

from prm.app.cli import main
from prm.io import read_traces

COMMON = ["--scorer", "checker:sympy", "--step-tokens", "40", "--tokens-per-solution", "70", "--no-progress"]


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    return write_search_problems(tmp_path_factory.mktemp("search") / "problems.jsonl", 6)


def results(path):
    """The result records without wall-clock times."""
    out = []
    for trace in read_traces(path):
        data = trace.to_dict()
        data["meta"]["search"]["compute"] = {k: v for k, v in data["meta"]["search"]["compute"].items()
                                         if not k.endswith("seconds")}
        data["meta"]["search"].pop("completer")
        out.append(data)
    return out


@pytest.mark.parametrize("strategy", ["beam", "dvts", "best-of-n", "weighted-vote", "majority"])
def test_every_strategy_runs_with_tiny_gsm(problems, tmp_path, strategy, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["search", str(problems), str(out), "--strategy", strategy, "--budget", "4x", *COMMON]) == 0
    traces = read_traces(out)
    assert len(traces) == 6 and all(t.outcome_label in (0, 1) for t in traces)
    for trace in traces:
        search = trace.meta["search"]
        assert search["strategy"] == strategy and search["compute"]["generated_tokens"] > 0
        if strategy in ("beam", "dvts"):
            assert search["compute"]["generated_tokens"] <= search["budget_tokens"] == 280
        else:
            assert search["compute"]["completions"] == 4
    assert "solved" in capsys.readouterr().out


def test_interrupted_run_resumes_to_the_same_results(problems, tmp_path):
    whole, part = tmp_path / "whole.jsonl", tmp_path / "part.jsonl"
    args = ["--strategy", "beam", "--budget", "4x", *COMMON]
    assert main(["search", str(problems), str(whole), *args]) == 0
    assert main(["search", str(problems), str(part), "--limit", "3", *args]) == 0
    first_three = results(part)
    with open(part, "a") as handle:  # a write cut short by a kill
        handle.write('{"id": "tiny-gsm-0-28')
    assert main(["search", str(problems), str(part), *args]) == 0
    assert results(part)[:3] == first_three
    assert sorted(results(part), key=lambda d: d["id"]) == sorted(results(whole), key=lambda d: d["id"])


def test_resuming_with_other_settings_is_refused(problems, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["search", str(problems), str(out), "--limit", "2", "--strategy", "beam", "--budget", "4x",
                 *COMMON]) == 0
    assert main(["search", str(problems), str(out), "--strategy", "beam", "--budget", "8x", *COMMON]) == 1
    err = capsys.readouterr().err
    assert "other settings (budget)" in err and "line 1" in err


def test_shards_cover_the_problems_once(problems, tmp_path):
    parts = []
    for index in range(2):
        out = tmp_path / f"part{index}.jsonl"
        assert main(["search", str(problems), str(out), "--shard", f"{index}/2", "--strategy", "majority",
                     "--budget", "2x", "--no-progress"]) == 0
        parts.append({t.id for t in read_traces(out)})
    assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == 6


def test_same_results_through_the_loopback_openai_server(problems, tmp_path):
    from completers.server import CompletionServer
    from completers.transformers_completer import TransformersCompleter

    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    args = ["--strategy", "beam", "--budget", "4x", "--keep-tree", *COMMON]
    assert main(["search", str(problems), str(local), *args]) == 0
    server = CompletionServer(TransformersCompleter("tiny-gsm"), "tiny-gsm", "127.0.0.1", 0).start()
    try:
        assert main(["search", str(problems), str(remote), "--completer", server.url, *args]) == 0
        assert server.stats["failed"] == 0 and server.stats["requests"] > 0
    finally:
        server.stop()
    # same prompts and seeds: the same samples, the same tree, the same token counts
    assert results(remote) == results(local)
    assert json.loads(remote.read_text().splitlines()[0])["meta"]["search"]["completer"] == server.url


def test_prm_eval_draws_solve_rate_against_tokens_from_search_results(problems, tmp_path):
    results_dir, report = tmp_path / "runs", tmp_path / "report"
    results_dir.mkdir()
    for strategy, budget in (("best-of-n", "4x"), ("beam", "2x"), ("beam", "4x")):
        out = results_dir / f"{strategy}-{budget}.jsonl"
        assert main(["search", str(problems), str(out), "--strategy", strategy, "--budget", budget, *COMMON]) == 0
    assert main(["eval", str(results_dir), "--out", str(report)]) == 0
    metrics = json.loads((report / "metrics.json").read_text())["search"]
    assert [p["budget"] for p in metrics["methods"]["beam"]] == ["2x", "4x"]
    assert [p["budget"] for p in metrics["references"]["oracle (pass@N)"]] == ["1x", "2x", "4x"]
    bon = metrics["methods"]["best-of-n"][0]
    assert bon["tokens"] == metrics["references"]["majority vote"][-1]["tokens"]  # the same 4 samples
    assert metrics["references"]["oracle (pass@N)"][-1]["solve_rate"] >= bon["solve_rate"]
    assert (report / "search.png").stat().st_size > 0
    assert "Test-time search" in (report / "report.md").read_text()


def test_bad_input_is_one_clear_error(problems, tmp_path, capsys):
    out = str(tmp_path / "out.jsonl")
    assert main(["search", str(tmp_path / "missing.jsonl"), out, "--scorer", "checker:sympy"]) == 1
    assert "missing.jsonl" in capsys.readouterr().err
    assert main(["search", str(problems), out, "--strategy", "beam"]) == 1
    assert "needs a --scorer" in capsys.readouterr().err
    assert main(["search", str(problems), str(tmp_path / "out.txt"), "--strategy", "majority"]) == 1
    assert ".jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", str(problems), out, "--budget", "lots"])
    assert "a budget is a number of tokens" in capsys.readouterr().err
