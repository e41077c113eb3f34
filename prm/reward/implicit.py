"""The arithmetic of implicit PRMs: process rewards from a causal LM trained on outcome labels.

"Free Process Rewards without Process Labels" (Yuan et al., arXiv 2412.01981) parameterises
a solution's outcome reward as the log-likelihood ratio of a trained causal LM `pi_theta`
and a frozen reference `pi_ref`:

    r(y) = beta * sum_i log(pi_theta(y_i | y_<i) / pi_ref(y_i | y_<i))

and trains it on outcome labels only (cross-entropy on sigmoid(r), or DPO on correct /
incorrect pairs of the same problem). The running value after step t is the same sum up to
the last token of step t, q_t; a step's reward is q_t - q_{t-1}, beta times the sum of the
step's token log-ratios. The paper shows q_t = beta * log E_{pi_ref}[exp(r(y) / beta) | y_<=t],
a soft estimate of the outcome reward given the prefix, so no step label is ever needed.

A step *score* in [0, 1] (what thresholds, first-error metrics and min-aggregation read) is
sigmoid(q_t): cross-entropy trains sigmoid(r(y)) to be the probability that the solution is
right, and q_t is that same logit estimated from the prefix, so sigmoid(q_t) is "the
probability that the solution turns out right given the steps so far", the quantity an ORM
read at every step end and Monte Carlo soft labels estimate. A step that makes success less
likely (a negative step reward) lowers the running value and so the score of every later
prefix. The step rewards themselves (unbounded) are what dense RL rewards use.

Only tensors here; the model class, `prm.reward.model.ImplicitPRM` (``head="implicit"``),
holds the two LMs and computes these on them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMPLICIT_LOSSES = ("ce", "dpo")  # `ImplicitPRM.loss`: outcome cross-entropy, or DPO on pairs


def token_log_probs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for every position, shape (batch, length); position 0 gets 0
    (nothing predicts the first token)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return F.pad(picked, (1, 0))


def response_mask(input_ids: torch.Tensor, answer_start: torch.Tensor | None,
                  attention_mask: torch.Tensor | None) -> torch.Tensor:
    """1.0 on the tokens of the response (from answer_start on, not padding), else 0.0."""
    position = torch.arange(input_ids.size(1), device=input_ids.device).unsqueeze(0)
    start = answer_start if answer_start is not None else torch.ones(input_ids.size(0), dtype=torch.long,
                                                                       device=input_ids.device)
    mask = position >= start.view(-1, 1).clamp(min=1)
    if attention_mask is not None:
        mask = mask & attention_mask.bool()
    return mask.float()


def token_log_ratios(policy_logits: torch.Tensor, reference_logits: torch.Tensor, input_ids: torch.Tensor,
                     answer_start: torch.Tensor | None = None,
                     attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log pi_theta(y_t) - log pi_ref(y_t) on the response's tokens, 0 elsewhere; (batch, length)."""
    ratio = token_log_probs(policy_logits, input_ids) - token_log_probs(reference_logits, input_ids).detach()
    return ratio * response_mask(input_ids, answer_start, attention_mask)


def running_values(log_ratios: torch.Tensor, step_positions: torch.Tensor, beta: float) -> torch.Tensor:
    """q_t: beta times the sum of the token log-ratios up to the end of step t; (batch, steps).
    Padded step positions (-1) get 0."""
    cumulative = log_ratios.cumsum(dim=1)
    values = beta * cumulative.gather(1, step_positions.clamp(min=0))
    return torch.where(step_positions >= 0, values, torch.zeros_like(values))


def step_rewards(values: torch.Tensor) -> torch.Tensor:
    """Per-step rewards q_t - q_{t-1} (q_0 = 0) from running values; (batch, steps)."""
    return values - F.pad(values[:, :-1], (1, 0))


def dpo_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """DPO on implicit rewards (beta already inside r): mean of -log sigmoid(r_chosen - r_rejected)."""
    return -F.logsigmoid(chosen_rewards.float() - rejected_rewards.float()).mean()
