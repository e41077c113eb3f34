"""TransformersCompleter: the shared-prefix sampler against the naive reference sampler,
seeds, stops, token counts, chat templates; on a tiny random GPT-2 built here and on the
trained tiny-gsm model when its checkpoint is present."""

import random
import subprocess
import sys

import pytest
import torch

from completers.base import CompletionRequest, SamplingParams
from completers.loading import load_completer
from completers.text import cut_at_stop
from completers.text import plain_prompt
from completers.text import chat_prompt
from completers.transformers_completer import FULL_LENGTH, TransformersCompleter, pick_tokens
from helpers.completers import CHAT_TEMPLATE, PROBLEM, STEPS, build_char_gpt2

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_char_gpt2(tmp_path_factory.mktemp("char-gpt2"))


@pytest.fixture(scope="module")
def completer(tiny_dir):
    return TransformersCompleter(tiny_dir)


def trace_prompts(completer, steps=STEPS):
    return [completer.prompt_for(PROBLEM, steps[:k]) for k in range(len(steps) + 1)]


@pytest.mark.parametrize("shared_attention", [True, False])
def test_shared_prefix_sampler_gives_the_naive_reference_samples(tiny_dir, shared_attention):
    completer = TransformersCompleter(tiny_dir, shared_attention=shared_attention)
    assert completer.shared_attention is shared_attention
    prompts = trace_prompts(completer)
    params = SamplingParams(n=4, temperature=0.8, top_p=0.9, max_new_tokens=24, seed=11)
    fast = completer.complete_prompts(prompts, params)
    assert fast == completer.reference_complete_prompts(prompts, params)
    assert [len(c) for c in fast] == [4] * len(prompts)
    assert len({c.text for completions in fast for c in completions}) > len(prompts)  # really sampled
    # longer than the cache's first room (64 new tokens), so the cache grows on the way
    long = SamplingParams(n=2, max_new_tokens=100, seed=2)
    grown = completer.complete_prompts(prompts[-2:], long)
    assert max(c.tokens for completions in grown for c in completions) > 64
    assert grown == completer.reference_complete_prompts(prompts[-2:], long)


def test_each_trace_prefix_and_each_prompt_are_encoded_once(completer):
    prompts = trace_prompts(completer)
    lengths = [len(completer.encode(p)) for p in prompts]
    work = {}
    for n in (1, 8):
        completer.prompt_cache.clear()  # (kept from call to call: see the test below)
        completer.counters.update({k: 0 for k in completer.counters})
        completer.complete_prompts(prompts, SamplingParams(n=n, max_new_tokens=4, seed=0))
        work[n] = dict(completer.counters)
    assert work[8]["prompt_tokens"] == sum(lengths)
    # the longest prompt once, then one token for each shorter prefix (its logits), whatever N
    assert work[8]["prefill_tokens"] == max(lengths) + len(prompts) - 1
    assert work[1]["prefill_tokens"] == work[8]["prefill_tokens"]


def test_same_seed_gives_same_samples_whatever_else_is_in_the_batch(completer):
    prompts = trace_prompts(completer)
    params = SamplingParams(n=3, max_new_tokens=16, seed=7)
    together = completer.complete_prompts(prompts, params)
    assert completer.complete_prompts(prompts, params) == together
    assert completer.complete_prompts(prompts[2:3], params)[0] == together[2]
    small_batches = TransformersCompleter(completer.path, batch_size=1)  # every rollout-length prompt alone
    assert small_batches.complete_prompts(prompts, params) == together
    rollouts = SamplingParams(n=3, max_new_tokens=FULL_LENGTH, seed=7)
    assert small_batches.complete_prompts(prompts, rollouts) == completer.complete_prompts(prompts, rollouts)
    other_seed = completer.complete_prompts(prompts, SamplingParams(n=3, max_new_tokens=16, seed=8))
    assert other_seed != together
    unseeded = SamplingParams(n=3, max_new_tokens=16, seed=None)
    assert completer.complete_prompts(prompts[:1], unseeded) != completer.complete_prompts(prompts[:1], unseeded)


def test_short_calls_decode_more_sequences_together_than_batch_size_rollouts(completer):
    """`batch_size` counts sequences of FULL_LENGTH new tokens: 16-token steps of 3 x 5 prompts
    fit in one chunk of a batch_size=1 completer (20 such steps), rollouts do not."""
    prompts = trace_prompts(completer)
    narrow = TransformersCompleter(completer.path, batch_size=1, prompt_cache_mb=0)
    wide = TransformersCompleter(completer.path, batch_size=128, prompt_cache_mb=0)
    forwards = {}
    for name, sampler in (("narrow", narrow), ("wide", wide)):
        for length in (16, FULL_LENGTH):
            sampler.counters.update({k: 0 for k in sampler.counters})
            sampler.complete_prompts(prompts, SamplingParams(n=3, max_new_tokens=length, seed=3))
            forwards[name, length] = sampler.counters["forward_calls"]
    assert len(prompts) * 3 <= 20
    assert forwards["narrow", 16] == forwards["wide", 16]
    assert forwards["narrow", FULL_LENGTH] > forwards["wide", FULL_LENGTH]


def test_a_prompt_extending_one_of_an_earlier_call_encodes_only_its_new_tokens_with_the_same_samples(completer):
    prompts = trace_prompts(completer)
    params = SamplingParams(n=3, max_new_tokens=16, seed=5)
    fresh = TransformersCompleter(completer.path, prompt_cache_mb=0).complete_prompts(prompts, params)
    completer.prompt_cache.clear()
    for depth, prompt in enumerate(prompts):  # a search: one step more at each call
        completer.counters.update({k: 0 for k in completer.counters})
        assert completer.complete_prompts([prompt], params) == [fresh[depth]]
        new_tokens = len(completer.encode(prompt)) - (len(completer.encode(prompts[depth - 1])) if depth else 0)
        assert completer.counters["prefill_tokens"] <= (new_tokens + 1 if depth else new_tokens)
    completer.counters.update({k: 0 for k in completer.counters})
    assert completer.complete_prompts(prompts[-1:], params) == fresh[-1:]
    assert completer.counters["prefill_tokens"] == 0  # asked again: nothing to encode


def test_a_search_depths_prompts_are_encoded_in_a_few_passes_with_the_reference_samples(tiny_dir):
    """A search's call: prompts of two problems, each extending a prompt of the call before by
    steps of different lengths, and a new problem's; their new tokens go through a few padded
    forward passes (not one per prompt), and every prompt gets the samples of the naive
    one-at-a-time sampler."""
    completer = TransformersCompleter(tiny_dir)
    other = "Bob has 5 boxes of 6 pens. He gives away 7. How many pens does he keep?"
    steps = {PROBLEM: [STEPS[:1], STEPS[:1] + ["12 - 2 = 10"], STEPS[:2], STEPS[:2] + ["10"]],
             other: [["5 * 6 = 30 pens"], ["5 boxes of 6 pens make 30 pens in all"], ["5 * 6 = 30", "30 - 7 = 23"]]}
    before = [completer.prompt_for(question, []) for question in steps]
    prompts = [completer.prompt_for(question, s) for question, variants in steps.items() for s in variants]
    prompts.append(completer.prompt_for("1 + 1?", []))  # nothing of it encoded before
    params = SamplingParams(n=1, max_new_tokens=1, seed=4)  # one token: no decoding pass after the prefill
    completer.complete_prompts(before, params)
    completer.counters.update({k: 0 for k in completer.counters})
    one_token = completer.complete_prompts(prompts, params)
    passes = completer.counters["forward_calls"]
    assert 1 <= passes <= 3 < len(prompts)
    # only the new tokens were encoded: each prompt's problem came from the call before
    assert completer.counters["prefill_tokens"] <= sum(len(completer.encode(p)) for p in prompts) - \
        sum(len(completer.encode(b)) for b in before) * 3 - len(completer.encode(before[1]))
    assert one_token == completer.reference_complete_prompts(prompts, params)
    sampled = SamplingParams(n=3, temperature=0.9, max_new_tokens=20, seed=4)
    completer.prompt_cache.clear()
    completer.complete_prompts(before, sampled)
    assert completer.complete_prompts(prompts, sampled) == completer.reference_complete_prompts(prompts, sampled)


def test_an_encoded_prompt_is_dropped_once_a_longer_one_extends_it_and_still_serves_its_tokens(completer):
    from completers.shared_prefix import PromptCache

    prompts = trace_prompts(completer)
    params = SamplingParams(n=2, max_new_tokens=8, seed=1)
    completer.prompt_cache.clear()
    for prompt in prompts:  # a search's kept prefix, one step longer at each call
        completer.complete_prompts([prompt], params)
    kept = list(completer.prompt_cache.entries)
    assert kept == [tuple(completer.encode(prompts[-1]))]  # one entry, holding every shorter prefix
    completer.counters.update({k: 0 for k in completer.counters})
    assert completer.complete_prompts(prompts[1:2], params) == \
        TransformersCompleter(completer.path, prompt_cache_mb=0).complete_prompts(prompts[1:2], params)
    assert completer.counters["prefill_tokens"] == 1  # only its last token, for its logits
    small = PromptCache(max_bytes=completer.prompt_cache.bytes // 2)
    small.add(completer.prompt_cache.entries[kept[0]])
    assert small.bytes == 0 and not small.entries  # larger than the whole cache: not kept


def test_a_prompt_extending_a_sample_of_the_last_call_by_its_step_delimiter_is_not_encoded_again(tiny_dir):
    """A search's next depth: the kept prefix plus a step just sampled (stopped at the delimiter)
    reuses the keys, values and logits its decoding computed; the samples are kept for one call
    only (a search's pruned steps are not kept), and the samples equal those of no cache."""
    completer = TransformersCompleter(tiny_dir)
    fresh = TransformersCompleter(tiny_dir, prompt_cache_mb=0)
    prompt = completer.prompt_for(PROBLEM, STEPS[:1])
    params = SamplingParams(n=32, max_new_tokens=40, seed=3)
    stop = [completer.step_delimiter]
    first = completer.complete_prompts([prompt], params, stop=stop)[0]
    steps = list(dict.fromkeys(c.text for c in first if c.finish_reason == "stop" and c.text.strip() == c.text != ""))
    following = [completer.prompt_for(PROBLEM, STEPS[:1] + [step]) for step in steps]
    assert len(following) >= 6
    completer.counters.update({k: 0 for k in completer.counters})
    assert completer.complete_prompts(following[:-1], params, stop=stop) == \
        fresh.complete_prompts(following[:-1], params, stop=stop)
    # nothing to encode; a step that ended with an end-of-sequence token (<eos>, '!') instead
    # of the delimiter leaves the delimiter, one token (this model samples them twice as often)
    assert completer.counters["prefill_tokens"] <= len(following) - 1 - (len(following) - 1) // 4
    completer.counters.update({k: 0 for k in completer.counters})
    assert completer.complete_prompts(following[-1:], params, stop=stop) == \
        fresh.complete_prompts(following[-1:], params, stop=stop)
    # the first call's samples are gone: only the encoded prompt (a step shorter) is left
    assert completer.counters["prefill_tokens"] == len(completer.encode(following[-1])) - len(completer.encode(prompt))


def test_a_prompt_asked_twice_is_encoded_once_and_each_request_keeps_its_own_samples(completer):
    prompt = trace_prompts(completer)[1]
    params = SamplingParams(n=2, max_new_tokens=16, seed=0)
    completer.prompt_cache.clear()
    completer.counters.update({k: 0 for k in completer.counters})
    both = completer.complete_prompts([prompt, prompt], params, seeds=[1, 2], ns=[2, 3])
    assert completer.counters["prefill_tokens"] == len(completer.encode(prompt))  # one prefill for both
    assert [len(c) for c in both] == [2, 3]
    assert both[0] == completer.complete_prompts([prompt], params, seeds=[1])[0]
    assert both[1] == completer.complete_prompts([prompt], params, seeds=[2], ns=[3])[0]


def test_stop_strings_end_samples_and_every_sampled_token_is_counted(completer):
    params = SamplingParams(n=12, max_new_tokens=30, seed=3)
    stops = ["a", "e", "o", "7"]
    results = completer.complete_prompts(trace_prompts(completer)[:3], params, stop=stops)
    reasons = set()
    for completion in (c for completions in results for c in completions):
        assert not any(s in completion.text for s in stops)
        assert "!" not in completion.text  # '!' is an end-of-sequence token: never in the text
        if completion.finish_reason == "length":
            assert completion.tokens == len(completion.text) == 30
        else:  # the stop character or end-of-sequence token was sampled, counted, and cut
            assert completion.tokens == len(completion.text) + 1 <= 30
        reasons.add(completion.finish_reason)
    assert reasons == {"stop", "length"}
    assert completer.complete_prompts(trace_prompts(completer)[:3], params, stop=stops) == results


def test_completer_level_stop_strings_apply_to_complete_many(tiny_dir):
    completer = TransformersCompleter(tiny_dir, stop=["e"])
    requests = [CompletionRequest(PROBLEM, STEPS[:k]) for k in range(3)]
    results = completer.complete_many(requests, SamplingParams(n=6, max_new_tokens=40, seed=1))
    assert all("e" not in c.text for completions in results for c in completions)
    assert results == completer.reference_complete_prompts([completer.prompt_for(r.problem, r.prefix_steps)
                                                             for r in requests],
                                                            SamplingParams(n=6, max_new_tokens=40, seed=1))


def test_gsm8k_answer_line_ends_a_continuation_after_the_answer():
    assert cut_at_stop("3 + 4 = 7\n#### 7\nQuestion: next") == "3 + 4 = 7\n#### 7"
    assert cut_at_stop("3 + 4 = 7\n#### 7") is None  # the answer line may still grow
    assert cut_at_stop("a #### 7\n") is None  # only at the start of a line
    assert cut_at_stop("x STOP y\n#### 1\n", ("STOP",)) == "x "
    assert cut_at_stop("#### 12\n", answer_line=False) is None


def test_greedy_and_tiny_top_p_take_the_most_likely_token(completer):
    prompts = trace_prompts(completer)[:2]
    greedy = completer.complete_prompts(prompts, SamplingParams(n=3, temperature=0, max_new_tokens=12))
    for completions in greedy:
        assert len({c.text for c in completions}) == 1
    nucleus = completer.complete_prompts(prompts, SamplingParams(n=3, top_p=1e-9, max_new_tokens=12, seed=5))
    assert nucleus == greedy
    assert greedy == completer.reference_complete_prompts(prompts, SamplingParams(n=3, temperature=0,
                                                                                  max_new_tokens=12))


def test_sampling_rule_follows_temperature_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(6000, 1)
    rngs = [random.Random(i) for i in range(6000)]
    counts = torch.bincount(pick_tokens(logits, rngs, 1.0, 1.0), minlength=3).double() / 6000
    assert torch.allclose(counts, torch.tensor([0.5, 0.3, 0.2], dtype=torch.double), atol=0.025)
    counts = torch.bincount(pick_tokens(logits, rngs, 1.0, 0.6), minlength=3).double() / 6000
    assert counts[2] == 0 and abs(counts[0] - 0.5 / 0.8) < 0.025  # nucleus {0, 1}, renormalised
    hot = torch.bincount(pick_tokens(logits, rngs, 100.0, 1.0), minlength=3).double() / 6000
    assert torch.allclose(hot, torch.full((3,), 1 / 3, dtype=torch.double), atol=0.025)


def test_chat_template_puts_problem_in_user_turn_and_prefix_in_open_assistant_turn(tmp_path):
    folder = build_char_gpt2(tmp_path / "chat", chat_template=CHAT_TEMPLATE)
    completer = TransformersCompleter(folder)
    assert completer.use_chat_template
    prompt = completer.prompt_for(PROBLEM, STEPS[:2])
    assert prompt == f"<user>{PROBLEM}</user>\n<assistant>{STEPS[0]}\n{STEPS[1]}\n"
    assert completer.prompt_for(PROBLEM, []) == f"<user>{PROBLEM}</user>\n<assistant>"
    assert chat_prompt(completer.tokenizer, PROBLEM, STEPS[:1], " ки ") == \
        f"<user>{PROBLEM}</user>\n<assistant>{STEPS[0]} ки "
    params = SamplingParams(n=2, max_new_tokens=10, seed=0)
    requests = [CompletionRequest(PROBLEM, STEPS[:k]) for k in range(3)]
    assert completer.complete_many(requests, params) == completer.reference_complete_prompts(
        [completer.prompt_for(r.problem, r.prefix_steps) for r in requests], params)
    plain = TransformersCompleter(folder, use_chat_template=False)
    assert plain.prompt_for(PROBLEM, STEPS[:2]) == plain_prompt(PROBLEM, STEPS[:2])
    with pytest.raises(ValueError, match="no chat template"):
        TransformersCompleter(build_char_gpt2(tmp_path / "plain"), use_chat_template=True)


def test_prompt_template_and_step_delimiter(tiny_dir):
    completer = TransformersCompleter(tiny_dir, step_delimiter=" ; ", prompt_template="Q: {problem}\nA: {prefix}")
    assert completer.prompt_for(PROBLEM, STEPS[:2]) == f"Q: {PROBLEM}\nA: {STEPS[0]} ; {STEPS[1]} ; "
    assert completer.split_steps("a ; b ;  ; c") == ["a", "b", "c"]
    with pytest.raises(ValueError, match="{problem}"):
        TransformersCompleter(tiny_dir, prompt_template="no fields")


def test_load_completer_picks_the_backend_from_the_spec(tiny_dir):
    assert isinstance(load_completer(tiny_dir), TransformersCompleter)
    remote = load_completer("http://127.0.0.1:1, http://127.0.0.1:2/v1", model="m")
    assert remote.endpoints == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]
    with pytest.raises(ValueError):
        load_completer(" ")


def test_vllm_completer_import_says_how_to_install_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install 'prm-toolkit\[vllm\]'"):
            load_completer("vllm:tiny-gsm")
    else:
        pytest.skip("vLLM is installed here")


def test_importing_completers_does_not_import_torch():
    code = ("import sys, completers; from completers import load_completer, SamplingParams; "
            "completers.OpenAICompleter; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the trained tiny model of the embedded world ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_gsm():
    return TransformersCompleter("tiny-gsm")  # shipped with the repository: a missing one fails


def test_tiny_gsm_continuations_end_after_the_answer_line_and_match_reference(tiny_gsm):
    from completers.world import generate_problems

    problem = next(p for p in generate_problems(30, seed=123) if len(p.steps) >= 4)
    requests = [CompletionRequest(problem.question, problem.steps[:k]) for k in range(len(problem.steps))]
    params = SamplingParams(n=4, max_new_tokens=400, seed=0)
    results = tiny_gsm.complete_many(requests, params)
    prompts = [tiny_gsm.prompt_for(r.problem, r.prefix_steps) for r in requests]
    assert results[-1:] == tiny_gsm.reference_complete_prompts(prompts[-1:], params)
    stopped = [c for completions in results for c in completions if c.finish_reason == "stop"]
    assert len(stopped) >= 0.75 * len(requests) * 4  # a trained model finishes its solutions
    for completion in stopped:
        if completion.text.splitlines() and completion.text.splitlines()[-1].startswith("####"):
            encoded = tiny_gsm.tokenizer(completion.text, add_special_tokens=False)["input_ids"]
            assert completion.tokens == len(encoded) + 1  # the text's tokens + the newline (or eos)
    # the longer the prefix, the less is left to write
    mean_tokens = [sum(c.tokens for c in completions) / len(completions) for completions in results]
    assert mean_tokens[-1] < mean_tokens[0]
