"""Per-token advantages from per-step rewards, normalised within each GRPO group.

A completion's process rewards are "units": (token index, reward) pairs, a step's score on the
token where the step ends (`prm.rl.dense`), or one reward per token (an implicit PRM's
beta * log-ratios). For each group of completions of one prompt:

1. every unit's reward is normalised with the mean and standard deviation of all units of the
   group (DeepSeekMath §4.1.3: r~ = (r - mean(R)) / std(R));
2. a token's advantage is, over the units at or after it,
   - `credit="sum"`: the sum of their normalised rewards (DeepSeekMath's process supervision);
   - `credit="min"`: the smallest of them (PURE's min-form credit, Cheng et al. 2025: a
     completion's value is its worst step still to come, so stacking many good-looking steps
     earns nothing). Normalising then taking the min equals taking the min then normalising,
     because the normalisation is the same increasing map for the whole group.
   Tokens after the last unit (the answer line, EOS) get 0.

`mix_advantages` adds the outcome advantage (one per completion, broadcast over its tokens).
"""

from __future__ import annotations

import torch

CREDITS = ("sum", "min")
EPSILON = 1e-4  # as TRL's GRPO adds to the group's standard deviation


def process_advantages(units: list[list[tuple[int, float]]], n_tokens: int, group_size: int,
                       credit: str = "sum") -> torch.Tensor:
    """(completions, n_tokens) advantages from each completion's (token, reward) units.

    Completions come in groups of `group_size` consecutive rows (TRL's order); a group with
    fewer than two units, or whose units are all equal, gives all its tokens 0."""
    if credit not in CREDITS:
        raise ValueError(f"credit must be one of {CREDITS}, got {credit!r}")
    if len(units) % group_size:
        raise ValueError(f"{len(units)} completions do not form groups of {group_size}")
    advantages = torch.zeros(len(units), n_tokens)
    for first in range(0, len(units), group_size):
        group = units[first:first + group_size]
        rewards = torch.tensor([reward for row in group for _, reward in row], dtype=torch.float64)
        if rewards.numel() < 2:
            continue
        mean, std = rewards.mean(), rewards.std()
        for offset, row in enumerate(group):
            advantages[first + offset] = _credit(row, n_tokens, mean, std, credit)
    return advantages


def _credit(row: list[tuple[int, float]], n_tokens: int, mean, std, credit: str) -> torch.Tensor:
    row = [(token, reward) for token, reward in row if 0 <= token < n_tokens]
    if not row:
        return torch.zeros(n_tokens)
    ends = torch.tensor([token for token, _ in row])
    normalised = (torch.tensor([reward for _, reward in row], dtype=torch.float64) - mean) / (std + EPSILON)
    at_or_after = ends.view(1, -1) >= torch.arange(n_tokens).view(-1, 1)  # (tokens, units)
    if credit == "sum":
        result = torch.where(at_or_after, normalised, 0.0).sum(dim=1)
    else:
        result = torch.where(at_or_after, normalised, torch.inf).min(dim=1).values
        result = torch.where(at_or_after.any(dim=1), result, 0.0)
    return result.float()


def mix_advantages(process: torch.Tensor, outcome: torch.Tensor, process_weight: float = 1.0,
                   outcome_weight: float = 1.0) -> torch.Tensor:
    """process_weight * token advantages + outcome_weight * the completion's outcome advantage."""
    return process_weight * process + outcome_weight * outcome.view(-1, 1).to(process)
