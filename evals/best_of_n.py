"""Solution-level evaluation: choosing one answer among N sampled solutions.

For each problem we have several traces (grouped by `meta["problem_id"]`, else by the
problem text), each with a final answer and an outcome label. From N of them a method
picks one answer; the solve rate is the fraction of problems where that answer is right.
Methods:

- `oracle`: pass@N, right if any of the N is right (an upper bound);
- `majority`: the most frequent final answer (self-consistency);
- `orm`: the trace with the highest trace-level score: `meta["orm_score"]` when present
  (an outcome reward model's score, written by whoever ran the ORM), else the score of
  the last step;
- `prm_<agg>`: best-of-N, the trace with the highest PRM score aggregated over its steps
  by `agg` in min, prod, last, mean (`prm.aggregate`);
- `weighted_<agg>`: PRM-weighted majority vote, the answer with the largest sum of
  aggregated scores over the traces that give it.

Curves over N = 1, 2, 4, 8, ... average each method over `repeats` random subsets of N
traces per problem (a fixed seed; subsets are drawn in random order, so ties are broken
at random). Traces without an outcome label are left out. An answer counts as right if
any trace giving it is labelled right. Answers are compared as stripped strings; a trace
without a final answer takes no part in votes.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from prm.aggregate import AGGREGATIONS, aggregate
from prm.records import Trace


def orm_score(trace: Trace) -> float | None:
    """`meta["orm_score"]` if present, else the last step's score (None if neither)."""
    value = trace.meta.get("orm_score")
    return float(value) if value is not None else trace.steps[-1].score


def group_by_problem(traces: list[Trace]) -> dict[str, list[Trace]]:
    groups: dict[str, list[Trace]] = {}
    for trace in traces:
        key = trace.meta.get("problem_id")
        groups.setdefault(str(key) if key is not None else trace.problem, []).append(trace)
    return groups


def default_ns(group_sizes: list[int]) -> list[int]:
    """1, 2, 4, ... up to the median number of traces per problem (and that number
    itself when it is not a power of two)."""
    if not group_sizes:
        return []
    top = int(np.median(group_sizes))
    ns = [n for n in (2 ** k for k in range(32)) if n <= top]
    if top not in ns:
        ns.append(top)
    return ns


class _Problem:
    """One problem's traces as arrays, so each sampled subset is a few numpy calls."""

    def __init__(self, traces: list[Trace]):
        self.correct = np.array([t.outcome_label for t in traces], dtype=float)
        answers = [None if t.final_answer is None else str(t.final_answer).strip() for t in traces]
        names = sorted({a for a in answers if a is not None})
        self.answer = np.array([-1 if a is None else names.index(a) for a in answers])
        self.answer_right = np.zeros(len(names) + 1)  # last slot: "no answer", never right
        for a, c in zip(self.answer, self.correct):
            if a >= 0 and c == 1:
                self.answer_right[a] = 1
        self.n_answers = len(names)
        # Trace-level scores by name ("min", ..., "orm"); a name is kept only when every
        # trace has that score (unscored steps are skipped by prm.aggregate).
        self.scores: dict[str, np.ndarray] = {}
        candidates = {how: [aggregate(t.scores, how) for t in traces] for how in AGGREGATIONS}
        candidates["orm"] = [orm_score(t) for t in traces]
        for name, values in candidates.items():
            if all(v is not None for v in values):
                self.scores[name] = np.array(values, dtype=float)

    def solve_rates(self, picks: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        """Mean solve rate of each method over the subsets in `picks` (repeats x N)."""
        rates = {"oracle": self.correct[picks].max(axis=1).mean(),
                 "majority": self._vote(picks, np.ones(picks.shape), rng)}
        if "orm" in self.scores:
            rates["orm"] = self._best(picks, self.scores["orm"])
        for how in AGGREGATIONS:
            if how in self.scores:
                rates[f"prm_{how}"] = self._best(picks, self.scores[how])
                rates[f"weighted_{how}"] = self._vote(picks, self.scores[how][picks], rng)
        return rates

    def _best(self, picks: np.ndarray, scores: np.ndarray) -> float:
        chosen = picks[np.arange(len(picks)), scores[picks].argmax(axis=1)]
        return float(self.correct[chosen].mean())

    def _vote(self, picks: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> float:
        answers = self.answer[picks]
        votes = np.zeros((len(picks), self.n_answers + 1))
        rows = np.repeat(np.arange(len(picks)), picks.shape[1])
        voted = answers.ravel() >= 0
        np.add.at(votes, (rows[voted], answers.ravel()[voted]), weights.ravel()[voted])
        present = np.zeros(votes.shape, dtype=bool)
        present[rows[voted], answers.ravel()[voted]] = True
        votes[~present] = -np.inf  # only answers given in the subset can win
        tied = votes >= votes.max(axis=1, keepdims=True)
        winner = np.where(tied, rng.random(votes.shape), -1.0).argmax(axis=1)  # random among ties
        has_vote = (answers >= 0).any(axis=1)
        return float((self.answer_right[winner] * has_vote).mean())


def best_of_n_curves(traces: list[Trace], ns: list[int] | None = None, repeats: int = 64,
                     seed: int = 0) -> dict:
    """Solve rate of each method at each N, averaged over problems and random subsets.

    Only problems with at least max(ns) labelled traces are used, so every point of a
    curve is measured on the same problems. A PRM method appears when every used trace has
    that aggregated score. Returns {"n": [...], "methods": {name: [rate per N]},
    "problems", "traces", "unlabelled_traces", "repeats", "seed"}.
    """
    labelled = [t for t in traces if t.outcome_label is not None]
    groups = group_by_problem(labelled)
    sizes = [len(g) for g in groups.values() if len(g) >= 2]
    ns = sorted(set(ns)) if ns else default_ns(sizes)
    result = {"n": ns, "methods": {}, "problems": 0, "traces": 0,
              "unlabelled_traces": len(traces) - len(labelled), "repeats": repeats, "seed": seed}
    if not ns:
        return result
    used = [g for g in groups.values() if len(g) >= max(ns)]
    problems = [_Problem(g) for g in used]
    result["problems"], result["traces"] = len(used), sum(len(g) for g in used)
    if not problems:
        return result
    shared = set.intersection(*(set(problem.scores) for problem in problems))
    for problem in problems:  # a curve must cover every problem
        problem.scores = {name: values for name, values in problem.scores.items() if name in shared}
    if "orm" in shared:
        given = all(t.meta.get("orm_score") is not None for g in used for t in g)
        result["orm_source"] = "meta.orm_score" if given else "last step score"
    rng = np.random.default_rng(seed)
    methods: dict[str, list[float]] = {}
    for n in ns:
        totals: Counter = Counter()
        for problem in problems:
            size = len(problem.correct)
            picks = np.argsort(rng.random((repeats, size)), axis=1)[:, :n]
            for name, rate in problem.solve_rates(picks, rng).items():
                totals[name] += rate
        for name, total in totals.items():
            methods.setdefault(name, []).append(float(total / len(problems)))
    result["methods"] = methods
    return result
