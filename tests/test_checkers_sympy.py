"""The symbolic checker on real GSM8K and MATH500 text, with real sympy calls."""

import json
import random

import pytest

from annotate.checkers import get_checker
from annotate.checkers.claims import extract_claims
from prm.formats.gsm8k import inject_calculator_error, parse_gsm8k_answer, read_gsm8k


@pytest.fixture(scope="module")
def checker():
    return get_checker("sympy")


@pytest.fixture(scope="module")
def gsm8k_rows(shared_data):
    with open(shared_data / "gsm8k" / "train.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def math500(shared_data):
    with open(shared_data / "math500" / "test.jsonl", encoding="utf-8") as handle:
        return {row["unique_id"]: row for row in map(json.loads, handle)}


def gsm8k_steps(rows, index):
    return parse_gsm8k_answer(rows[index]["answer"])[0]


def test_calculator_notes_of_real_gsm8k_solutions_are_verified(checker, shared_data):
    traces = read_gsm8k(shared_data / "gsm8k" / "train.jsonl", limit=40)
    notes = [r for t in traces for s in t.steps for r in checker.check_claims(s.text)
             if r.claim.kind == "note"]
    assert len(notes) > 80
    assert {r.status for r in notes} == {"verified"}
    verdicts = [checker.check(t.problem, [], s.text) for t in traces for s in t.steps]
    assert not [v for v in verdicts if v.status == "refuted"]
    assert all(v.backend.startswith("sympy ") and v.seconds is not None for v in verdicts)


def test_plain_text_and_note_of_a_real_line_are_both_claims(checker, gsm8k_rows):
    step = gsm8k_steps(gsm8k_rows, 0)[0]  # "Natalia sold 48/2 = <<48/2=24>>24 clips in May."
    kinds = [c.kind for c in extract_claims(step)]
    assert kinds == ["note", "note-result", "arithmetic"]
    verdict = checker.check("", [], step)
    assert verdict.status == "verified" and "48/2 = 24" in verdict.claim


def test_a_genuine_gsm8k_slip_is_refuted_with_the_computed_value(checker, gsm8k_rows):
    step = gsm8k_steps(gsm8k_rows, 6157)[4]  # "... over 100 acts, 70 + 40 = 100 people ..."
    verdict = checker.check("", [], step)
    assert verdict.status == "refuted"
    assert "70 + 40 = 100" in verdict.evidence and "110" in verdict.evidence


def test_injected_calculator_errors_are_refuted_at_the_corrupted_step(checker, shared_data):
    traces = read_gsm8k(shared_data / "gsm8k" / "train.jsonl", limit=30)
    rng = random.Random(1)
    for trace in filter(None, (inject_calculator_error(t, rng) for t in traces)):
        statuses = [checker.check(trace.problem, [], s.text).status for s in trace.steps]
        assert statuses.index("refuted") == trace.meta["gold_first_error"], trace.id


def test_the_number_after_a_note_must_match_it(checker):
    verdict = checker.check("", [], "She has 3 * 4 = <<3*4=12>>13 apples.")
    assert verdict.status == "refuted" and "<<3*4=12>>13" in verdict.evidence


@pytest.mark.parametrize("step, status", [
    ("12 x 4 = 48", "verified"), ("12 x 4 = 49", "refuted"),
    ("It costs $1,200 / 4 = $300.", "verified"), ("It costs $1,200 / 4 = $400.", "refuted"),
    ("10/40 = 25%", "verified"), ("10/40*100 = 25%", "verified"), ("10/40 = 30%", "refuted"),
    ("3+4 = 7 x 2 = 14", "verified"), ("3+4 = 8 x 2 = 16", "refuted"), ("3+4 = 7 x 2 = 15", "refuted"),
    ("1/2 + 0.25 = 3/4", "verified"), ("25 / 1/3 = 75 cups", "verified"),
    ("25% of 80 = 20", "verified"), ("He paid $5 + $3 = $8 total.", "verified"),
])
def test_plain_arithmetic_claims(checker, step, status):
    assert checker.check("", [], step).status == status


def test_chains_are_checked_link_by_link_in_order(checker):
    results = checker.check_claims("3+4 = 7 x 2 = 14")
    assert [r.claim.text for r in results] == ["3+4 = 7 x 2", "7 x 2 = 14"]
    assert "running total" in results[0].detail
    wrong = checker.check_claims("3+4 = 7 x 2 = 15")
    assert [r.status for r in wrong] == ["verified", "refuted"]


@pytest.mark.parametrize("step, status", [
    ("10/3 = 3.33", "verified"),  # the step rounds: fewer decimals than the exact value
    ("10/3 = 3.35", "refuted"),
    ("100/4 = 25.1", "refuted"),  # an exact value never gets a tolerance
    ("He needs about 100/3 = 30 boxes", "verified"),  # "about": last significant digit
    ("He needs 100/3 = 30 boxes", "refuted"),
    ("$\\pi \\approx 3.14$", "verified"), ("$\\pi \\approx 3.24$", "refuted"),
])
def test_tolerance_only_for_values_the_step_rounds(checker, step, status):
    assert checker.check("", [], step).status == status


@pytest.mark.parametrize("step", [
    "5 packs of 3 = 15 pens",  # a bare number on each side is not arithmetic
    "half of 10 + 2 = 7",  # the left side is cut off by a word
    "He had 10 apples - 5 = 5",  # so is a binary minus after a word
    "Week 2 = 35 + 35",  # a label, not a quantity
    "He has to leave at 0900-0130 = 0730 hours",  # clock times
    "$1 / 2 = 50 cents",  # a unit change
    "So, $125^2+120^2=117^2$? I don't think so!",  # the step doubts it itself
])
def test_misleading_text_is_never_refuted(checker, step):
    assert checker.check("", [], step).status != "refuted"


@pytest.mark.parametrize("uid, sentence", [
    ("test/algebra/1082.json", r"The common denominator desired is $\sqrt{2}\cdot\sqrt{3} = \sqrt{6}$."),
    ("test/number_theory/368.json", r"$6^{3}=216$, which can go into 999 four times at most, leaving $999-4\cdot216 = 135$ for the next three digits."),
    ("test/geometry/73.json", r"Since the sphere has a radius of 6 centimeters, its volume is $\frac{4}{3}\cdot6^3\pi = 288\pi$ cubic centimeters."),
    ("test/algebra/1303.json", r"The cube root of 64 is $\sqrt[3]{64}=4$."),
])
def test_math500_latex_claims_are_verified_and_a_changed_number_refuted(checker, math500, uid, sentence):
    assert sentence in math500[uid]["solution"]
    assert checker.check("", [], sentence).status == "verified"
    corrupted = sentence.replace("216", "217").replace("288", "289").replace("=4", "=5") \
        .replace(r"= \sqrt{6}", r"= \sqrt{7}")
    assert checker.check("", [], corrupted).status == "refuted"


def test_identities_are_verified_and_equations_left_unknown(checker):
    assert checker.check("", [], "$(a+b)^2 = a^2 + 2ab + b^2$").status == "verified"
    assert checker.check("", [], "(a+b)^2 = a^2 + 2ab + b^2").status == "verified"
    assert checker.check("", [], "So $2x + 1 = 7$.").status == "unknown"


def test_no_claim_means_unknown_never_a_pass(checker):
    verdict = checker.check("", [], "Let S be the amount Alexis paid for the shoes.")
    assert verdict.status == "unknown" and not verdict.passed
