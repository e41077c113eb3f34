"""One Completer interface: every backend implements `complete_prompts` with the base class's
signature, and what a caller asks for (stop strings, per-prompt seeds and sample counts)
reaches the model the same way in process and through the HTTP server."""

import inspect

import pytest

from completers.base import Completer, CompletionRequest, SamplingParams
from completers.openai_completer import OpenAICompleter
from completers.server import CompletionServer
from completers.transformers_completer import TransformersCompleter
from helpers.completers import PROBLEM, STEPS, build_char_gpt2


def backends() -> list[type]:
    classes = [TransformersCompleter, OpenAICompleter]
    try:
        from completers.vllm_completer import VLLMCompleter
    except ImportError:  # vLLM is not installed here: its class cannot be imported
        pass
    else:
        classes.append(VLLMCompleter)
    return classes


@pytest.mark.parametrize("backend", backends(), ids=lambda cls: cls.__name__)
def test_every_backend_has_the_base_signature_and_writes_nothing_twice(backend):
    assert inspect.signature(backend.complete_prompts) == inspect.signature(Completer.complete_prompts)
    for written_once in ("complete_many", "complete", "prompt_for"):
        assert written_once not in backend.__dict__, f"{backend.__name__} redefines {written_once}"


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return TransformersCompleter(build_char_gpt2(tmp_path_factory.mktemp("gpt2")))


def test_stop_strings_seeds_and_counts_reach_the_model_through_the_server(local):
    prompts = [local.prompt_for(PROBLEM, STEPS[:k]) for k in range(3)]
    params = SamplingParams(n=2, max_new_tokens=16, seed=0)
    asked = dict(stop=["e", "\n"], seeds=[5, 6, 7], ns=[1, 3, 2])
    expected = local.complete_prompts(prompts, params, **asked)
    assert [len(c) for c in expected] == [1, 3, 2]
    assert all("e" not in c.text and "\n" not in c.text for cs in expected for c in cs)
    with CompletionServer(local, "char-gpt2") as server:
        remote = OpenAICompleter(server.url, backoff=0.01)
        try:
            assert remote.complete_prompts(prompts, params, **asked) == expected
            # complete_many takes the same stop strings and builds the same prompts
            requests = [CompletionRequest(PROBLEM, STEPS[:k]) for k in range(3)]
            assert remote.complete_many(requests, params, stop=["e"]) == local.complete_many(requests, params,
                                                                                              stop=["e"])
        finally:
            remote.close()
