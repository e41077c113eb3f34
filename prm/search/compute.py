"""Compute accounting and token budgets, in the same units for every search strategy.

`Compute` counts what a search spent: generated tokens (the budget's unit), sampled
completions, completer calls, scorer calls, scored prefixes and steps, the scorer's tokens
(`scorer_tokens`: the inputs of the prefixes scored; `scorer_computed_tokens`: what the
model ran, less when a causal scorer reuses a parent prefix's KV cache;
`scorer_new_tokens`: what no earlier prefix of the tree held, the least any scorer must
run), and wall time. A
run keeps one for the whole run (real call counts) and one per problem (the calls it took
part in; wall time shared among the problems of a call in proportion to their tokens).

`Budget` is what a problem may spend, in generated tokens; "8x" means the tokens of 8 full
solutions (`tokens_per_solution`, measured on the same completer), so methods are compared
at equal compute. Step-level strategies never exceed it: a sample is started only when the
remaining budget covers its worst case (its `max_new_tokens`), as `annotate.rollouts.Budget`
does for rollouts.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

_SOLUTIONS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:x|sol|solutions?)\s*$", re.IGNORECASE)


@dataclass
class Compute:
    """Work done, in the units every strategy reports (`seconds` is wall time, calls
    and bookkeeping; `completer_seconds` / `scorer_seconds` the time inside each kind of call)."""

    generated_tokens: int = 0
    completions: int = 0
    completer_calls: int = 0
    prompts: int = 0
    scorer_calls: int = 0
    scored_items: int = 0
    scored_steps: int = 0
    scorer_tokens: int = 0
    scorer_computed_tokens: int = 0
    scorer_new_tokens: int = 0
    completer_seconds: float = 0.0
    scorer_seconds: float = 0.0
    seconds: float = 0.0

    def add(self, other: Compute) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in ("completer_seconds", "scorer_seconds", "seconds"):
            data[name] = round(data[name], 4)
        return data

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class BudgetSpec:
    """A budget as given: `tokens`, or `solutions` full solutions' worth of tokens."""

    tokens: int | None = None
    solutions: float | None = None

    @classmethod
    def parse(cls, text: str | float | BudgetSpec) -> BudgetSpec:
        """`1200` (tokens) or `8x` / `8sol` (the tokens of 8 full solutions)."""
        if isinstance(text, BudgetSpec):
            return text
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            if text < 1:
                raise ValueError(f"a token budget must be at least 1, got {text}")
            return cls(tokens=int(text))
        match = _SOLUTIONS.match(str(text))
        if match:
            solutions = float(match.group(1))
            if solutions <= 0:
                raise ValueError(f"a budget needs at least some solutions, got {text!r}")
            return cls(solutions=solutions)
        try:
            tokens = int(str(text).strip())
        except ValueError:
            raise ValueError(f"a budget is a number of tokens (1200) or of full solutions (8x), got {text!r}") from None
        return cls.parse(tokens)

    def tokens_for(self, tokens_per_solution: float | None) -> int:
        """The budget in generated tokens."""
        if self.tokens is not None:
            return self.tokens
        if tokens_per_solution is None or tokens_per_solution <= 0:
            raise ValueError("a budget in solutions (e.g. 8x) needs tokens_per_solution")
        return max(1, int(self.solutions * tokens_per_solution))

    def __str__(self) -> str:
        if self.tokens is not None:
            return str(self.tokens)
        return f"{self.solutions:g}x"


class Budget:
    """The generated tokens one problem (or one subtree) may still spend; never overdrawn."""

    def __init__(self, tokens: int):
        self.total = int(tokens)
        self.spent = 0

    @property
    def remaining(self) -> int:
        return self.total - self.spent

    def affordable(self, max_new_tokens: int) -> int:
        """How many samples of at most `max_new_tokens` tokens each may start now."""
        return max(0, self.remaining // max(1, max_new_tokens))

    def spend(self, tokens: int) -> None:
        if tokens > self.remaining:
            raise RuntimeError(f"budget overdrawn: {tokens} tokens spent with {self.remaining} left "
                               "(a completer returned more tokens than max_new_tokens)")
        self.spent += tokens
