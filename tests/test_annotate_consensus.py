"""Consensus of label sources (annotate.consensus, `prm consensus`) and the first-error
agreement matrix (prm.agreement), on hand-built traces whose first errors are known."""

import json

import pytest

from annotate.consensus import consensus
from prm.agreement import agreement_lines, agreement_matrix, first_error_of, first_errors
from prm.app.cli import main
from prm.io import read_traces, write_traces
from prm.records import Critique, Judgement, Rollouts, Step, Trace, Verdict


def labelled(trace_id, first, n=4, source="monte-carlo"):
    """A trace whose hard labels put the first error at `first` (-1 none, None: unknown at step 0)."""
    if first is None:
        labels = [None] * n
    else:
        labels = [1] * n if first == -1 else [1] * first + [0] * (n - first)
    steps = [Step(f"step {i}", hard_label=label, label_source=source if label is not None else None,
                  rollouts=Rollouts(correct=label or 0, total=1)) for i, label in enumerate(labels)]
    return Trace(id=trace_id, problem=f"problem {trace_id}", steps=steps, meta={"gold_first_error": 1})


def refuted_at(trace, index):
    trace.steps[index].verdicts = [Verdict("sympy", "refuted", claim="2+2=5")]
    return trace


# MC and judge first errors by trace: agree on a, b, c; disagree on d; judge unknown on e
MC = {"a": 1, "b": -1, "c": 2, "d": 0, "e": 3}
JUDGE = {"a": 1, "b": -1, "c": 2, "d": 2, "e": None}


def sources():
    mc = [labelled(i, f) for i, f in MC.items()]
    judge = [labelled(i, f, source="judge") for i, f in JUDGE.items()]
    for trace in judge:
        trace.judgement = Judgement(judge="j", critiques=[Critique("x", answer=str(JUDGE[trace.id]),
                                                                   index=JUDGE[trace.id])], vote=JUDGE[trace.id])
    return mc, judge


def test_first_error_of_each_kind_of_source():
    trace = refuted_at(labelled("t", 2), 1)
    assert first_error_of(trace, "labels") == 2 and first_error_of(trace, "mc") == 2
    assert first_error_of(trace, "checker") == 1 and first_error_of(trace, "checker:sympy") == 1
    assert first_error_of(trace, "checker:z3") == -1  # z3 refuted nothing
    assert first_error_of(trace, "gold") == 1
    assert first_error_of(trace, "judge") is None  # no judgement
    trace.meta = {"gold_labels": [1, 1, 1, 1]}
    assert first_error_of(trace, "gold") == -1


def test_agreement_matrix_counts_pairs_over_the_traces_both_can_tell():
    matrix = agreement_matrix({"mc": MC, "judge": JUDGE, "gold": {i: 1 for i in MC}})
    assert matrix["pairs"]["mc|judge"] == {"both": 4, "agree": 3, "rate": 0.75}  # e: judge cannot tell
    assert matrix["pairs"]["mc|gold"] == {"both": 5, "agree": 1, "rate": 0.2}
    assert matrix["pairs"]["judge|gold"] == {"both": 4, "agree": 1, "rate": 0.25}
    lines = agreement_lines(matrix)
    assert lines[0] == "| first error | mc | judge | gold |"
    assert "75.0% (3/4)" in lines[2] and lines[2].startswith("| mc | – |")


def test_consensus_keeps_agreeing_traces_and_sets_the_others_aside():
    mc, judge = sources()
    kept, disagreements, report = consensus({"mc": mc, "judge": judge})
    assert [t.id for t in kept] == ["a", "b", "c"]
    assert [t.id for t in disagreements] == ["d", "e"]
    assert (report.traces, report.kept, report.disagreed, report.unknown) == (5, 3, 2, 1)
    # kept traces are the first source's (labels and rollouts), with the judge's judgement copied in
    assert kept[0].steps[0].label_source == "monte-carlo" and kept[0].steps[0].rollouts.total == 1
    assert kept[0].judgement.vote == 1
    assert disagreements[0].meta["consensus"] == {"sources": {"mc": 0, "judge": 2}, "agreed": False}
    assert report.pair_kept == {"mc|judge": 3}
    assert "kept 3 of 5" in report.text()


def test_three_sources_must_all_agree_and_pairs_are_reported_each():
    mc, judge = sources()
    checker = [refuted_at(labelled(t.id, MC[t.id]), 1) if t.id in "ad" else labelled(t.id, MC[t.id]) for t in mc]
    kept, _, report = consensus({"mc": mc, "judge": judge, "checker:sympy": checker})
    # checker first errors: a 1, b -1, c -1 (nothing refuted), d 1, e -1
    assert [t.id for t in kept] == ["a", "b"]
    assert report.pair_kept == {"mc|judge": 3, "mc|checker:sympy": 2, "judge|checker:sympy": 2}


def test_a_trace_missing_from_a_source_is_a_disagreement():
    mc, judge = sources()
    kept, disagreements, report = consensus({"mc": mc, "judge": judge[:2]})
    assert [t.id for t in kept] == ["a", "b"] and report.missing == {"judge": 3}
    assert disagreements[0].meta["consensus"]["sources"]["judge"] is None


def test_prm_consensus_writes_kept_disagreements_and_the_report(tmp_path, capsys):
    mc, judge = sources()
    write_traces(tmp_path / "mc.jsonl", mc)
    write_traces(tmp_path / "judge.jsonl", judge)
    out = tmp_path / "kept.jsonl"
    assert main(["consensus", str(out), f"mc={tmp_path / 'mc.jsonl'}", f"judge={tmp_path / 'judge.jsonl'}",
                 "--report", str(tmp_path / "report.json")]) == 0
    assert [t.id for t in read_traces(out)] == ["a", "b", "c"]
    assert [t.id for t in read_traces(tmp_path / "kept.disagreements.jsonl")] == ["d", "e"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["kept"] == 3 and report["matrix"]["pairs"]["mc|judge"]["rate"] == 0.75
    assert "| mc | – | 75.0% (3/4) |" in capsys.readouterr().out
    assert main(["consensus", str(out), f"mc={tmp_path / 'mc.jsonl'}"]) == 1
    assert "at least two sources" in capsys.readouterr().err
    assert main(["consensus", str(out), "mc", f"judge={tmp_path / 'judge.jsonl'}"]) == 1


def test_the_eval_report_shows_the_agreement_matrix_of_the_sources_on_the_traces(tmp_path):
    from evals.report import EvalConfig, evaluate, render_markdown

    mc, _ = sources()
    traces = [refuted_at(t, 1) if t.id == "a" else t for t in mc]
    for trace in traces:
        trace.meta["gold_labels"] = [1, 0, 0, 0]
        del trace.meta["gold_first_error"]
    metrics, _ = evaluate(traces, EvalConfig())
    assert metrics["agreement"]["sources"] == ["labels", "checker", "gold"]
    assert metrics["agreement"]["pairs"]["labels|gold"]["agree"] == 1  # only "a" has its first error at 1
    assert "## First-error agreement between label sources" in render_markdown(metrics)


@pytest.mark.parametrize("bad", ["x=", "=f.jsonl"])
def test_a_malformed_source_is_one_clear_line(tmp_path, capsys, bad):
    assert main(["consensus", str(tmp_path / "o.jsonl"), bad, "b=c"]) == 1
    assert "NAME=FILE" in capsys.readouterr().err
