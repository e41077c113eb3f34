"""What a search is given: the problems and the settings (`SearchConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from prm.aggregate import AGGREGATIONS
from prm.records import Trace
from prm.search.compute import BudgetSpec

STRATEGIES = ("best-of-n", "weighted-vote", "majority", "beam", "dvts", "adaptive")
SAMPLING_STRATEGIES = ("best-of-n", "weighted-vote", "majority")  # whole solutions, then a choice
TREE_STRATEGIES = ("beam", "dvts")  # step by step, guided by the scorer


@dataclass
class Problem:
    """One problem to solve: an id (for seeds, resume and shards), the question, and the
    reference answer if known (then the result says whether it was solved)."""

    id: str
    question: str
    reference_answer: str | None = None


def problems_from_traces(traces: list[Trace]) -> list[Problem]:
    """One `Problem` per distinct problem of `traces` (by `meta["problem_id"]`, else the trace
    id), in order of first appearance; any trace format `prm.formats.read` gives will do."""
    problems, seen = [], set()
    for trace in traces:
        key = str(trace.meta.get("problem_id") or trace.id)
        if key in seen:
            continue
        seen.add(key)
        reference = None if trace.reference_answer is None else str(trace.reference_answer)
        problems.append(Problem(key, trace.problem, reference))
    return problems


@dataclass
class SearchConfig:
    """Settings of a search (stored with every result, compared on resume).

    strategy: best-of-n (highest solution score), weighted-vote (answer with the largest sum
        of solution scores), majority (most frequent answer; no scorer needed), beam
        (step-level beam search), dvts (diverse verifier tree search: independent greedy
        subtrees).
    budget: generated tokens per problem ("1200") or the tokens of N full solutions ("8x").
        Sampling strategies draw N solutions for "Nx" (on average exactly the budget; a
        token budget is a hard cap); beam and DVTS never exceed the budget on any problem.
    tokens_per_solution: what "1x" is in tokens; None = measured by sampling one solution of
        a few problems before the run (`estimate_tokens_per_solution`).
    expand: candidates sampled from each kept prefix per step (K).
    width: prefixes kept per step (beam) or number of subtrees (dvts); None = N // expand,
        so that one step of the search samples about as many steps as N solutions have
        (2 for a budget in tokens).
    aggregation: step scores -> prefix/solution score (min, prod, last, mean).
    score_answer: score the `#### x` line as a step (else a finished solution's score is its
        steps' only, and solutions that differ only in their answer tie).
    final: how beam/DVTS choose among finished solutions: "best" score or weighted "vote".
    refill: beam/DVTS: a finished solution frees its slot for the next best unfinished prefix
        (the search runs until the budget is spent) instead of staying among the kept ones
        (the search stops when all kept prefixes are finished).
    lookahead: beam/DVTS: rank each new unfinished prefix by the score of one sampled
        continuation of up to this many more steps (its tokens come from the budget: a
        candidate reserves (1 + lookahead) x step_tokens). 0 = score the prefix itself.
    temperature, top_p: sampling.
    step_tokens: most tokens of one step (beam/DVTS); the budget reserves this per sample.
    solution_tokens: most tokens of one full solution (sampling strategies).
    max_depth: most steps of a searched solution.
    dedupe: drop a candidate step identical to another from the same prefix (its tokens count).
    seed: every sample's seed derives from (seed, problem id, position in the tree).
    keep_tree: record every explored node in the result (can be large).
    target, round_size: adaptive (`prm.search.adaptive`): sample round_size solutions a round
        and stop a problem once its best solution score reaches target (a probability when the
        scorer is calibrated with `prm calibrate`); the budget caps its samples.
    """

    strategy: str = "beam"
    budget: str = "8x"
    tokens_per_solution: float | None = None
    expand: int = 4
    width: int | None = None
    aggregation: str = "min"
    score_answer: bool = True
    final: str = "best"
    refill: bool = False
    lookahead: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    step_tokens: int = 64
    solution_tokens: int = 320
    max_depth: int = 16
    dedupe: bool = True
    seed: int = 0
    keep_tree: bool = False
    target: float = 0.9
    round_size: int = 2

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.final not in ("best", "vote"):
            raise ValueError(f"final must be 'best' or 'vote', got {self.final!r}")
        if not 0.0 <= self.target <= 1.0:
            raise ValueError(f"target must be in [0, 1], got {self.target}")
        for name in ("expand", "step_tokens", "solution_tokens", "max_depth", "round_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {self.lookahead}")
        if self.width is not None and self.width < 1:
            raise ValueError(f"width must be at least 1, got {self.width}")
        self.budget = str(BudgetSpec.parse(self.budget))

    @property
    def budget_spec(self) -> BudgetSpec:
        return BudgetSpec.parse(self.budget)

    def shape(self) -> tuple[int, int]:
        """(width, expand) actually used: width = N // expand unless given; expand <= N."""
        spec = self.budget_spec
        solutions = spec.solutions if spec.solutions is not None else None
        expand = self.expand if solutions is None else max(1, min(self.expand, int(solutions)))
        if self.width is not None:
            return self.width, expand
        return (max(1, int(solutions) // expand) if solutions is not None else 2), expand

    def settings(self) -> dict:
        """What decides the results (compared on resume); keep_tree does not."""
        data = asdict(self)
        data.pop("keep_tree")
        if self.strategy != "adaptive":  # results of the other strategies resume as before
            data.pop("target")
            data.pop("round_size")
        return data
