"""The formal checker: real z3 calls proving and refuting steps from the steps before."""

import json

import pytest
import z3

from annotate.checkers import get_checker
from prm.formats.gsm8k import parse_gsm8k_answer


@pytest.fixture(scope="module")
def checker():
    return get_checker("z3")


def test_a_consequence_of_the_previous_step_is_proved(checker):
    verdict = checker.check("", ["x = 3"], "therefore 2x + 1 = 7")
    assert verdict.status == "verified" and "follows from x = 3" in verdict.evidence
    assert verdict.backend == f"z3 {z3.get_version_string()}"


def test_an_identity_needs_no_hypothesis(checker):
    assert checker.check("", [], "$(a+b)^2 = a^2 + 2ab + b^2$").status == "verified"
    assert checker.check("", [], "$(a-b)(a+b) = a^2 - b^2$").status == "verified"


def test_a_claim_that_does_not_follow_is_refuted_with_a_counter_example(checker):
    verdict = checker.check("", ["$x^2 = 9$"], "Therefore $x = 3$.")
    assert verdict.status == "refuted"
    assert "counter-example x = -3" in verdict.evidence


def test_contradiction_mode_refutes_only_contradictions():
    lenient = get_checker("z3", refute="contradiction")
    assert lenient.check("", ["$x^2 = 9$"], "Therefore $x = 3$.").status == "unknown"
    assert lenient.check("", ["x = 3"], "so 2x + 1 = 8").status == "refuted"


def test_stated_alternatives_are_not_refuted(checker):
    assert checker.check("", ["$x^2 = 9$"], "So $x = 3$ or $x = -3$.").status == "unknown"


def test_equations_of_the_problem_are_hypotheses(checker):
    problem = "If $2x + 3 = 7$, what is $x$?"
    assert checker.check(problem, [], "So $x = 2$.").status == "verified"
    assert checker.check(problem, [], "So $x = 3$.").status == "refuted"


def test_a_system_from_earlier_steps(checker):
    steps = ["That's right, so we have the equations $ar^4=7!$ and $ar^7=8!$."]
    assert checker.check("", steps, "So, $r^3 = 8$.").status == "verified"
    assert checker.check("", steps, "So, $r^3 = 9$.").status == "refuted"


def test_new_facts_and_tried_values_are_not_errors(checker):
    # a new equation about variables nothing pins down is information, not an error
    assert checker.check("", ["Let $S$ be the number of people.", "$S + 2S + 4S = 7S$"],
                         "All the ships had $7S = 847$ people.").status == "unknown"
    # trying another value is not contradicting the first one
    assert checker.check("", ["Let's try $n=2$: then $2n+1 = 5$."], "Now $n = 3$.").status != "refuted"
    assert checker.check("", ["Put $n=2$.", "Then $m = 2n + 1 = 5$."], "Now $n = 3$.").status != "refuted"


def test_a_genuine_error_in_a_gsm8k_reference_solution_is_found(checker, shared_data):
    with open(shared_data / "gsm8k" / "train.jsonl", encoding="utf-8") as handle:
        row = json.loads(handle.readlines()[1394])
    steps = parse_gsm8k_answer(row["answer"])[0]
    # "150 =10+4c." then "So, 4c = 150." (it is 140)
    verdict = checker.check(row["question"], steps[:2], steps[2])
    assert verdict.status == "refuted" and "contradicts" in verdict.evidence


def test_numeric_claims_are_proved_or_refuted(checker):
    assert checker.check("", [], "48/2 = <<48/2=24>>24 clips").status == "verified"
    refuted = checker.check("", [], "48/2 = <<48/2=25>>25 clips")
    assert refuted.status == "refuted" and "24" in refuted.evidence
    assert checker.check("", [], r"$\sqrt{8} = 2\sqrt{2}$").status == "verified"


def test_every_solver_call_has_a_timeout():
    quick = get_checker("z3", timeout_ms=1)
    verdict = quick.check("", ["$x^5 + 3x^4 - 7x^3 + y^6 = 11$", "$x y^3 - 5 = 2x^2$"],
                          "So $x^7 y^5 + x^3 = 13 y$.")
    assert verdict.status in ("unknown", "verified", "refuted")  # decided or gave up, never hangs
    assert verdict.seconds is not None
