"""Beam search and DVTS with a causal reward model score each candidate from its parent's KV
cache (`StepScorer.score_prefixes`): the same search as re-scoring prefixes whole, with the
scorer's tokens counted in the search's compute."""

import pytest
import torch

from completers.world import generate_problems
from prm.reward.model import RewardModel, RewardModelOptions
from prm.reward.scorer import StepScorer
from prm.search import Problem, SearchConfig, search


class Whole(StepScorer):
    """The same model with only `score_many`: every prefix is scored from its first token."""

    def __init__(self, inner):
        self.inner, self.aggregation = inner, inner.aggregation

    def score_many(self, items, batch_size=None, progress=False):
        return self.inner.score_many(items, batch_size)


@pytest.fixture(scope="module")
def setup():
    from completers.text import PLAIN_TEMPLATE
    from completers.transformers_completer import TransformersCompleter

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = RewardModel.from_backbone("tiny-gsm", RewardModelOptions(prompt_template=PLAIN_TEMPLATE)).eval()
    problems = [Problem(p.id, p.question, str(p.answer)) for p in generate_problems(40, seed=3)[:3]]
    return TransformersCompleter("tiny-gsm"), model, problems


@pytest.mark.parametrize("strategy", ["beam", pytest.param("dvts", marks=pytest.mark.slow)])
def test_search_from_the_cache_equals_search_rescoring_whole_prefixes(setup, strategy):
    completer, model, problems = setup
    config = SearchConfig(strategy=strategy, budget="4x", tokens_per_solution=80, step_tokens=40, seed=1,
                          keep_tree=True)
    cached = search(problems, completer, model, config=config)
    whole = search(problems, completer, Whole(model), config=config)
    for a, b in zip(cached.traces, whole.traces):
        assert a.final_answer == b.final_answer and a.step_texts == b.step_texts
        assert a.scores == pytest.approx(b.scores, abs=1e-5)
        assert [n["step"] for n in a.meta["search"]["tree"]] == [n["step"] for n in b.meta["search"]["tree"]]
    c, w = cached.compute, whole.compute
    assert c.scored_items == w.scored_items and c.scored_items > 0
    # whole: the scorer's default score_prefixes counts no tokens; the cache runs only new tokens
    assert w.scorer_computed_tokens == 0
    assert c.scorer_tokens > 2 * c.scorer_computed_tokens
    assert c.scorer_new_tokens <= c.scorer_computed_tokens <= 1.2 * c.scorer_new_tokens
    per_problem = [t.meta["search"]["compute"] for t in cached.traces]
    for name in ("scorer_tokens", "scorer_computed_tokens", "scorer_new_tokens"):
        assert getattr(c, name) == sum(p[name] for p in per_problem), name


def test_search_with_the_completers_prompt_cache_equals_search_without_and_encodes_each_prefix_once(setup):
    """Same search with no prompt cache, a cache too small for a depth's prompts (entries
    evicted all the time) and a roomy one; with the cache a kept prefix is encoded once and
    extended by the step sampled for it (its keys and values kept from the decoding), and an
    extended prefix's entry is dropped."""
    from completers.transformers_completer import TransformersCompleter

    _, model, problems = setup
    config = SearchConfig(strategy="beam", budget="4x", tokens_per_solution=80, step_tokens=40, seed=1,
                          keep_tree=True)
    runs = {}
    for megabytes in (0, 1, 64):
        completer = TransformersCompleter("tiny-gsm", prompt_cache_mb=megabytes)
        runs[megabytes] = (search(problems, completer, model, config=config), dict(completer.counters))
        if megabytes:
            kept = completer.prompt_cache
            assert 0 < kept.bytes <= megabytes * 2**20
            assert not any(a != b and b[:len(a)] == a for a in kept.entries for b in kept.entries)
    (plain, plain_work), (cached, cached_work) = runs[0], runs[64]
    for run, _ in (runs[1], runs[64]):
        for a, b in zip(run.traces, plain.traces):
            assert a.final_answer == b.final_answer and a.step_texts == b.step_texts and a.scores == b.scores
            assert [n["step"] for n in a.meta["search"]["tree"]] == [n["step"] for n in b.meta["search"]["tree"]]
    assert cached_work["prompt_tokens"] == plain_work["prompt_tokens"]
    # neither the kept prefixes nor the steps just sampled for them are read again (~1/10 here):
    # about the delimiter after each step is left to encode
    assert cached_work["prefill_tokens"] < plain_work["prefill_tokens"] / 5
