"""The levers that make a reward model worth following in search: the answer line as a
labelled training step, and a stricter Monte Carlo label rule (`min_successes`)."""

from annotate.config import AnnotateConfig
from annotate.grading import Grader
from annotate.monte_carlo import label_trace
from completers.base import Completer, Completion, per_prompt
from prm.records import Step, Trace
from prm.search.answer_line import answer_step, with_answer_steps

# completions from the prefix ending at step i that reach the answer "5" (of 4)
SUCCESSES = {1: 4, 2: 1, 3: 0}


class CountedCompleter(Completer):
    """From a prefix of k steps, the first SUCCESSES[k] of the samples answer 5, the rest 4."""

    name = "counted"

    def complete_prompts(self, prompts, params, *, stop=None, seeds=None, ns=None):
        out = []
        for prompt, (_, n) in zip(prompts, per_prompt(params, len(prompts), seeds, ns)):
            steps = prompt.split("Answer:\n", 1)[1].count("\n")
            out.append([Completion("#### 5" if j < SUCCESSES[steps] else "#### 4", 3) for j in range(n)])
        return out


TRACE = Trace(id="t", problem="What?", steps=[Step("one"), Step("two"), Step("three")], final_answer="4",
              reference_answer="5", outcome_label=0, meta={"gold_labels": [1, 0, 0]})


def test_min_successes_makes_the_monte_carlo_rule_stricter():
    grader = Grader()
    try:
        # one round of 4 (probe_first=4): the scripted completer gives its successes per call
        default = label_trace(TRACE, CountedCompleter(), AnnotateConfig(n=4, probe_first=4), grader)
        strict = label_trace(TRACE, CountedCompleter(), AnnotateConfig(n=4, probe_first=4, min_successes=2), grader)
    finally:
        grader.close()
    assert [s.rollouts.correct for s in default.steps] == [4, 1, 0]
    assert default.hard_labels == [1, 1, 0]  # any success
    assert strict.hard_labels == [1, 0, 0]  # at least 2 of 4
    assert [s.soft_label for s in strict.steps] == [1.0, 0.25, 0.0]
    # the default leaves the stored settings as before (old outputs still resume); a stricter rule is recorded
    assert "min_successes" not in AnnotateConfig().settings()
    assert AnnotateConfig(min_successes=2).settings()["min_successes"] == 2


def test_answer_steps_are_labelled_by_the_outcome():
    right = Trace(id="r", problem="What?", steps=[Step("a", hard_label=1, label_source="monte-carlo")],
                  final_answer=" 5", reference_answer="5", outcome_label=1, meta={"gold_labels": [1]})
    unanswered = Trace(id="u", problem="What?", steps=[Step("a")], final_answer=None, outcome_label=0)
    wrong, right2, still = with_answer_steps([TRACE, right, unanswered])
    assert wrong.step_texts[-1] == answer_step("4") == "#### 4" and wrong.steps[-1].hard_label == 0
    assert wrong.meta["gold_labels"] == [1, 0, 0, 0]
    assert right2.steps[-1].text == "#### 5" and right2.steps[-1].hard_label == 1
    assert right2.steps[-1].soft_label == 1.0 and right2.steps[-1].label_source == "monte-carlo"
    assert still.step_texts == ["a"]
    assert len(TRACE.steps) == 3  # the input is not changed
