"""Answer extraction and equivalence, on real GSM8K and MATH500 answers."""

import json
import threading
import time

import pytest

from annotate.grading import Grader, extract_answer, last_boxed


@pytest.fixture(scope="module")
def grader():
    g = Grader()
    yield g
    g.close()


def rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


@pytest.mark.parametrize("text, answer", [
    ("She has 3 left.\n#### 18", "18"),
    ("a\n#### $1,200.\nQuestion: next one\n#### 7", "$1,200"),  # the first #### line, trailing period dropped
    (r"so $x = \boxed{\frac{1}{\sqrt{2}}}$.", r"\frac{1}{\sqrt{2}}"),
    (r"\boxed{1} then \boxed{\{2, 3\}}", r"\{2, 3\}"),  # the last box, nested braces
    (r"\boxed 5 is it", "5"),
    ("Thus the final answer is: $\\frac{3}{4}$.", r"\frac{3}{4}"),
    ("The answer is 18 dollars.\nBye", "18 dollars"),
    ("He pays 9 * 2 = 18\nA: 18", "18"),
    ("just some text 42", None),
    ("", None),
])
def test_extract_answer_formats(text, answer):
    assert extract_answer(text) == answer


def test_last_boxed_skips_an_unbalanced_box():
    assert last_boxed(r"\boxed{2} and \boxed{3") == "2"


@pytest.mark.parametrize("answer, reference", [
    ("1,000", "1000"), ("$18", "18"), ("18 dollars", "18"), ("$1,200 per month", "1200"), ("50%", "50"),
    ("3.0", "3"), (r"\frac{1}{2}", "0.5"), (r"\dfrac{14}{3}", "14/3"), ("[-2,7]", "[-2, 7]"),
    (r"(-\infty, 2]", r"(-\infty,2]"), (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
    ("x^2+2x+1", "(x+1)^2"), (r"\text{(C)}", "C"),
])
def test_equivalent_forms_are_accepted(grader, answer, reference):
    assert grader.is_equivalent(answer, reference)


@pytest.mark.parametrize("answer, reference", [
    ("17", "18"), ("18.5", "18"), ("1, 2, 3", "3"), (r"(-\infty, 2]", "2"), ("5 hours and 30 minutes", "5.5"),
    (r"\frac{1}{3}", "0.3"), ("", "1"), (None, "1"), ("1", None), ("x" * 500, "x" * 500 + "y"),
])
def test_different_answers_are_rejected(grader, answer, reference):
    assert not grader.is_equivalent(answer, reference)


def test_gsm8k_answers_and_model_solution_correctness_agree(grader, shared_data):
    test = rows(shared_data / "gsm8k" / "test.jsonl")
    for row in test:
        assert grader.grade(row["answer"], row["answer"].split("####")[-1].strip()) == \
            (extract_answer(row["answer"]), True)
    solutions = rows(shared_data / "gsm8k" / "example_model_solutions.jsonl")
    agree = total = 0
    for row in solutions:
        reference = extract_answer(row["ground_truth"])  # its last line is "A: x"
        for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
            _, correct = grader.grade(row[model]["solution"], reference)
            agree += correct == row[model]["is_correct"]
            total += 1
    assert total == 4 * 1319
    assert agree == total  # the grader reproduces the data set's is_correct on every solution


def test_math500_boxed_solutions_match_their_answers(grader, shared_data):
    problems = rows(shared_data / "math500" / "test.jsonl")
    assert len(problems) == 500
    for row in problems:
        assert grader.grade(row["solution"], row["answer"])[1], row["unique_id"]
    # and an answer is not accepted for its neighbour's problem, except where they are equal
    equal = {(problems[(i + 1) % 500]["answer"], row["answer"]) for i, row in enumerate(problems)
             if grader.is_equivalent(problems[(i + 1) % 500]["answer"], row["answer"])}
    assert equal == {("x=5", "5"), ("7", "7"), ("3", "3")}


PATHOLOGICAL = "9^{9^{9^{9^{9}}}}"  # sympy tries to evaluate this for ever


def test_a_comparison_that_hangs_times_out_in_the_main_thread():
    grader = Grader(timeout_seconds=1)
    assert not grader.is_equivalent(PATHOLOGICAL, "2")
    assert grader.timeouts >= 1


def test_a_comparison_that_hangs_times_out_in_a_worker_thread_too():
    grader = Grader(timeout_seconds=1)
    results = {}

    def work():
        start = time.perf_counter()
        results["hang"] = grader.is_equivalent(PATHOLOGICAL, "2")
        results["seconds"] = time.perf_counter() - start
        results["after"] = grader.is_equivalent(r"\frac{3}{4}", "0.75")  # the helper was restarted

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    grader.close()
    assert results["hang"] is False and grader.timeouts == 1
    assert results["seconds"] < 30  # killed, not waited out
    assert results["after"] is True
