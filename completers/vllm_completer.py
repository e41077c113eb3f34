"""VLLMCompleter: sample continuations with vLLM in this process (for users with a GPU).

vLLM's automatic prefix caching does on the GPU what `TransformersCompleter` does by hand:
the prefixes of one trace share their KV blocks, and the N samples of a prompt share its
prefill. Install with `pip install 'prm-toolkit[vllm]'`. This module is imported only when
asked for (`load_completer("vllm:MODEL")` or `from completers.vllm_completer import
VLLMCompleter`); without vLLM that import fails with an ImportError that says how to install it.
"""

from __future__ import annotations

try:
    import vllm
except ImportError as error:  # pragma: no cover - depends on the machine
    raise ImportError(
        "VLLMCompleter needs vLLM, which is not installed: `pip install 'prm-toolkit[vllm]'` "
        "(a CUDA GPU is required). Without a GPU use TransformersCompleter, or OpenAICompleter "
        f"against a vLLM server elsewhere. ({error})") from error

from completers.base import Completer, Completion, SamplingParams, per_prompt
from completers.text import PromptBuilder, cut_at_stop, normalize_stop, prompt_builder


class VLLMCompleter(Completer):
    """Samples continuations with `vllm.LLM` (prefix caching on).

    model: a short name, local folder or hub name. use_chat_template: None = use the
    tokenizer's chat template if it has one (problem as user turn, prefix steps as the start of
    the assistant turn). Other keyword arguments go to `vllm.LLM` (e.g. gpu_memory_utilization,
    tensor_parallel_size, dtype).
    """

    name = "vllm"

    def __init__(self, model: str, *, step_delimiter: str = "\n", stop: str | list[str] | None = None,
                 use_chat_template: bool | None = None, prompt_template: str | PromptBuilder | None = None,
                 stop_at_answer_line: bool = True, **llm_kwargs):
        from prm.model_names import resolve_model

        self.path = resolve_model(model)
        self.step_delimiter = step_delimiter
        self.stop = normalize_stop(stop)
        self.stop_at_answer_line = stop_at_answer_line
        self.build_prompt = prompt_builder(prompt_template)
        llm_kwargs.setdefault("enable_prefix_caching", True)
        self.llm = vllm.LLM(model=self.path, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.use_chat_template = has_template if use_chat_template is None else use_chat_template

    def complete_prompts(self, prompts: list[str], params: SamplingParams, *,
                         stop: str | list[str] | None = None, seeds: list[int | None] | None = None,
                         ns: list[int] | None = None) -> list[list[Completion]]:
        stops = list(self.stop + normalize_stop(stop)) or None
        sampling = [vllm.SamplingParams(n=n, temperature=params.temperature, top_p=params.top_p,
                                        max_tokens=params.max_new_tokens, seed=seed, stop=stops)
                    for seed, n in per_prompt(params, len(prompts), seeds, ns)]
        outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        results = []
        for output in outputs:
            completions = []
            for sample in output.outputs:
                text, reason = sample.text, sample.finish_reason
                cut = cut_at_stop(text, (), self.stop_at_answer_line)
                if cut is not None:
                    text, reason = cut, "stop"
                completions.append(Completion(text, len(sample.token_ids),
                                              "length" if reason == "length" else "stop"))
            results.append(completions)
        return results

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])
