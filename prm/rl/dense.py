"""Dense process rewards: each step's score on the token where the step ends.

Trainers that take token-level rewards (verl's reward managers fill a `reward_tensor` of one
value per response token; PPO with per-token rewards) need to know which token closes each
step. `dense_rewards` scores the steps of each response (one `score_many` call) and maps
every step's end to a token index of the policy's tokenizer:

- given the response's token ids (what the policy generated; preferred), the response text
  is their decoding and a step ends on the first token whose decoded prefix covers the
  step's last character (found by bisection over prefix decodes);
- given only the text, it is tokenized with the (fast) tokenizer's character offsets, and a
  step ends on the last token that starts before the step's end.

`DenseReward.token_rewards(n)` lays the scores out on `n` tokens (0 elsewhere; an unscored
step adds nothing), optionally adding an outcome reward on the last token, e.g.

    for i, dense in enumerate(dense_rewards(scorer, tokenizer, problems, response_ids=ids)):
        reward_tensor[i, :len(ids[i])] = torch.tensor(dense.token_rewards(len(ids[i])))

Steps are split as everywhere in `prm.rl` (`prm.rl.text.step_spans`).

A scorer with token-level rewards (`prm.reward.scorer.TokenRewardScorer`: an implicit PRM,
whose reward of each token is beta * log(pi_theta / pi_ref), `ImplicitPRM.token_rewards`, as
PRIME uses it) has a natural token-level form. With such a scorer (`token_level=None` or
True) each of its tokens' rewards is put on the policy token holding that token's last
character (several scorer tokens may land on one policy token; their rewards add up), so a
step's rewards sum to its step reward q_t - q_{t-1}; `DenseReward.token_values` keeps the
(token, reward) pairs. `token_level=False` puts the step scores on the step ends as for any
scorer.
"""

from __future__ import annotations

from dataclasses import dataclass

from prm.reward.scorer import StepScorer, TokenRewardScorer
from prm.rl.text import step_spans


@dataclass
class DenseReward:
    """The steps of one response, their scores, and where each ends (character and token)."""

    steps: list[str]
    scores: list[float | None]
    end_chars: list[int]  # offset just after each step's last character in the response text
    end_tokens: list[int]  # index of the response token holding each step's last character
    token_values: list[tuple[int, float]] | None = None  # implicit PRM: (policy token, reward) pairs

    def token_rewards(self, n_tokens: int, outcome: float | None = None) -> list[float]:
        """One reward per token: each step's score on its last token (or, from an implicit PRM,
        every token's log-ratio reward on its token), `outcome` added on the last."""
        rewards = [0.0] * n_tokens
        pairs = self.token_values if self.token_values is not None else zip(self.end_tokens, self.scores)
        for token, score in pairs:
            if score is not None and 0 <= token < n_tokens:
                rewards[token] += float(score)
        if outcome is not None and n_tokens:
            rewards[-1] += float(outcome)
        return rewards


def dense_rewards(scorer: StepScorer, tokenizer, problems: list[str], responses: list[str] | None = None, *,
                  response_ids: list[list[int]] | None = None, step_separator: str = "\n",
                  batch_size: int | None = None, token_level: bool | None = None) -> list[DenseReward]:
    """Step scores of each (problem, response) with the token index where each step ends.

    Pass either `responses` (texts) or `response_ids` (token ids of the responses alone).
    token_level: None uses a scorer's token-level rewards when it has them (`TokenRewardScorer`,
    e.g. an implicit PRM), True requires them, False never uses them.
    """
    has_token_rewards = isinstance(scorer, TokenRewardScorer)
    if token_level and not has_token_rewards:
        raise ValueError("token_level=True needs a scorer with token-level rewards (token_rewards, e.g. an "
                         "implicit PRM)")
    token_level = has_token_rewards if token_level is None else token_level
    if (responses is None) == (response_ids is None):
        raise ValueError("pass either responses (texts) or response_ids (token ids), not both")
    if response_ids is not None:
        responses = [tokenizer.decode(ids, skip_special_tokens=False) for ids in response_ids]
    if len(problems) != len(responses):
        raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
    spans = [step_spans(text, step_separator) for text in responses]
    items = [(problem, [step for step, _ in s]) for problem, s in zip(problems, spans)]
    todo = [i for i, (_, steps) in enumerate(items) if steps]
    scored = scorer.score_many([items[i] for i in todo], batch_size) if todo else []
    scores: list[list[float | None]] = [[] for _ in items]
    for i, values in zip(todo, scored):
        scores[i] = list(values)
    per_token: list[list] = [[] for _ in items]
    if token_level and todo:
        for i, values in zip(todo, scorer.token_rewards([items[i] for i in todo], batch_size)):
            per_token[i] = values
    results = []
    for i, (text, s) in enumerate(zip(responses, spans)):
        ends = [end for _, end in s]
        tokens = _tokens_of_chars(tokenizer, text, ends, None if response_ids is None else response_ids[i])
        dense = DenseReward([step for step, _ in s], scores[i], ends, tokens)
        if token_level:
            chars = [end - len(step) + max(offset, 1) for (step, end), pairs in zip(s, per_token[i])
                     for offset, _ in pairs]
            values = [value for pairs in per_token[i] for _, value in pairs]
            dense.token_values = list(zip(_tokens_of_chars(tokenizer, text, chars,
                                                           None if response_ids is None else response_ids[i]),
                                          values))
        results.append(dense)
    return results


def _tokens_of_chars(tokenizer, text: str, ends: list[int], ids: list[int] | None) -> list[int]:
    """The response token holding the character just before each offset in `ends`."""
    if ids is not None:
        return [_token_of_char_from_ids(tokenizer, ids, end) for end in ends]
    return _token_of_char_from_text(tokenizer, text, ends)


def _token_of_char_from_ids(tokenizer, ids: list[int], end: int) -> int:
    """The first token whose decoded prefix reaches `end` characters (bisection over prefixes)."""
    low, high = 0, len(ids) - 1
    while low < high:
        middle = (low + high) // 2
        if len(tokenizer.decode(ids[:middle + 1], skip_special_tokens=False)) >= end:
            high = middle
        else:
            low = middle + 1
    return low


def _token_of_char_from_text(tokenizer, text: str, ends: list[int]) -> list[int]:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("mapping steps to tokens from text needs a fast tokenizer; pass response_ids instead")
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    tokens = []
    for end in ends:
        found = 0
        for index, (start, stop) in enumerate(offsets):
            if stop > start and start < end:
                found = index
            elif start >= end:
                break
        tokens.append(found)
    return tokens
