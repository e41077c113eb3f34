"""Monte Carlo labels, binary search and budgets, on a scripted completer.

The scripted completer is a test double for the algorithm logic only: from a prefix that
contains no step marked "BAD" a sample reaches the answer with probability `p` (decided by
a hash of seed, prompt and sample index, so it is deterministic); from a prefix with a BAD
step it never does. Everything that needs a real model is in test_annotate_integration.py.
"""

import math

import pytest

from annotate.binary_search import label_trace as binary_label
from annotate.grading import Grader
from annotate.config import AnnotateConfig
from annotate.monte_carlo import label_trace as mc_label
from annotate.rollouts import spread
from helpers.completers import ANSWER, ScriptedCompleter, make_trace
from prm.records import Rollouts


@pytest.fixture(scope="module")
def grader():
    return Grader()


def test_monte_carlo_soft_label_is_fraction_and_hard_label_is_any_success(grader):
    completer = ScriptedCompleter(p=0.5)
    trace = mc_label(make_trace(5, first_error=3), completer, AnnotateConfig(n=8), grader)
    assert completer.calls == [[2] * 5 + [6] * 5]  # every prefix and both rounds in one call (no budget)
    for i, step in enumerate(trace.steps):
        r = step.rollouts
        assert r.total == 8 and len(r.answers) == 8 and r.texts is None
        assert r.correct == sum(a == ANSWER for a in r.answers)
        assert step.soft_label == r.correct / 8
        assert step.hard_label == int(r.correct > 0)
        assert step.label_source == "monte-carlo"
        assert r.tokens == sum(10 + j % 3 for j in range(8))
        if i >= 3:
            assert r.correct == 0
    assert 0 < sum(s.rollouts.correct for s in trace.steps[:3]) < 24  # p = 0.5 really mixes
    assert trace.meta["annotation"]["rollouts"] == 40
    assert trace.meta["annotation"]["first_error"] == trace.first_error()


def test_monte_carlo_keeps_completion_texts_only_when_asked(grader):
    trace = mc_label(make_trace(2), ScriptedCompleter(), AnnotateConfig(n=2, keep_texts=True), grader)
    assert trace.steps[0].rollouts.texts == ["so on\n#### 42"] * 2


@pytest.mark.parametrize("n_steps", [1, 2, 5, 6, 9])
def test_binary_search_finds_every_first_error_in_log_probes(grader, n_steps):
    config = AnnotateConfig(method="binary", n=4, skip_correct=False)
    for first_error in [-1, *range(n_steps)]:
        completer = ScriptedCompleter(p=1.0)
        trace = binary_label(make_trace(n_steps, first_error), completer, config, grader)
        expected = first_error
        assert trace.meta["annotation"]["first_error"] == expected
        assert trace.first_error() == expected
        probes = trace.meta["annotation"]["probed"]
        assert len(probes) == len(set(probes)) <= math.ceil(math.log(n_steps + 1) / math.log(1.5))
        for i, step in enumerate(trace.steps):
            assert step.hard_label == (1 if expected == -1 or i < expected else 0)
            assert step.label_source == "binary-search"
            # soft labels only where rollouts were collected
            assert (step.soft_label is None) == (step.rollouts is None) == (i not in probes)


def test_binary_search_stops_a_probe_at_its_first_success(grader):
    completer = ScriptedCompleter(p=1.0)
    config = AnnotateConfig(method="binary", n=8, skip_correct=False)  # first batch: ceil(8/4) = 2
    trace = binary_label(make_trace(6, first_error=4), completer, config, grader)
    assert trace.first_error() == 4
    for i in trace.meta["annotation"]["probed"]:
        assert trace.steps[i].rollouts.total == (2 if i < 4 else 8)
    assert trace.steps[4].soft_label == 0.0


def test_a_failing_probe_replaced_by_an_earlier_one_costs_only_its_first_round(grader):
    config = AnnotateConfig(method="binary", n=8, skip_correct=False)  # rounds of 2 and 6
    trace = binary_label(make_trace(6, first_error=0), ScriptedCompleter(), config, grader)
    assert trace.meta["annotation"]["probed"] == [1, 0] and trace.first_error() == 0
    assert [trace.steps[i].rollouts.total for i in (1, 0)] == [2, 8]  # only the first error is sampled in full
    assert trace.meta["annotation"]["rollouts"] == 10  # confirming every failing probe in full: 16


def test_binary_search_after_error_option(grader):
    config = AnnotateConfig(method="binary", n=2, skip_correct=False, after_error="unknown")
    trace = binary_label(make_trace(8, first_error=2), ScriptedCompleter(), config, grader)
    probed = set(trace.meta["annotation"]["probed"])
    assert trace.hard_labels[:3] == [1, 1, 0]
    for i in range(3, 8):  # unknown unless the step was itself probed (then its evidence says 0)
        assert trace.steps[i].hard_label == (0 if i in probed else None)


def test_binary_search_labels_a_verified_correct_trace_without_rollouts(grader):
    completer = ScriptedCompleter()
    trace = binary_label(make_trace(6, final_answer="42.0"), completer, AnnotateConfig(method="binary"), grader)
    assert completer.calls == []
    assert trace.hard_labels == [1] * 6 and trace.soft_labels == [None] * 6
    assert trace.meta["annotation"]["shortcut"]
    # ... unless told to search anyway
    trace = binary_label(make_trace(6, final_answer="42"), completer,
                         AnnotateConfig(method="binary", skip_correct=False), grader)
    assert completer.calls and trace.hard_labels == [1] * 6


def test_binary_search_reuses_rollouts_already_in_the_input(grader):
    trace = make_trace(7, first_error=5)
    # step 3 already has a success, step 5 already has n failures: neither is sampled again
    trace.steps[3].rollouts = Rollouts(correct=1, total=3, answers=["42", "1", "2"])
    trace.steps[5].rollouts = Rollouts(correct=0, total=4, answers=["1"] * 4)
    completer = ScriptedCompleter()
    config = AnnotateConfig(method="binary", n=4, skip_correct=False)
    labelled = binary_label(trace, completer, config, grader)
    assert labelled.first_error() == 5
    assert labelled.steps[3].rollouts.total == 3 and labelled.steps[5].rollouts.total == 4
    assert labelled.meta["annotation"]["rollouts"] == completer.rollouts
    fresh = ScriptedCompleter()
    binary_label(trace, fresh, AnnotateConfig(method="binary", n=4, skip_correct=False, reuse_rollouts=False),
                 grader)
    assert fresh.rollouts > completer.rollouts


def test_monte_carlo_tops_up_input_rollouts_to_n(grader):
    trace = make_trace(3)
    trace.steps[1].rollouts = Rollouts(correct=0, total=3, answers=["1"] * 3, tokens=30)
    completer = ScriptedCompleter()
    labelled = mc_label(trace, completer, AnnotateConfig(n=4), grader)
    assert [s.rollouts.total for s in labelled.steps] == [4, 4, 4]
    assert completer.rollouts == 9
    assert labelled.steps[1].soft_label == 1 / 4


def test_prefixes_the_completer_refuses_get_unknown_labels_and_the_others_are_labelled(grader):
    completer = ScriptedCompleter(max_prefix=3)
    trace = mc_label(make_trace(6), completer, AnnotateConfig(n=2), grader)
    assert trace.hard_labels == [1, 1, 1, None, None, None]
    assert [s["step"] for s in trace.meta["annotation"]["skipped"]] == [3, 4, 5]
    assert "too long" in trace.meta["annotation"]["skipped"][0]["reason"]
    assert sum(map(len, completer.calls)) == 3 * 2  # the accepted prefixes, once in each of the 2 rounds
    config = AnnotateConfig(method="binary", n=2, skip_correct=False)
    binary = binary_label(make_trace(6, first_error=4), ScriptedCompleter(max_prefix=3), config, grader)
    assert binary.meta["annotation"]["first_error"] is None  # the search could not finish ...
    assert binary.hard_labels == [1, 1, 1, None, None, None]  # ... but went on below the refused prefix
    binary = binary_label(make_trace(6, first_error=1), ScriptedCompleter(max_prefix=3), config, grader)
    assert binary.meta["annotation"]["first_error"] == 1 and binary.hard_labels == [1, 0, 0, 0, 0, 0]


def test_spread_shares_rollouts_evenly_earlier_steps_first():
    assert spread([4, 4, 4, 4, 4], 7) == [2, 2, 1, 1, 1]
    assert spread([4, 0, 4], 100) == [4, 0, 4]
    assert spread([3, 3], 0) == [0, 0]


@pytest.mark.parametrize("max_rollouts", [0, 1, 7, 10, 19, 20, 50])
def test_rollout_budget_is_honoured_exactly_by_monte_carlo(grader, max_rollouts):
    completer = ScriptedCompleter()
    config = AnnotateConfig(n=4, max_rollouts=max_rollouts)
    trace = mc_label(make_trace(5), completer, config, grader)
    spent = min(max_rollouts, 20)
    assert completer.rollouts == spent == trace.meta["annotation"]["rollouts"]
    assert sum(s.rollouts.total for s in trace.steps if s.rollouts) == spent
    assert trace.meta["annotation"]["budget_limited"] == (max_rollouts < 20)
    for step in trace.steps:  # a step with no rollout is unknown, never 0
        assert (step.hard_label is None) == (step.rollouts is None)


@pytest.mark.parametrize("max_tokens", [0, 40, 100, 333, 1000])
def test_token_budget_is_never_exceeded(grader, max_tokens):
    for method in ("mc", "binary"):
        completer = ScriptedCompleter(p=0.3)
        config = AnnotateConfig(method=method, n=4, max_new_tokens=12, max_tokens=max_tokens, skip_correct=False)
        trace = binary_label(make_trace(6, 4), completer, config, grader) if method == "binary" else \
            mc_label(make_trace(6, 4), completer, config, grader)
        tokens = trace.meta["annotation"]["tokens"]
        assert tokens <= max_tokens
        assert tokens == sum(s.rollouts.tokens for s in trace.steps if s.rollouts)
        if trace.meta["annotation"]["budget_limited"]:  # stopped only when one more rollout might not fit
            assert max_tokens - tokens < 12 * (1 if method == "mc" else 4)


@pytest.mark.parametrize("max_rollouts", [0, 2, 3, 5, 9])
def test_rollout_budget_is_honoured_by_binary_search_and_leaves_the_rest_unknown(grader, max_rollouts):
    completer = ScriptedCompleter()
    config = AnnotateConfig(method="binary", n=4, probe_first=4, max_rollouts=max_rollouts, skip_correct=False)
    trace = binary_label(make_trace(12, first_error=9), completer, config, grader)
    assert completer.rollouts == trace.meta["annotation"]["rollouts"] <= max_rollouts
    if trace.meta["annotation"]["first_error"] is None:  # search cut short: some steps unknown
        assert None in trace.hard_labels
    else:
        assert trace.first_error() == 9
    known = [label for label in trace.hard_labels if label is not None]
    assert known == sorted(known, reverse=True)  # never a good step after a bad one


def test_binary_search_matches_monte_carlo_with_far_fewer_rollouts(grader):
    mc_rollouts = binary_rollouts = 0
    for first_error in [-1, 0, 3, 7, 11]:
        trace = make_trace(12, first_error)
        mc_completer, binary_completer = ScriptedCompleter(p=0.7), ScriptedCompleter(p=0.7)
        mc = mc_label(trace, mc_completer, AnnotateConfig(n=8), grader)
        binary = binary_label(trace, binary_completer, AnnotateConfig(method="binary", n=8, skip_correct=False),
                              grader)
        assert mc.first_error() == binary.first_error() == first_error
        mc_rollouts += mc_completer.rollouts
        binary_rollouts += binary_completer.rollouts
    assert binary_rollouts * 3 <= mc_rollouts


def test_labels_depend_only_on_seed_and_trace_not_on_call_order(grader):
    config = AnnotateConfig(n=4)
    a, b = make_trace(4, trace_id="a"), make_trace(4, trace_id="b")
    completer = ScriptedCompleter(p=0.5)
    first = [mc_label(t, completer, config, grader).to_dict() for t in (a, b)]
    second = [mc_label(t, completer, config, grader).to_dict() for t in (b, a)][::-1]
    for x, y in zip(first, second):
        x["meta"].pop("annotation"), y["meta"].pop("annotation")
        for sx, sy in zip(x["steps"], y["steps"]):
            sx["rollouts"].pop("seconds"), sy["rollouts"].pop("seconds")
    assert first == second
    other_seed = mc_label(a, completer, AnnotateConfig(n=4, seed=1), grader)
    assert [s.rollouts.answers for s in other_seed.steps] != [s["rollouts"]["answers"] for s in first[0]["steps"]]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        AnnotateConfig(method="mcts")
    with pytest.raises(ValueError):
        AnnotateConfig(after_error="maybe")
    with pytest.raises(ValueError):
        AnnotateConfig(n=0)


def test_a_probe_sees_exactly_the_completions_monte_carlo_gives_that_prefix(grader):
    for first_error in (-1, 1, 4):
        trace = make_trace(8, first_error, trace_id=f"same-{first_error}")
        mc = mc_label(trace, ScriptedCompleter(p=0.3), AnnotateConfig(n=8), grader)
        binary = binary_label(trace, ScriptedCompleter(p=0.3), AnnotateConfig(method="binary", n=8,
                                                                              skip_correct=False), grader)
        for index in binary.meta["annotation"]["probed"]:
            seen = binary.steps[index].rollouts
            assert seen.answers == mc.steps[index].rollouts.answers[:seen.total]
            if seen.correct > 0 or seen.total == 8:  # settled (not a suspect left after one round)
                assert int(seen.correct > 0) == mc.steps[index].hard_label  # the same verdict as Monte Carlo's
        assert binary.first_error() == mc.first_error()


def test_the_probe_point_is_a_third_of_the_way_in_and_leaves_at_most_two_thirds():
    from annotate.binary_search import probe_point

    assert probe_point(0, 6) == 1 and probe_point(0, 7) == 2 and probe_point(0, 1) == 0 and probe_point(0, 10) == 3
    for lo in range(0, 5):
        for top in range(lo + 1, 40):
            k = probe_point(lo, top)
            assert lo <= k < top and k <= (lo + top) // 2  # never later than the midpoint
            assert max(k - lo, top - k - 1) <= 2 * (top - lo) / 3  # what is left after the probe
