"""Search bookkeeping on hand-made trees: a scripted completer (the next step is a function of
the prefix and the sample index) and a scripted scorer (a score per step text). Checks the
budget is never exceeded, ties are broken by generation order, answer lines end beams,
the accounting adds up, and the sampling strategies agree with `evals.best_of_n`."""

import pytest

from completers.base import Completer, Completion, per_prompt
from prm.records import Step, Trace
from prm.reward.scorer import StepScorer
from prm.search import Problem, SearchConfig, search
from prm.search.choose import Candidate, choose

# next steps from a prefix (by its last line; "" = the root), chosen by the sample index
TREE = {
    "": ["a", "b", "c", "d"],
    "a": ["a1", "#### 1"],
    "b": ["b1", "#### 2"],
    "c": ["#### 3", "c1"],
    "d": ["d1", "d2"],
    "a1": ["#### 11", "#### 12"],
    "b1": ["#### 21", "#### 22"],
    "c1": ["#### 31", "#### 32"],
    "d1": ["#### 41", "#### 42"],
    "d2": ["#### 41", "#### 42"],
}
STEP_TOKENS = 5


class ScriptedCompleter(Completer):
    """Sample j from a prefix is TREE[last line][(seed + j) % 2 or 4]; each costs its length in
    characters + 1 (the stop) tokens, never more than max_new_tokens."""

    name = "scripted"

    def __init__(self):
        self.calls = []  # (prompts, ns, max_new_tokens)

    def complete_prompts(self, prompts, params, *, stop=None, seeds=None, ns=None):
        self.calls.append((list(prompts), [n for _, n in per_prompt(params, len(prompts), seeds, ns)],
                           params.max_new_tokens))
        out = []
        for prompt, (seed, n) in zip(prompts, per_prompt(params, len(prompts), seeds, ns)):
            last = prompt.rstrip("\n").split("\n")[-1]
            options = TREE.get("" if last == "Answer:" else last, ["#### 0"])
            if stop is None:  # a whole solution: walk the tree
                texts = []
                for j in range(n):
                    line, lines = options[j % len(options)], []
                    while True:
                        lines.append(line)
                        if line.startswith("####"):
                            break
                        line = TREE.get(line, ["#### 0"])[j % 2]
                    texts.append("\n".join(lines))
            else:
                texts = [options[j % len(options)] for j in range(n)]
            out.append([Completion(t, min(len(t) + 1, params.max_new_tokens), "stop") for t in texts])
        return out


class ScriptedScorer(StepScorer):
    """A fixed score per step text (default 0.5)."""

    def __init__(self, table=None):
        self.table = table or {}
        self.items = 0

    def score_many(self, items, batch_size=None, progress=False):
        self.items += len(items)
        return [[self.table.get(step, 0.5) for step in steps] for _, steps in items]


PROBLEMS = [Problem("p1", "first?", "11"), Problem("p2", "second?", "2")]


def run(strategy, budget, scorer=None, problems=PROBLEMS, **options):
    completer = ScriptedCompleter()
    options = {"step_tokens": STEP_TOKENS, "solution_tokens": 20, **options}
    config = SearchConfig(strategy=strategy, budget=budget, keep_tree=True, **options)
    return search(problems, completer, scorer or ScriptedScorer(), config=config), completer


@pytest.mark.parametrize("refill", [False, True])
@pytest.mark.parametrize("strategy", ["beam", "dvts"])
@pytest.mark.parametrize("budget", [1, 4, 9, 23, 40, 200])
def test_a_token_budget_is_never_exceeded(strategy, budget, refill):
    result, completer = run(strategy, budget, width=2, expand=2, refill=refill)
    for trace in result.traces:
        assert trace.meta["search"]["compute"]["generated_tokens"] <= budget
    for prompts, ns, cap in completer.calls:  # each call reserves its worst case within the budget
        assert cap <= STEP_TOKENS
        for problem in PROBLEMS:
            asked = sum(n for prompt, n in zip(prompts, ns) if problem.question in prompt)
            assert asked * cap <= budget
    if budget < STEP_TOKENS:
        assert completer.calls == [] and all(t.final_answer is None for t in result.traces)


def test_accounting_adds_up_over_problems_and_calls():
    result, completer = run("beam", 200, width=2, expand=2)
    per_problem = [t.meta["search"]["compute"] for t in result.traces]
    assert result.compute.completer_calls == len(completer.calls)
    assert result.compute.completions == sum(sum(ns) for _, ns, _ in completer.calls)
    for name in ("generated_tokens", "completions", "prompts", "scored_items", "scored_steps", "scorer_tokens",
                 "scorer_computed_tokens", "scorer_new_tokens"):
        assert getattr(result.compute, name) == sum(c[name] for c in per_problem), name
    # every node of the explored tree is counted once: its own tokens sum to the problem's total
    for trace in result.traces:
        tree = trace.meta["search"]["tree"]
        assert sum(node["tokens"] for node in tree) == trace.meta["search"]["compute"]["generated_tokens"]


def test_answer_lines_end_beams_and_are_never_expanded():
    result, completer = run("beam", 400, width=4, expand=2)
    for prompts, _, _ in completer.calls:
        assert not any("####" in prompt for prompt in prompts)
    for trace in result.traces:
        for node in trace.meta["search"]["tree"]:
            assert node["finished"] == (node["answer"] is not None or node["step"] is None and node["depth"] > 0)
        assert trace.meta["search"]["finished"]


def without_time(trace):
    data = trace.to_dict()
    data["meta"]["search"]["compute"] = {k: v for k, v in data["meta"]["search"]["compute"].items()
                                         if not k.endswith("seconds")}
    return data


def test_ties_are_broken_by_generation_order_and_repeat_exactly():
    # every step scores the same: beam keeps the first-generated prefixes, the earliest answer wins
    first, _ = run("beam", 200, width=2, expand=2)
    again, _ = run("beam", 200, width=2, expand=2, problems=list(reversed(PROBLEMS)))
    assert [without_time(t) for t in first.traces] == [without_time(t) for t in reversed(again.traces)]
    tree = first.traces[0].meta["search"]["tree"]
    kept_first_depth = [n["step"] for n in tree if n["depth"] == 1 and n["kept"]]
    assert kept_first_depth in ([], ["a", "b"])  # kept then expanded (kept flags move to children)
    assert [n["step"] for n in tree if n["depth"] == 1][:2] == ["a", "b"]


def test_the_scorer_steers_the_beam():
    table = {"d": 0.9, "d2": 0.95, "#### 42": 0.99, "a": 0.1, "b": 0.1, "c": 0.1}
    result, _ = run("beam", 200, scorer=ScriptedScorer(table), width=1, expand=4)
    trace = result.traces[0]
    assert trace.step_texts == ["d", "d2"] and trace.final_answer == "42"
    assert [s.score for s in trace.steps] == [0.9, 0.95]
    assert trace.meta["search"]["answer_score"] == 0.99 and trace.meta["search"]["score"] == 0.9


def test_the_answer_line_is_scored_only_when_asked():
    table = {"a": 0.9, "a1": 0.9, "#### 11": 0.2, "#### 12": 0.8}
    scored, _ = run("beam", 200, scorer=ScriptedScorer(table), width=1, expand=2)
    assert scored.traces[0].final_answer == "12"  # the answer line's score decides
    unscored, _ = run("beam", 200, scorer=ScriptedScorer(table), width=1, expand=2, score_answer=False)
    assert unscored.traces[0].final_answer == "11"  # a tie between the two answers: the first generated
    assert unscored.traces[0].meta["search"]["answer_score"] is None


def test_dvts_splits_the_budget_between_independent_subtrees():
    result, _ = run("dvts", 80, width=2, expand=2)
    for trace in result.traces:
        subtrees = {node["tree"] for node in trace.meta["search"]["tree"]}
        assert subtrees == {0, 1}
        for index in subtrees:
            spent = sum(n["tokens"] for n in trace.meta["search"]["tree"] if n["tree"] == index)
            assert spent <= 80 // 2


def test_budget_in_solutions_uses_tokens_per_solution():
    result, _ = run("beam", "2x", tokens_per_solution=10)
    assert all(t.meta["search"]["budget_tokens"] == 20 for t in result.traces)
    assert all(t.meta["search"]["compute"]["generated_tokens"] <= 20 for t in result.traces)
    estimated, _ = run("beam", "2x")  # measured on the completer first
    assert estimated.config.tokens_per_solution > 0 and estimated.calibration.completions == len(PROBLEMS)


def test_sampling_strategies_draw_n_solutions_and_pick_like_evals_best_of_n():
    from evals.best_of_n import best_of_n_curves

    table = {"a": 0.9, "a1": 0.8, "b": 0.7, "b1": 0.95, "c": 0.3, "d": 0.6, "d1": 0.5, "d2": 0.65}
    results = {}
    for strategy in ("best-of-n", "weighted-vote", "majority"):
        result, completer = run(strategy, "4x", scorer=ScriptedScorer(table), score_answer=False)
        assert len(completer.calls) == 1 and completer.calls[0][1] == [4, 4]
        results[strategy] = result
    # the same samples as traces, for evals.best_of_n (no ties here, so its random order does not matter)
    traces = []
    for trace in results["best-of-n"].traces:
        for j, sample in enumerate(trace.meta["search"]["tree"]):
            steps = [Step(text, score=score) for text, score in zip(sample["steps"], sample["scores"])]
            traces.append(Trace(id=f"{trace.id}-{j}", problem=trace.problem, steps=steps,
                                final_answer=sample["answer"], outcome_label=int(sample["correct"]),
                                meta={"problem_id": trace.id}))
    curves = best_of_n_curves(traces, ns=[4], repeats=1)["methods"]
    rate = {name: sum(t.outcome_label for t in r.traces) / len(r.traces) for name, r in results.items()}
    assert rate["best-of-n"] == curves["prm_min"][0]
    assert rate["weighted-vote"] == curves["weighted_min"][0]


def test_choose_breaks_vote_ties_by_first_appearance():
    cands = [Candidate(["x"], "5", score=0.5, order=(0,)), Candidate(["y"], "7", score=0.5, order=(1,)),
             Candidate(["z"], "$7.", score=0.1, order=(2,)), Candidate(["w"], "5.0", score=0.1, order=(3,))]
    assert choose(cands, "majority").answer == "5"  # 2 votes each: "5" appeared first
    assert choose(cands, "vote").answer == "5"  # 0.6 each
    assert choose(cands, "best").answer == "5"  # 0.5 tie: generated first
    assert choose([], "best") is None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="strategy"):
        SearchConfig(strategy="greedy")
    with pytest.raises(ValueError, match="budget"):
        SearchConfig(budget="lots")
    with pytest.raises(ValueError, match="scorer"):
        search(PROBLEMS, ScriptedCompleter(), None, strategy="beam", budget=100)


def test_refill_frees_the_slots_of_finished_solutions():
    kept, _ = run("beam", 400, width=2, expand=2)
    refilled, _ = run("beam", 400, width=2, expand=2, refill=True)
    for before, after in zip(kept.traces, refilled.traces):
        assert len(after.meta["search"]["candidates"]) > len(before.meta["search"]["candidates"])
        assert after.meta["search"]["compute"]["generated_tokens"] > before.meta["search"]["compute"]["generated_tokens"]
        assert after.meta["search"]["compute"]["generated_tokens"] <= 400


def test_a_tight_budget_still_gets_one_last_shorter_sample():
    # 24 tokens at 20 per step: "a" (2 tokens) and "a1" (3) one sample at a time, then 19 left:
    # not one full step, but a last sample capped at 19 tokens writes the answer line
    result, completer = run("beam", 24, width=1, expand=2, step_tokens=20)
    caps = [cap for _, _, cap in completer.calls]
    assert caps[0] == 20 and caps[-1] < 20
    assert all(t.meta["search"]["compute"]["generated_tokens"] <= 24 for t in result.traces)
    assert all(t.final_answer is not None for t in result.traces)  # the tail sample finished them


@pytest.mark.parametrize("lookahead", [1, 2])
@pytest.mark.parametrize("budget", [4, 12, 30, 200])
def test_lookahead_spends_within_the_budget_and_counts_its_tokens(budget, lookahead):
    result, _ = run("beam", budget, width=2, expand=2, lookahead=lookahead)
    for trace in result.traces:
        spent = trace.meta["search"]["compute"]["generated_tokens"]
        assert spent <= budget
        assert sum(node["tokens"] for node in trace.meta["search"]["tree"]) == spent
    assert result.compute.generated_tokens == sum(t.meta["search"]["compute"]["generated_tokens"]
                                                  for t in result.traces)


def test_lookahead_ranks_a_step_by_where_it_leads():
    table = {"a": 0.9, "a1": 0.1, "b": 0.2, "c": 0.2, "d": 0.6, "d1": 0.9, "d2": 0.9}
    plain, _ = run("beam", 400, scorer=ScriptedScorer(table), width=1, expand=4)
    ahead, _ = run("beam", 400, scorer=ScriptedScorer(table), width=1, expand=4, lookahead=1)
    assert plain.traces[0].step_texts[0] == "a"  # looks best on its own
    assert ahead.traces[0].step_texts[0] == "d"  # a's next step is bad, d's is good
    assert ahead.traces[0].steps[0].score == 0.6  # the step keeps its own score
    assert ahead.compute.completer_calls > plain.compute.completer_calls  # one lookahead call per depth
