"""Step scorers built from checkers: what symbolic or formal checking alone says about steps.

- `CheckerScorer(checkers)`: a `StepScorer` with no model. A step any checker refutes scores
  `REFUTED` (0.0), a step some checker verifies and none refutes `VERIFIED` (1.0), and every
  other step (no checkable claim, undecided, backend unavailable) the neutral `UNKNOWN`
  (0.5). The neutral value is a number, not None, on purpose: first-error evaluation
  (ProcessBench) needs a score on every step. With any threshold strictly between 0 and 0.5
  only refuted steps are errors, under both benchmark rules (ProcessBench: error when score
  < threshold; PRMBench: valid when score > threshold), so "a refuted step counts as the
  first error" and a step the checker cannot judge does not. `DEFAULT_THRESHOLD` (0.25) is
  such a threshold; the benchmark commands use it for `checker:` scorers.
- `CheckerAwareScorer(base_scorer, checkers, refuted_score=0.0)`: another scorer's scores,
  except that a step a checker refutes gets `refuted_score`. Only the refuted step is
  changed; later steps keep the base scores, and aggregation (min, prod) does the rest.

Checkers judge one step with the problem and the earlier steps as context
(`Checker.check(problem, previous_steps, step)`), never execute the text, and keep their
own time limits. `checkers` is a list of `Checker` objects or checker names ("sympy", "z3",
"lean"; see `annotate.checkers.get_checker`).

`workers=N` (checkers given by name) runs the checks on `prm check`'s worker pool
(`annotate.checkers.parallel.CheckerPool`: N processes, each check under the checker's hard
time limit, a check past it stopped and its step `unknown`), so scoring uses every core; the
verdicts, and so the scores, are the same as in one process. The checkers are then built in
the workers only; the pool's fork server starts when the scorer is made (it imports and
warms up the checkers while the caller goes on), the workers on the first call, and they
are kept for every later call (`close()` stops them). `workers=None` (the default of
the Python API) checks in this process, each checker keeping its own SIGALRM limit.
"""

from __future__ import annotations

import logging
import weakref

from annotate.checkers import Checker, get_checker, known_checker
from prm.records import Step, Trace, Verdict
from prm.reward.scorer import Item, StepScorer

logger = logging.getLogger(__name__)

REFUTED = 0.0
VERIFIED = 1.0
UNKNOWN = 0.5
DEFAULT_THRESHOLD = 0.25  # between REFUTED and UNKNOWN: exactly the refuted steps are errors


def make_checkers(checkers: list[Checker | str] | str) -> list[Checker]:
    """Checker objects from objects or names ("sympy", "z3", or "sympy,z3")."""
    if isinstance(checkers, str):
        checkers = [name for name in checkers.split(",") if name.strip()]
    made = [get_checker(c.strip()) if isinstance(c, str) else c for c in checkers]
    if not made:
        raise ValueError("at least one checker is needed")
    return made


class _Checking:
    """Runs every checker on every step of an item (shared by both scorers), in this process
    or, with `workers`, on a `CheckerPool` of that many processes."""

    def __init__(self, checkers: list[Checker | str] | str, workers: int | None = None):
        names = checkers.split(",") if isinstance(checkers, str) else checkers
        self.pool_options = {name.strip(): {} for name in names if name.strip()} \
            if all(isinstance(name, str) for name in names) else None
        if workers is not None and self.pool_options is None:
            raise ValueError("workers need checkers given by name (each worker builds its own)")
        self.workers = workers
        if workers is None or not self.pool_options:
            self._checkers = make_checkers(checkers)
        else:  # built in the workers only (this process skips importing sympy and z3); the pool's
            # fork server starts now, so that it is warm by the time the first traces come
            for name in self.pool_options:
                known_checker(name)
            self._checkers = None
            self._pool()

    @property
    def checkers(self) -> list[Checker]:
        """The checker objects (with workers, built here only when asked for)."""
        if self._checkers is None:
            self._checkers = make_checkers(list(self.pool_options))
        return self._checkers

    @property
    def checker_names(self) -> list[str]:
        return list(self.pool_options) if self.pool_options else [c.name for c in self.checkers]

    def verdicts(self, problem: str, steps: list[str]) -> list[list[Verdict]]:
        """For each step, every checker's verdict on it."""
        return [[checker.check(problem, list(steps[:i]), step) for checker in self.checkers]
                for i, step in enumerate(steps)]

    def _verdicts_many(self, items: list[Item], progress: bool):
        if self.workers is not None:
            yield from self._verdicts_in_pool(items, progress)
            return
        iterator = items
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(items, desc="checking", unit="trace")
        for problem, steps, *_ in iterator:  # items may carry extras after the steps
            yield self.verdicts(problem, list(steps))

    def _verdicts_in_pool(self, items: list[Item], progress: bool) -> list[list[list[Verdict]]]:
        """Every item's verdicts from a `CheckerPool` of `workers` processes, each checker under
        the time limit it keeps in-process (`seconds`). The pool is started on the first call
        and kept for the next ones (`close()` stops it): `prm eval` scores chunk by chunk, and
        each chunk would otherwise start the workers and their checkers again."""
        found: list = [[] for _ in items]  # an item without steps has nothing to check
        # the longest first: the call ends when its last trace does, so a long one left for the
        # end would keep one worker busy while the others wait
        todo = sorted((i for i, item in enumerate(items) if item[1]),
                      key=lambda i: -sum(len(step) + 1 for step in items[i][1]))
        traces = [Trace(str(i), items[i][0], [Step(text) for text in items[i][1]]) for i in todo]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(traces), desc="checking", unit="trace")  # (empty items: none to show)
        pool = self._pool()
        before = (pool.stats.timed_out, pool.stats.worker_deaths, len(pool.stats.timed_out_where))
        for position, trace in pool.check_traces(traces):
            found[todo[position]] = [list(step.verdicts) for step in trace.steps]
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        timed_out, deaths = pool.stats.timed_out - before[0], pool.stats.worker_deaths - before[1]
        if timed_out or deaths:  # their steps score UNKNOWN
            logger.warning("%d check(s) stopped at the time limit and %d worker(s) died; those steps are "
                           "unknown (%s)", timed_out, deaths, "; ".join(pool.stats.timed_out_where[before[2]:][:3]))
        return found

    def _pool(self):
        """The scorer's `CheckerPool`, started on first use and kept until `close()` (or until the
        scorer is garbage-collected; the workers also die with this process)."""
        if getattr(self, "_checker_pool", None) is None:
            from annotate.checkers.parallel import CheckerPool

            # (each checker's time limit is its own `seconds`, which the workers report)
            self._checker_pool = CheckerPool(self.pool_options, workers=self.workers, keep_workers=True)
            weakref.finalize(self, self._checker_pool.close)
        return self._checker_pool

    def close(self) -> None:
        """Stop the worker processes, if any were started (scoring again starts new ones)."""
        pool, self._checker_pool = getattr(self, "_checker_pool", None), None
        if pool is not None:
            pool.close(graceful=True)


def verdict_score(verdicts: list[Verdict]) -> float:
    """REFUTED if any verdict refutes, VERIFIED if one verifies (and none refutes), else UNKNOWN."""
    statuses = {v.status for v in verdicts}
    if "refuted" in statuses:
        return REFUTED
    if "verified" in statuses:
        return VERIFIED
    return UNKNOWN


class CheckerScorer(_Checking, StepScorer):
    """Scores steps by checker verdicts alone: 0.0 refuted, 1.0 verified, 0.5 otherwise."""

    aggregation = "min"
    default_threshold = DEFAULT_THRESHOLD

    def score_many(self, items: list[Item], batch_size: int | None = None,
                   progress: bool = False) -> list[list[float | None]]:
        """One score per step from the checkers' verdicts (batch_size is not used)."""
        return [[verdict_score(step) for step in verdicts]
                for verdicts in self._verdicts_many(items, progress)]

    def __repr__(self) -> str:
        return f"CheckerScorer({','.join(self.checker_names)})"


class CheckerAwareScorer(_Checking, StepScorer):
    """`base_scorer`'s scores with every checker-refuted step set to `refuted_score`."""

    def __init__(self, base_scorer: StepScorer, checkers: list[Checker | str] | str,
                 refuted_score: float = REFUTED, workers: int | None = None):
        super().__init__(checkers, workers)
        self.base_scorer, self.refuted_score = base_scorer, refuted_score

    @property
    def aggregation(self) -> str:  # the base model's own aggregation
        return self.base_scorer.aggregation

    def score_many(self, items: list[Item], batch_size: int | None = None,
                   progress: bool = False) -> list[list[float | None]]:
        """The base scores, then the refuted steps overridden."""
        items = [(item[0], list(item[1]), *item[2:]) for item in items]
        scores = self.base_scorer.score_many(items, batch_size, progress)
        for row, verdicts in zip(scores, self._verdicts_many(items, progress)):
            for index, step_verdicts in enumerate(verdicts):
                if any(v.status == "refuted" for v in step_verdicts):
                    row[index] = self.refuted_score
        return scores

    def __repr__(self) -> str:
        return f"CheckerAwareScorer({self.base_scorer!r}, {','.join(self.checker_names)})"
