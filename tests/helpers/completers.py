"""Completers for tests: a scripted test double for the labelling algorithms, and a tiny
random GPT-2 with a character tokenizer for the real completers (builders, no tests).

The scripted completer is a test double for the algorithm logic only: from a prefix that
contains no step marked "BAD" a sample reaches the answer with probability `p` (decided by
a hash of seed, prompt and sample index, so it is deterministic); from a prefix with a BAD
step it never does.
"""

import string

from pathlib import Path

import torch

from annotate.rollouts import derive_seed
from completers.base import Completer, Completion, per_prompt
from completers.world import generate_problems, trace_from_sample
from prm.io import write_traces
from prm.records import Trace

ANSWER = "42"


class ScriptedCompleter(Completer):
    name = "scripted"

    def __init__(self, p: float = 1.0, max_prefix: int | None = None):
        self.p = p
        self.max_prefix = max_prefix  # longer prefixes are refused, as a model refuses a too long prompt
        self.calls = []  # the samples asked of each prompt, per call

    def complete_prompts(self, prompts, params, *, stop=None, seeds=None, ns=None):
        # prompts are `plain_prompt(problem, prefix)`: "Question: ...\nAnswer:\n" + one line per step
        requests = [(prompt.split("\n")[0].removeprefix("Question: "), prompt.split("\n")[2:-1])
                    for prompt in prompts]
        for i, (_, prefix) in enumerate(requests):
            if self.max_prefix is not None and len(prefix) > self.max_prefix:
                raise ValueError(f"prompt {i} is too long")
        plan = per_prompt(params, len(prompts), seeds, ns)
        self.calls.append([n for _, n in plan])
        results = []
        for (problem, prefix), (seed, n) in zip(requests, plan):
            bad = any("BAD" in step for step in prefix)
            completions = []
            for j in range(n):
                u = derive_seed(seed, problem, len(prefix), j) / 2**31
                ok = not bad and u < self.p
                text = f"so on\n#### {ANSWER if ok else '41'}"
                completions.append(Completion(text, tokens=10 + j % 3))
            results.append(completions)
        return results

    @property
    def rollouts(self):
        return sum(map(sum, self.calls))


def make_trace(n_steps: int, first_error: int = -1, final_answer: str | None = "41", trace_id: str = "t") -> Trace:
    steps = [f"step {i}" + (" BAD" if 0 <= first_error <= i else "") for i in range(n_steps)]
    return Trace(id=trace_id, problem="What is six times seven?", steps=steps, final_answer=final_answer,
                 reference_answer=ANSWER)


def write_search_problems(path: Path, count: int) -> Path:
    """`count` world problems (seed 0, from index 280: none the demo's) written at `path` as
    `prm search` input, each with its reference solution as the trace; returns `path`."""
    chosen = generate_problems(300, seed=0)[280:280 + count]
    write_traces(path, [trace_from_sample(p, p.solution, p.id) for p in chosen])
    return path


# -- a tiny real model --------------------------------------------------------------------

CHARS = string.digits + string.ascii_letters + " \n.,:;?!+-*/=<>#$()%'"
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")
PROBLEM = "Ann has 3 bags with 4 apples each. She eats 2. How many are left?"
STEPS = ["3 bags * 4 = 12 apples", "12 - 2 = 10 left", "So Ann has 10", "Check: 10 + 2 = 12"]


def build_char_gpt2(folder, chat_template=None, seed=0):
    """A 2-layer GPT-2 with random weights and a character tokenizer whose only special token
    is <eos>, so every other sampled token is exactly one character of the text. '!' is a
    second end-of-sequence token, so continuations also end early."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {"<eos>": 0, **{c: i + 1 for i, c in enumerate(CHARS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token=None))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>")
    if chat_template:
        tokenizer.chat_template = chat_template
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=512, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=0, eos_token_id=0))
    model.generation_config.eos_token_id = [0, vocab["!"]]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
