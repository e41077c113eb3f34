"""TransformersCompleter: sample continuations from a local Hugging Face causal LM, encoding
and reading each shared prefix once.

Monte Carlo step labels need N samples from every prefix of a trace. `model.generate(
num_return_sequences=N)` encodes each prompt N times, keeps N copies of its KV cache and
decodes each prefix on its own. This module has its own small sampling loop over the model's
forward pass and KV cache instead:

1. Prefill: prompts are sorted so the prefixes of one trace sit together. The longest is
   encoded once; every shorter prompt reuses a slice of that KV cache for the tokens it
   shares and encodes only the rest (at least its last token, whose logits it needs).
2. Decoding: the N samples of all prompts in a chunk (up to `batch_size` sequences) are
   decoded together, one forward pass per new token; finished sequences leave the batch
   (in groups: once a quarter of it has finished, as each removal copies the cache).
   Each prompt's KV cache is kept ONCE, not copied N times: a small attention function
   (`shared_prefix_attention`, registered with transformers' AttentionInterface) attends
   the N queries of a prompt to its one cached prompt and each query to its own generated
   tokens, and merges the two softmaxes exactly (log-sum-exp), as cascade attention does.
   For small models on CPU, reading the N cache copies was most of the time. Models
   whose attention is not plain SDPA (sliding windows, soft-capping, flash kernels) use
   the simple path: the prompt cache repeated N times, left-padded, with a mask.
3. Sampling is inverse-CDF sampling from the temperature/top-p distribution with one uniform
   number per token, drawn from a `random.Random` stream keyed by (seed, prompt, sample
   index). So the same prompt and seed give the same samples whatever else is in the batch,
   on CPU or CUDA, and `reference_complete_prompts` (the naive loop: no cache, one sequence
   at a time) reproduces them; tests and `bench/completers.py` check that.

A continuation ends at an end-of-sequence token, at a stop string (cut before it), after a
GSM8K answer line `#### x` (see `completers.text.cut_at_stop`), or at `max_new_tokens`.
`Completion.tokens` counts every sampled token, including the end-of-sequence token.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from completers.base import Completer, Completion, SamplingParams, per_prompt
from completers.text import PromptBuilder, cut_at_stop, normalize_stop, prompt_builder

SHARED_PREFIX_ATTENTION = "prm_shared_prefix"


class TransformersCompleter(Completer):
    """Samples continuations from a local causal LM (a folder, or a short name like `tiny-gsm`).

    device: "cpu", "cuda", "cuda:1", ...
    step_delimiter: text between steps in the prompt and in `split_steps`.
    stop: stop strings that end every continuation (cut before them).
    use_chat_template: None = use the tokenizer's chat template if it has one. With a chat
        template the problem is the user turn and the prefix steps start the assistant turn.
    prompt_template: the prompt without a chat template (see `completers.text.prompt_builder`).
    dtype: torch dtype or its name ("float32", "bfloat16"); None = float32 on CPU, the
        checkpoint's dtype on CUDA.
    batch_size: how many sequences are decoded together (at least one prompt's N).
    stop_at_answer_line: end a continuation after a GSM8K `#### x` line.
    shared_attention: None = keep one KV cache per prompt and use `shared_prefix_attention`
        when the model's attention allows it; False = repeat the cache N times (simple path).
    """

    name = "transformers"

    def __init__(self, model: str, *, device: str = "cpu", step_delimiter: str = "\n",
                 stop: str | list[str] | None = None, use_chat_template: bool | None = None,
                 prompt_template: str | PromptBuilder | None = None, dtype=None,
                 batch_size: int = 128, stop_at_answer_line: bool = True, shared_attention: bool | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from prm.model_names import resolve_model

        self.model_name = model
        self.path = resolve_model(model)
        self.device = torch.device(device)
        self.step_delimiter = step_delimiter
        self.stop = normalize_stop(stop)
        self.stop_at_answer_line = stop_at_answer_line
        self.batch_size = max(1, int(batch_size))
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if dtype is None:
            dtype = torch.float32 if self.device.type == "cpu" else "auto"
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if use_chat_template and not has_template:
            raise ValueError(f"{self.path}: use_chat_template=True but the tokenizer has no chat template")
        self.use_chat_template = has_template if use_chat_template is None else use_chat_template
        self.build_prompt = prompt_builder(prompt_template)
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.shared_attention = shared_attention is not False and _use_shared_prefix_attention(self.model)
        config = self.model.config.get_text_config()
        # Prompt + continuation must fit the model's positions (GPT-2 fails beyond them).
        self.max_length = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        # Work done so far, for benchmarks: tokens through the model in prefill and decoding, rows
        # whose logits were computed, query-key pairs attended (padding included).
        self.counters = {"prompt_tokens": 0, "prefill_tokens": 0, "decode_tokens": 0, "lm_head_rows": 0,
                         "generated_tokens": 0, "attention_pairs": 0, "forward_calls": 0}

    # -- prompts ---------------------------------------------------------------------------

    def encode(self, prompt: str) -> list[int]:
        # A rendered chat template already holds its special tokens.
        ids = self.tokenizer(prompt, add_special_tokens=not self.use_chat_template)["input_ids"]
        if not ids:
            if self.tokenizer.bos_token_id is None:
                raise ValueError("empty prompt and the tokenizer has no BOS token to start from")
            ids = [self.tokenizer.bos_token_id]
        return list(ids)

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.encode(prompt))

    # -- the Completer interface --------------------------------------------------------

    def complete_prompts(self, prompts: list[str], params: SamplingParams, *,
                         stop: str | list[str] | None = None, seeds: list[int | None] | None = None,
                         ns: list[int] | None = None) -> list[list[Completion]]:
        _check(params)
        jobs = self._jobs(prompts, params, seeds, ns)
        stops = self.stop + normalize_stop(stop)
        results: list[list[Completion]] = [[] for _ in prompts]
        with torch.inference_mode():
            for chunk in self._chunks(jobs):
                for job, completions in zip(chunk, self._sample_chunk(chunk, params, stops)):
                    results[job.index] = completions
        return results

    def reference_complete_prompts(self, prompts: list[str], params: SamplingParams,
                                   stop: str | list[str] | None = None) -> list[list[Completion]]:
        """The naive sampler: one sequence at a time, the whole text re-encoded for every token,
        no cache. Same sampling rule and random streams as `complete_prompts`, so it must
        return the same samples; it exists to check that (tests, benchmark)."""
        _check(params)
        stops = self.stop + normalize_stop(stop)
        results = []
        with torch.inference_mode():
            for job in self._jobs(prompts, params, None, None):
                completions = []
                for rng in job.rngs:
                    ids, generated, done = list(job.ids), [], None
                    while done is None:
                        logits = self.model(torch.tensor([ids], device=self.device)).logits[:, -1]
                        generated.append(int(pick_tokens(logits, [rng], params.temperature, params.top_p)[0]))
                        ids.append(generated[-1])
                        done = self.completion_if_ended(generated, job.max_new_tokens, stops)
                    completions.append(done)
                results.append(completions)
        return results

    def completion_if_ended(self, generated: list[int], max_new_tokens: int,
                            stops: tuple[str, ...] = ()) -> Completion | None:
        """The completion if the sampled tokens `generated` end the continuation, else None."""
        if generated[-1] in self.eos_ids:
            return Completion(self._decode(generated[:-1]), len(generated), "stop")
        text = self._decode(generated)
        cut = cut_at_stop(text, stops, self.stop_at_answer_line)
        if cut is not None:
            return Completion(cut, len(generated), "stop")
        if len(generated) >= max_new_tokens:
            return Completion(text, len(generated), "length")
        return None

    # -- the shared-prefix sampler --------------------------------------------------------

    def _jobs(self, prompts, params, seeds, ns) -> list[_Job]:
        jobs = []
        for i, (prompt, (seed, n)) in enumerate(zip(prompts, per_prompt(params, len(prompts), seeds, ns))):
            if seed is None:
                seed = random.SystemRandom().getrandbits(63)
            rngs = [random.Random(f"{seed}\x00{j}\x00{prompt}") for j in range(n)]
            ids = self.encode(prompt)
            room = self.max_length - len(ids) if self.max_length else params.max_new_tokens
            if room < 1:
                raise ValueError(f"prompt {i} has {len(ids)} tokens; the model reads at most {self.max_length}")
            jobs.append(_Job(i, ids, rngs, min(params.max_new_tokens, room)))
        return jobs

    def _chunks(self, jobs: list[_Job]) -> list[list[_Job]]:
        """Jobs sorted by token ids (so prefixes of one trace are neighbours), cut into chunks
        of at most `batch_size` sequences (a chunk always holds at least one job)."""
        chunks, current, rows = [], [], 0
        for job in sorted(jobs, key=lambda j: j.ids):
            if current and rows + len(job.rngs) > self.batch_size:
                chunks.append(current)
                current, rows = [], 0
            current.append(job)
            rows += len(job.rngs)
        if current:
            chunks.append(current)
        return chunks

    def _prefill(self, chunk: list[_Job]) -> None:
        """Each job's KV cache and next-token logits; a job reuses the longest cached token
        prefix of an already encoded job of the chunk and encodes only the rest."""
        done: list[_Job] = []
        for job in sorted(chunk, key=lambda j: -len(j.ids)):
            shared, source = 0, None
            for other in done:
                common = len(os.path.commonprefix([job.ids, other.ids]))
                if common > shared:
                    shared, source = common, other
            shared = min(shared, len(job.ids) - 1)  # encode at least the last token, for its logits
            cache = DynamicCache()
            if shared > 0:
                cache = DynamicCache(ddp_cache_data=[(k[:, :, :shared], v[:, :, :shared]) for k, v in source.kv])
            tail = torch.tensor([job.ids[shared:]], device=self.device)
            out = self.model(input_ids=tail, past_key_values=cache, use_cache=True, logits_to_keep=1)
            job.logits = out.logits[0, -1]
            job.kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            done.append(job)
            self._count(prompt_tokens=len(job.ids), prefill_tokens=len(job.ids) - shared, lm_head_rows=1,
                        forward_calls=1, attention_pairs=sum(range(shared + 1, len(job.ids) + 1)))

    def _sample_chunk(self, chunk: list[_Job], params: SamplingParams,
                      stops: tuple[str, ...]) -> list[list[Completion]]:
        self._prefill(chunk)
        rows = [(job, j) for job in chunk for j in range(len(job.rngs))]
        row_prompt = torch.tensor([p for p, job in enumerate(chunk) for _ in job.rngs], device=self.device)
        cache_class = _SharedPrefixCache if self.shared_attention else _RepeatedPrefixCache
        longest = max(job.max_new_tokens for job in chunk)
        # room for 64 new tokens to start with; a layer doubles it when it runs out
        cache = cache_class([job.kv for job in chunk], row_prompt, room=min(longest, 64))
        for job in chunk:
            job.kv = None  # the chunk's cache holds them now
        positions = torch.tensor([len(job.ids) for job, _ in rows], device=self.device)
        logits = torch.stack([job.logits for job in chunk])[row_prompt]

        batch = list(range(len(rows)))  # the row number at each position of the batch
        alive = [True] * len(batch)  # finished rows stay in the batch (ignored) until compaction
        generated: list[list[int]] = [[] for _ in rows]
        results: list[Completion | None] = [None] * len(rows)
        tokens = torch.zeros(len(batch), dtype=torch.long, device=self.device)
        for _ in range(longest):
            live = [p for p, ok in enumerate(alive) if ok]
            index = None if len(live) == len(batch) else torch.tensor(live, device=self.device)
            picked = pick_tokens(logits if index is None else logits[index],
                                 [rows[batch[p]][0].rngs[rows[batch[p]][1]] for p in live],
                                 params.temperature, params.top_p)
            if index is None:
                tokens = picked
            else:
                tokens[index] = picked
            for p, token in zip(live, picked.tolist()):
                r = batch[p]
                generated[r].append(token)
                results[r] = self.completion_if_ended(generated[r], rows[r][0].max_new_tokens, stops)
                alive[p] = results[r] is None
            still = [p for p, ok in enumerate(alive) if ok]
            if not still:
                break
            if 4 * (len(batch) - len(still)) >= len(batch):  # a quarter finished: drop them
                keep = torch.tensor(still, device=self.device)
                cache.select_rows(keep)
                positions, tokens = positions[keep], tokens[keep]
                batch, alive = [batch[p] for p in still], [True] * len(still)
            out = self.model(input_ids=tokens[:, None], position_ids=positions[:, None], past_key_values=cache,
                             use_cache=True, **cache.forward_kwargs())
            logits, positions = out.logits[:, -1], positions + 1
            if self.max_length:  # finished rows waiting for compaction must not run off the positions
                positions = positions.clamp_(max=self.max_length - 1)
            self._count(decode_tokens=len(batch), lm_head_rows=len(batch), forward_calls=1,
                        attention_pairs=cache.attended_pairs())

        self._count(generated_tokens=sum(c.tokens for c in results))
        grouped: dict[int, list[Completion]] = {}
        for (job, _), completion in zip(rows, results):
            grouped.setdefault(job.index, []).append(completion)
        return [grouped[job.index] for job in chunk]

    def _count(self, **amounts: int) -> None:
        for key, amount in amounts.items():
            self.counters[key] += amount

    def _decode(self, ids: list[int]) -> str:
        # Called for every sampled token: straight to the Rust tokenizer when that is what
        # `decode` would do anyway (it otherwise checks every id in Python first).
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None and not getattr(self.tokenizer, "clean_up_tokenization_spaces", False):
            return backend.decode(ids, skip_special_tokens=True)
        return self.tokenizer.decode(ids, skip_special_tokens=True)


@dataclass
class _Job:
    """One prompt to sample: its index in the request list, token ids and one random stream
    per sample; `kv`/`logits` hold its encoded prompt between prefill and decoding."""

    index: int
    ids: list[int]
    rngs: list[random.Random]
    max_new_tokens: int  # the request's, or less if the model's positions run out
    kv: list | None = None
    logits: torch.Tensor | None = None


# -- sampling ------------------------------------------------------------------------------


def _check(params: SamplingParams) -> None:
    if params.n < 1 or params.max_new_tokens < 1:
        raise ValueError(f"n and max_new_tokens must be at least 1, got n={params.n}, "
                         f"max_new_tokens={params.max_new_tokens}")


def pick_tokens(logits: torch.Tensor, rngs: list[random.Random], temperature: float,
                top_p: float) -> torch.Tensor:
    """One token per row of `logits` [rows, vocab]: greedy if temperature <= 0, else inverse-CDF
    sampling of softmax(logits / temperature) restricted to the top-p nucleus, with one
    uniform number from each row's stream."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    order = None
    if top_p < 1.0:
        probs, order = probs.sort(dim=-1, descending=True, stable=True)
        before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens
        probs = probs.masked_fill(before >= top_p, 0.0)  # the most likely token always stays
    cdf = probs.double().cumsum(dim=-1)
    uniforms = torch.tensor([rng.random() for rng in rngs], dtype=torch.float64, device=logits.device)
    targets = (uniforms * cdf[:, -1]).unsqueeze(1)
    index = torch.searchsorted(cdf, targets, right=True).clamp_(max=probs.shape[-1] - 1)
    return (order.gather(1, index) if order is not None else index).squeeze(1)


# -- KV caches for decoding many samples of a few prompts ---------------------------------------


class _RoomyLayer(DynamicLayer):
    """A KV-cache layer with room for `room` more positions (doubled when it runs out): each
    decoding step writes its keys and values in place, where `DynamicLayer` copies the whole
    cache (torch.cat) every step."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int):
        super().__init__()
        batch, heads, length, _ = keys.shape
        self._keys = keys.new_empty(batch, heads, length + room, keys.shape[3])
        self._values = values.new_empty(batch, heads, length + room, values.shape[3])
        self._keys[:, :, :length], self._values[:, :, :length] = keys, values
        self.length, self.dtype, self.device, self.is_initialized = length, keys.dtype, keys.device, True
        self._expose()

    def _expose(self) -> None:
        self.keys, self.values = self._keys[:, :, :self.length], self._values[:, :, :self.length]

    def update(self, key_states, value_states, *args, **kwargs):
        new = key_states.shape[-2]
        if self.length + new > self._keys.shape[2]:  # out of room: double it
            self._keys = torch.cat([self._keys, torch.empty_like(self._keys)], dim=2)
            self._values = torch.cat([self._values, torch.empty_like(self._values)], dim=2)
        self._keys[:, :, self.length:self.length + new] = key_states
        self._values[:, :, self.length:self.length + new] = value_states
        self.length += new
        self._expose()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep these rows (copying only the filled positions)."""
        keys = self._keys.new_empty(len(indices), *self._keys.shape[1:])
        values = self._values.new_empty(len(indices), *self._values.shape[1:])
        keys[:, :, :self.length] = self._keys[indices, :, :self.length]
        values[:, :, :self.length] = self._values[indices, :, :self.length]
        self._keys, self._values = keys, values
        self._expose()

    def drop_front(self, count: int) -> None:
        """Forget the first `count` positions (left padding no remaining row needs)."""
        self._keys, self._values = self._keys[:, :, count:], self._values[:, :, count:]
        self.length -= count
        self._expose()


def _left_padded(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt [1, heads, length, dim] tensors -> [prompts, heads, longest, dim] padded on
    the left, and a [prompts, longest] mask of the real positions."""
    width = max(t.shape[2] for t in tensors)
    padded = torch.cat([torch.nn.functional.pad(t, (0, 0, width - t.shape[2], 0)) for t in tensors])
    lengths = torch.tensor([t.shape[2] for t in tensors], device=padded.device)
    valid = torch.arange(width, device=padded.device)[None, :] >= (width - lengths)[:, None]
    return padded, valid


class _RepeatedPrefixCache(DynamicCache):
    """The simple path: each prompt's cache copied for each of its rows, left-padded, with an
    attention mask; works with any attention implementation."""

    def __init__(self, prompt_kv: list[list[tuple]], row_prompt: torch.Tensor, room: int):
        super().__init__()
        self.layers = []
        for layer in zip(*prompt_kv):
            keys, self.valid = _left_padded([k for k, _ in layer])
            values, _ = _left_padded([v for _, v in layer])
            self.layers.append(_RoomyLayer(keys[row_prompt], values[row_prompt], room))
        self.mask = self.valid[row_prompt]

    def select_rows(self, index: torch.Tensor) -> None:
        self.batch_select_indices(index)
        self.mask = self.mask[index]
        unused = int(self.mask.any(dim=0).long().argmax())  # leading columns padding for every row
        if unused:
            for layer in self.layers:
                layer.drop_front(unused)
            self.mask = self.mask[:, unused:]

    def forward_kwargs(self) -> dict:
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.mask), 1)], dim=1)
        return {"attention_mask": self.mask}

    def attended_pairs(self) -> int:
        return self.mask.numel()


class _SharedPrefixLayer(DynamicLayer):
    """One layer of `_SharedPrefixCache`: the prompts' keys/values once each, and each row's
    generated keys/values (what `update` stores and returns to the attention function)."""

    def __init__(self, prompt_keys, prompt_values, rows: int, room: int):
        super().__init__()
        self.prompt_keys, self.prompt_values = prompt_keys, prompt_values
        self.generated = _RoomyLayer(prompt_keys.new_empty(rows, prompt_keys.shape[1], 0, prompt_keys.shape[3]),
                                     prompt_values.new_empty(rows, prompt_values.shape[1], 0,
                                                             prompt_values.shape[3]), room)
        self.dtype, self.device, self.is_initialized = prompt_keys.dtype, prompt_keys.device, True
        self.keys, self.values = self.generated.keys, self.generated.values

    def update(self, key_states, value_states, *args, **kwargs):
        self.keys, self.values = self.generated.update(key_states, value_states)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.prompt_keys.shape[2] + self.generated.length


class _SharedPrefixCache(DynamicCache):
    """The fast path: one KV cache per prompt, shared by its rows through `shared_prefix_attention`
    (the forward pass gets this cache as `shared_prefix_cache`)."""

    def __init__(self, prompt_kv: list[list[tuple]], row_prompt: torch.Tensor, room: int):
        super().__init__()
        self.layers = []
        for layer in zip(*prompt_kv):
            keys, self.valid = _left_padded([k for k, _ in layer])
            values, _ = _left_padded([v for _, v in layer])
            self.layers.append(_SharedPrefixLayer(keys, values, len(row_prompt), room))
        self._set_rows(row_prompt)

    def _set_rows(self, row_prompt: torch.Tensor) -> None:
        """Which prompt each row samples, its slot among that prompt's rows, and the additive
        mask of the prompts' padding for `torch.baddbmm` ([prompts * kv_heads, 1, width])."""
        kv_heads = self.layers[0].prompt_keys.shape[1]
        bias = torch.zeros(self.valid.shape, dtype=self.layers[0].prompt_keys.dtype, device=self.valid.device)
        bias = bias.masked_fill(~self.valid, float("-inf"))
        self.bias = bias[:, None, None, :].expand(-1, kv_heads, 1, -1).reshape(-1, 1, self.valid.shape[1])
        self.row_prompt = row_prompt
        counts = torch.bincount(row_prompt, minlength=len(self.valid))
        starts = torch.cumsum(counts, 0) - counts  # rows are grouped by prompt, in order
        self.row_slot = torch.arange(len(row_prompt), device=row_prompt.device) - starts[row_prompt]
        self.slots = int(counts.max())

    def select_rows(self, index: torch.Tensor) -> None:
        row_prompt = self.row_prompt[index]
        alive = torch.unique(row_prompt)  # prompts that still have rows
        renumber = torch.full((len(self.valid),), -1, dtype=torch.long, device=index.device)
        renumber[alive] = torch.arange(len(alive), device=index.device)
        valid = self.valid[alive]
        unused = int(valid.any(dim=0).long().argmax())  # leading columns padding for every prompt
        self.valid = valid[:, unused:]
        for layer in self.layers:
            layer.prompt_keys = layer.prompt_keys[alive][:, :, unused:].contiguous()
            layer.prompt_values = layer.prompt_values[alive][:, :, unused:].contiguous()
            layer.generated.batch_select_indices(index)
            layer.keys, layer.values = layer.generated.keys, layer.generated.values
        self._set_rows(renumber[row_prompt])

    def forward_kwargs(self) -> dict:
        return {"shared_prefix_cache": self}

    def attended_pairs(self) -> int:
        rows = len(self.row_prompt)
        return rows * (self.valid.shape[1] + self.layers[0].generated.length + 1)


def shared_prefix_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                            scaling: float | None = None, shared_prefix_cache: _SharedPrefixCache | None = None,
                            **kwargs):
    """Attention for one new token per row when rows share their prompt's KV cache.

    query [rows, heads, 1, dim]; key/value [rows, kv_heads, generated, dim] are each row's own
    generated tokens (the current one included); the prompts' keys/values are in the cache.
    Each half is a softmax over its own keys; they are merged exactly by their log-sum-exp.
    Anything else (prefill, other callers) goes to transformers' SDPA attention.
    """
    if shared_prefix_cache is None or query.shape[2] != 1:
        return AttentionInterface._global_mapping["sdpa"](module, query, key, value, attention_mask,
                                                          dropout=dropout, scaling=scaling, **kwargs)
    cache, layer = shared_prefix_cache, shared_prefix_cache.layers[module.layer_idx]
    rows, heads, _, dim = query.shape
    prompts, kv_heads, width, _ = layer.prompt_keys.shape
    groups = heads // kv_heads  # query heads per key/value head (grouped-query attention)
    scale = scaling if scaling is not None else 1 / math.sqrt(dim)

    # The prompts: queries gathered per prompt [prompts, kv_heads, slots * groups, dim], so
    # each prompt's keys are read once for all its rows.
    grouped = query.new_zeros(prompts, cache.slots, heads, dim)
    grouped[cache.row_prompt, cache.row_slot] = query[:, :, 0]
    grouped = grouped.view(prompts, cache.slots, kv_heads, groups, dim).transpose(1, 2)
    grouped = grouped.reshape(prompts * kv_heads, cache.slots * groups, dim)
    keys = layer.prompt_keys.view(prompts * kv_heads, width, dim).transpose(1, 2)
    scores = torch.baddbmm(cache.bias, grouped, keys, alpha=scale).float()
    prompt_max, prompt_sum, prompt_out = _softmax_parts(scores, layer.prompt_values.view(prompts * kv_heads, width,
                                                                                          dim))

    def per_row(t):  # [prompts * kv_heads, slots * groups, x] -> [rows, heads, x]
        t = t.view(prompts, kv_heads, cache.slots, groups, -1).transpose(1, 2)
        return t.reshape(prompts, cache.slots, heads, -1)[cache.row_prompt, cache.row_slot]

    prompt_max, prompt_sum, prompt_out = per_row(prompt_max), per_row(prompt_sum), per_row(prompt_out)

    # Each row's own generated tokens.
    own = query.reshape(rows, kv_heads, groups, dim)
    scores = (own @ key.transpose(-1, -2)).float() * scale
    own_max, own_sum, own_out = (t.reshape(rows, heads, -1) for t in _softmax_parts(scores, value))

    top = torch.maximum(prompt_max, own_max)
    a, b = torch.exp(prompt_max - top), torch.exp(own_max - top)
    out = (prompt_out * a + own_out * b) / (prompt_sum * a + own_sum * b)
    return out.to(query.dtype)[:, None], None  # [rows, 1, heads, dim], like SDPA's


def _softmax_parts(scores: torch.Tensor, values: torch.Tensor):
    """(max, sum of exp, unnormalised output) of softmax(scores) @ values, for merging."""
    top = scores.amax(dim=-1, keepdim=True)
    weights = torch.exp(scores - top)
    return top, weights.sum(dim=-1, keepdim=True), (weights.to(values.dtype) @ values).float()


def _use_shared_prefix_attention(model) -> bool:
    """Switch the model to `shared_prefix_attention` if its attention is plain SDPA (which it
    then still uses for everything but shared-prefix decoding); False if it cannot."""
    config = model.config.get_text_config()
    if model.config._attn_implementation not in ("sdpa", SHARED_PREFIX_ATTENTION):
        return False
    if getattr(config, "sliding_window", None) or getattr(config, "attn_logit_softcapping", None) \
            or getattr(config, "use_sliding_window", False) or getattr(config, "layer_types", None) and \
            any(t != "full_attention" for t in config.layer_types):
        return False
    attentions = [m for m in model.modules() if hasattr(m, "layer_idx") and "Attention" in type(m).__name__]
    if not attentions:
        return False
    AttentionInterface.register(SHARED_PREFIX_ATTENTION, shared_prefix_attention)
    AttentionMaskInterface.register(SHARED_PREFIX_ATTENTION, sdpa_mask)
    model.set_attn_implementation(SHARED_PREFIX_ATTENTION)
    return model.config._attn_implementation == SHARED_PREFIX_ATTENTION


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return ids
