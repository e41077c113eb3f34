"""The embedded world: reproducible GSM8K-format problems and exact gold step labels."""

import hashlib
import random
import re
from fractions import Fraction

from completers.world import (TEMPLATES, WorldProblem, calculator_notes, evaluate_expression,
                              generate_problems, gold_labels, trace_from_sample)
from prm.formats.gsm8k import inject_calculator_error, parse_gsm8k_answer
from prm.records import Trace

# A hand-written problem of the shopping template, so every expectation below is visible.
MIA = WorldProblem(
    id="hand-1", template="shopping",
    question="Mia buys 3 pens at $4 each and 2 books at $9 each. She pays with a $50 bill. "
             "How much change does she get?",
    steps=["The pens cost 3 * 4 = $<<3*4=12>>12.",
           "The books cost 2 * 9 = $<<2*9=18>>18.",
           "In all she spends 12 + 18 = $<<12+18=30>>30.",
           "She gets 50 - 30 = $<<50-30=20>>20 back."],
    answer=20, needed_values=[12, 18, 20, 30], given_values=[2, 3, 4, 9, 50])


def sample(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_generate_problems_is_reproducible_from_its_seed():
    first, again, other = generate_problems(50, seed=7), generate_problems(50, seed=7), generate_problems(50, seed=8)
    assert [p.question for p in first] == [p.question for p in again]
    assert [p.solution for p in first] == [p.solution for p in again]
    assert [p.question for p in first] != [p.question for p in other]
    assert [p.id for p in first[:2]] == ["tiny-gsm-7-0", "tiny-gsm-7-1"]


def test_generator_output_is_pinned_for_the_committed_tiny_model():
    # tiny-gsm was trained on generate_problems(n, seed=0): changing what a seed generates
    # would make `python -m completers.train_tiny` train a different model than the card says.
    text = "\n".join(p.question + "\n" + p.solution for p in generate_problems(1000, seed=0))
    assert hashlib.sha256(text.encode()).hexdigest() == \
        "32854571f651f586744fa8fe1a52bc175412f07ef46388665c09215a1d612292"


def test_world_covers_many_templates_two_to_six_steps_and_short_problems():
    problems = generate_problems(2000, seed=1)
    assert len(TEMPLATES) >= 6
    assert {p.template for p in problems} == set(TEMPLATES)
    assert {len(p.steps) for p in problems} == {2, 3, 4, 5, 6}
    assert all(80 <= len(p.question) <= 200 for p in problems)
    assert all(len(p.question) + len(p.solution) <= 480 for p in problems)
    assert all(isinstance(p.answer, int) and p.answer >= 0 for p in problems)


def test_reference_solutions_are_in_gsm8k_answer_format():
    for problem in generate_problems(300, seed=2):
        lines = problem.solution.split("\n")
        assert lines[-1] == f"#### {problem.answer}"
        for line in lines[:-1]:
            assert re.fullmatch(r"[^<>]* = \$?<<[\d+\-*/]+=\d+>>\d+[^<>]*", line), line


def test_reference_solutions_parse_with_the_gsm8k_reader():
    for problem in generate_problems(100, seed=3):
        steps, final = parse_gsm8k_answer(problem.solution)
        assert steps == problem.steps
        assert final == str(problem.answer)


def test_gold_rule_agrees_with_injected_calculator_errors():
    rng = random.Random(0)
    for problem in generate_problems(200, seed=6):
        broken = inject_calculator_error(problem.to_trace(), rng)
        assert gold_labels(problem, broken.step_texts) == broken.meta["gold_labels"]


def test_every_reference_step_verifies_and_is_gold_labelled_one():
    for problem in generate_problems(500, seed=4):
        for step in problem.steps:
            notes = calculator_notes(step)
            assert len(notes) == 1 and notes[0].verifies
            assert notes[0].value in {Fraction(v) for v in problem.needed_values}
        assert gold_labels(problem, problem.steps) == [1] * len(problem.steps)
        trace = trace_from_sample(problem, problem.solution, "ref")
        assert trace.outcome_label == 1 and trace.meta["gold_first_error"] == -1


def test_to_trace_carries_the_reference_and_gold_labels():
    problem = generate_problems(1, seed=5)[0]
    trace = Trace.from_dict(problem.to_trace().to_dict())
    assert trace.id == problem.id and trace.problem == problem.question
    assert trace.step_texts == problem.steps
    assert trace.hard_labels == [1] * len(problem.steps)
    assert trace.final_answer == trace.reference_answer == str(problem.answer)
    assert trace.outcome_label == 1
    assert trace.meta["source"] == "tiny-gsm-world"
    assert trace.meta["template"] == problem.template
    assert trace.meta["needed_values"] == problem.needed_values
    assert trace.meta["gold_labels"] == [1] * len(problem.steps)
    assert trace.meta["gold_first_error"] == -1


def test_gold_correct_solution_is_all_ones():
    trace = trace_from_sample(MIA, sample(*MIA.steps, "#### 20"), "t")
    assert trace.hard_labels == [1, 1, 1, 1]
    assert trace.meta["gold_first_error"] == -1 and trace.outcome_label == 1
    assert trace.final_answer == "20" and trace.reference_answer == "20"
    assert trace.steps[0].label_source == "gold"


def test_gold_arithmetic_slip_is_the_first_error_and_later_steps_are_zero():
    text = sample(MIA.steps[0],
                  "The books cost 2 * 9 = <<2*9=19>>19 dollars.",  # 2*9 is not 19
                  "In all she spends 12 + 19 = <<12+19=31>>31 dollars.",
                  "She gets 50 - 31 = <<50-31=19>>19 dollars back.",
                  "#### 19")
    trace = trace_from_sample(MIA, text, "t")
    assert trace.meta["gold_labels"] == [1, 0, 0, 0]
    assert trace.meta["gold_first_error"] == 1
    assert trace.first_error() == 1
    assert trace.outcome_label == 0 and trace.final_answer == "19"


def test_gold_visible_result_must_repeat_the_note_value():
    slipped = "The books cost 2 * 9 = <<2*9=18>>19 dollars."
    assert gold_labels(MIA, [MIA.steps[0], slipped]) == [1, 0]


def test_gold_right_arithmetic_with_a_value_the_program_does_not_need_is_wrong():
    useless = "The pens and books are 3 * 9 = <<3*9=27>>27 things."  # true, but 27 leads nowhere
    labels = gold_labels(MIA, [MIA.steps[0], useless, MIA.steps[1], MIA.steps[2], MIA.steps[3]])
    assert labels == [1, 0, 0, 0, 0]


def test_gold_wrong_final_answer_after_correct_steps_keeps_step_labels():
    trace = trace_from_sample(MIA, sample(*MIA.steps[:3], "#### 30"), "t")  # stopped one step early
    assert trace.hard_labels == [1, 1, 1]
    assert trace.meta["gold_first_error"] == -1
    assert trace.outcome_label == 0 and trace.meta["gold_answer_error"] is True


def test_gold_steps_without_notes_are_judged_by_their_numbers():
    assert gold_labels(MIA, ["Let's work out the cost first.", "So she spends 30 dollars.",
                             "She pays with the 50 dollar bill.", MIA.steps[3]]) == [1, 1, 1, 1]
    assert gold_labels(MIA, ["So she spends 31 dollars.", MIA.steps[3]]) == [0, 0]


def test_gold_malformed_notes_are_wrong_and_missing_answer_line_fails_the_outcome():
    assert gold_labels(MIA, ["The pens cost <<3*4>>12 dollars."]) == [0]
    assert gold_labels(MIA, ["The pens cost 3 * 4 = <<3*4=12 dollars."]) == [0]
    trace = trace_from_sample(MIA, sample(*MIA.steps), "t")
    assert trace.final_answer is None and trace.outcome_label == 0
    assert trace.hard_labels == [1, 1, 1, 1]


def test_trace_from_sample_reads_only_up_to_the_answer_line():
    text = sample(*MIA.steps, "#### 20", "Question: something else", "#### 99")
    trace = trace_from_sample(MIA, text, "t")
    assert len(trace.steps) == 4 and trace.final_answer == "20" and trace.outcome_label == 1


def test_expressions_are_evaluated_exactly_and_never_executed():
    assert evaluate_expression("3*4") == 12
    assert evaluate_expression("(2+3) x 4") == 20
    assert evaluate_expression("1,200/3") == 400
    assert evaluate_expression("12/60") == Fraction(1, 5)
    assert evaluate_expression("0.2*50") == 10
    assert evaluate_expression("-3+5") == 2
    for hostile in ["__import__('os').system('true')", "2**10", "a+1", "1/0", "[1]*3", "3 4", ""]:
        assert evaluate_expression(hostile) is None, hostile
