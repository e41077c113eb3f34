"""TransformersCompleter: sample continuations from a local Hugging Face causal LM, encoding
and reading each shared prefix once.

Monte Carlo step labels need N samples from every prefix of a trace. `model.generate(
num_return_sequences=N)` encodes each prompt N times, keeps N copies of its KV cache and
decodes each prefix on its own. This module has its own small sampling loop over the model's
forward pass and KV cache instead:

1. Prefill: every prompt reuses the longest prefix already encoded (the longest prompt of
   a trace is encoded first and its shorter prefixes take a slice of its KV cache) and
   encodes only the rest (at least its last token, whose logits it needs); the rests of all
   prompts go through a few padded forward passes together, not one pass per prompt.
   Encoded prompts are kept for later calls (`PromptCache`, `prompt_cache_mb`), and so are
   the last call's samples with the keys and values their decoding computed: a search's
   kept prefix plus the step just sampled for it (and the delimiter) is not read again
   (samples are kept from calls with stop strings: steps, not whole rollouts).
2. Decoding: the N samples of all prompts in a chunk (up to `batch_size` sequences of
   `FULL_LENGTH` new tokens, or proportionally more shorter ones: a search's steps) are
   decoded together, one forward pass per new token; finished sequences leave the batch
   (in groups: once a quarter of it has finished, as each removal copies the cache; with
   the prompt cache, only after their last token has been fed once more, for its keys,
   values and the logits after it).
   Each prompt's KV cache is kept ONCE, not copied N times: a small attention function
   (`shared_prefix_attention` in `completers.shared_prefix`, registered with transformers'
   AttentionInterface) attends the N queries of a prompt to its one cached prompt and each
   query to its own generated tokens, and merges the two softmaxes exactly (log-sum-exp), as
   cascade attention does.
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

import random
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from completers.base import Completer, Completion, SamplingParams, per_prompt
from completers.shared_prefix import (EncodedPrompt, PromptCache, RepeatedPrefixCache, RoomyLayer,
                                      SampledContinuation, SharedPrefixCache, common_length,
                                      use_shared_prefix_attention)
from completers.text import PromptBuilder, cut_at_stop, normalize_stop, prompt_builder
from prm.errors import PromptTooLongError



GENERATIVE_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
# The continuation length `batch_size` is counted at: a whole GSM8K-style rollout.
FULL_LENGTH = 320


def _require_generative(path: str, name: str) -> None:
    """Refuse a model that cannot sample text, such as an encoder (`minilm-l6`, a BERT): its
    config names architectures and none of them has a generative head. (transformers would
    load it with a fresh, untrained LM head and fail deep inside `generate`.)"""
    from transformers import AutoConfig

    architectures = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
    if architectures and not any(a.endswith(GENERATIVE_HEADS) for a in architectures):
        raise ValueError(f"{name} is an encoder ({', '.join(architectures)}), which cannot sample "
                         "continuations; give a causal language model (tiny-gsm, smollm2-135m, or a "
                         "*ForCausalLM folder or hub name)")


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
    batch_size: how many sequences of `FULL_LENGTH` (320) new tokens are decoded together (at
        least one prompt's N). A call that asks for fewer tokens per sequence decodes
        proportionally more sequences at once (16 x 40-token steps for every 320-token rollout):
        the decoding cache's memory grows with sequences x tokens, and every forward pass costs
        a fixed overhead, so short calls gain most from wide batches.
    stop_at_answer_line: end a continuation after a GSM8K `#### x` line.
    shared_attention: None = keep one KV cache per prompt and use `shared_prefix_attention`
        when the model's attention allows it; False = repeat the cache N times (simple path).
    prompt_cache_mb: encoded prompts kept from one call to the next (`PromptCache`, least
        recently used dropped beyond this size), so that a prompt extending one encoded before
        (a search's kept prefix plus its new step) encodes only its new tokens; 0 = off. The
        last call's samples are kept too (until the end of the next call, not counted here).
    """

    name = "transformers"

    def __init__(self, model: str, *, device: str = "cpu", step_delimiter: str = "\n",
                 stop: str | list[str] | None = None, use_chat_template: bool | None = None,
                 prompt_template: str | PromptBuilder | None = None, dtype=None,
                 batch_size: int = 128, stop_at_answer_line: bool = True, shared_attention: bool | None = None,
                 prompt_cache_mb: float = 256):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from prm.model_names import resolve_model

        self.model_name = model
        self.path = resolve_model(model)
        self.device = torch.device(device)
        self.step_delimiter = step_delimiter
        self.stop = normalize_stop(stop)
        self.stop_at_answer_line = stop_at_answer_line
        self.batch_size = max(1, int(batch_size))
        self.prompt_cache = PromptCache(int(prompt_cache_mb * 2**20)) if prompt_cache_mb > 0 else None
        # enough traces' calls merged to fill a batch with their first rounds of 2 samples per prefix
        self.merge_calls = max(1, self.batch_size // 2)
        _require_generative(self.path, model)
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
        self.shared_attention = shared_attention is not False and use_shared_prefix_attention(self.model)
        config = self.model.config.get_text_config()
        # Prompt + continuation must fit the model's positions (GPT-2 fails beyond them).
        self.max_length = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        # Work done so far, for benchmarks: tokens through the model in prefill and decoding, rows
        # whose logits were computed, query-key pairs attended (padding included).
        self.counters = {"prompt_tokens": 0, "prefill_tokens": 0, "decode_tokens": 0, "lm_head_rows": 0,
                         "generated_tokens": 0, "attention_pairs": 0, "forward_calls": 0}

    # -- prompts ---------------------------------------------------------------------------

    def encode(self, prompt: str) -> list[int]:
        return self.encode_many([prompt])[0]

    def encode_many(self, prompts: list[str]) -> list[list[int]]:
        """The token ids of each prompt, in one tokenizer call (a search depth sends many)."""
        # A rendered chat template already holds its special tokens.
        return [self._start(ids) for ids in
                self.tokenizer(list(prompts), add_special_tokens=not self.use_chat_template)["input_ids"]]

    def _start(self, ids: list[int]) -> list[int]:
        """An empty prompt starts from the BOS token."""
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
        kept = self.prompt_cache
        if kept is not None:
            kept.start_call()
        try:
            with torch.inference_mode():
                for chunk in self._chunks(_merge_same_prompts(jobs)):
                    for job, completions in zip(chunk, self._sample_chunk(chunk, params, stops)):
                        for index, count in job.parts:
                            results[index], completions = completions[:count], completions[count:]
        finally:
            if kept is not None:
                kept.end_call()
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
        encoded = self.encode_many(prompts) if prompts else []
        for i, (prompt, ids, (seed, n)) in enumerate(zip(prompts, encoded, per_prompt(params, len(prompts), seeds,
                                                                                         ns))):
            if seed is None:
                seed = random.SystemRandom().getrandbits(63)
            rngs = [random.Random(f"{seed}\x00{j}\x00{prompt}") for j in range(n)]
            room = self.max_length - len(ids) if self.max_length else params.max_new_tokens
            if room < 1:
                raise PromptTooLongError(f"prompt {i} has {len(ids)} tokens; the model reads at most "
                                         f"{self.max_length}")
            jobs.append(_Job(i, ids, rngs, min(params.max_new_tokens, room)))
        return jobs

    def _chunks(self, jobs: list[_Job]) -> list[list[_Job]]:
        """Jobs sorted by token ids (so prefixes of one trace are neighbours), cut into chunks
        of at most `batch_size` x `FULL_LENGTH` sequence tokens, each sequence counted at its
        job's `max_new_tokens` up to `FULL_LENGTH` (a chunk always holds at least one job)."""
        chunks, current, used = [], [], 0
        for job in sorted(jobs, key=lambda j: j.ids):
            size = len(job.rngs) * min(job.max_new_tokens, FULL_LENGTH)
            if current and used + size > self.batch_size * FULL_LENGTH:
                chunks.append(current)
                current, used = [], 0
            current.append(job)
            used += size
        if current:
            chunks.append(current)
        return chunks

    def _prefill(self, chunk: list[_Job]) -> None:
        """Each job's KV cache and next-token logits. A job reuses the longest token prefix
        already encoded (by a job of the chunk, or kept in `prompt_cache` from an earlier call)
        and encodes only the rest; the rests are encoded together, a few padded forward passes
        per chunk (`_encode_together`), not one pass per prompt. A job that shares much more
        with a longer job of the chunk than with anything encoded waits for it (the next wave):
        the shorter prefixes of one trace encode only their last token."""
        order = sorted(chunk, key=lambda j: -len(j.ids))
        # what the prompt cache holds for each job (looked up once: nothing is added before the end)
        cached = {id(job): (0, None) if self.prompt_cache is None else
                  self.prompt_cache.longest_prefix(job.ids) for job in order}
        wave_of: dict[int, int] = {}
        for i, job in enumerate(order):
            known = cached[id(job)][0]
            wait, common = None, 0
            for other in order[:i]:
                shared = common_length(job.ids, other.ids)
                if shared > common:
                    wait, common = other, shared
            gain = common - known
            if wait is not None and gain >= max(WAIT_GAIN_TOKENS, (len(job.ids) - known) // 2):
                wave_of[id(job)] = wave_of[id(wait)] + 1
            else:
                wave_of[id(job)] = 0
        done: list[_Job] = []
        for wave in range(max(wave_of.values()) + 1):
            plans = []
            for job in (j for j in order if wave_of[id(j)] == wave):
                shared, source = 0, None
                for other in done:
                    common = common_length(job.ids, other.ids)
                    if common > shared:
                        shared, source = common, other.kv
                if self.prompt_cache is not None:
                    # an encoded prompt, or a sample of the last call (a search's kept prefix + its step)
                    common, entry = cached[id(job)]
                    self.prompt_cache.touch(entry)
                    exact = entry is not None and common == len(job.ids) == len(entry.ids)
                    if exact and entry.logits is not None:  # encoded before, or sampled with its logits
                        job.kv, job.logits = entry.kv, entry.logits
                        self._count(prompt_tokens=len(job.ids))
                        continue
                    if common > shared:
                        shared, source = common, entry
                # encode at least the last token, for its logits
                plans.append((job, min(shared, len(job.ids) - 1), source))
            for group in _padding_groups(plans):
                self._encode_together(group)
            done += [j for j in order if wave_of[id(j)] == wave]
        if self.prompt_cache is not None:
            for job in order:
                self.prompt_cache.add(EncodedPrompt(tuple(job.ids), job.kv, job.logits))

    def _encode_together(self, plans: list[tuple[_Job, int, object]]) -> None:
        """One forward pass for several jobs, each (job, tokens shared, where they come from: a
        job's cache, an `EncodedPrompt` or a `SampledContinuation`): the shared keys/values
        left-padded to the longest, the new tokens right-padded, an attention mask over both;
        each job's cache and logits are cut out of the result."""
        past = max(shared for _, shared, _ in plans)
        width = max(len(job.ids) - shared for job, shared, _ in plans)
        rows = len(plans)
        cache = DynamicCache()
        template = next((source for _, shared, source in plans if shared), None)
        if template is not None:  # with room for the new tokens: the forward pass writes them in place
            cache.layers = []
            for layer, (k, v) in enumerate(_layers(template)):
                keys = k.new_zeros(rows, k.shape[1], past + width, k.shape[3])
                values = v.new_zeros(rows, v.shape[1], past + width, v.shape[3])
                for row, (_, shared, source) in enumerate(plans):
                    at = past - shared
                    for part_keys, part_values in _segments(source, layer) if shared else ():
                        n = min(part_keys.shape[2], past - at)
                        if n <= 0:
                            break
                        keys[row, :, at:at + n] = part_keys[0, :, :n]
                        values[row, :, at:at + n] = part_values[0, :, :n]
                        at += n
                cache.layers.append(RoomyLayer.filled(keys, values, past))
        tails = [job.ids[shared:] for job, shared, _ in plans]
        tokens = torch.tensor([tail + tail[-1:] * (width - len(tail)) for tail in tails], device=self.device)
        positions = torch.tensor([[shared + i for i in range(width)] for _, shared, _ in plans], device=self.device)
        if self.max_length:  # the padding after a tail must not run off the positions
            positions = positions.clamp_(max=self.max_length - 1)
        kwargs = {}
        if rows > 1:  # (one row: no padding, no mask)
            mask = torch.zeros(rows, past + width, dtype=torch.long, device=self.device)
            for row, ((_, shared, _), tail) in enumerate(zip(plans, tails)):
                mask[row, past - shared:past + len(tail)] = 1
            kwargs["attention_mask"] = mask
        last = sorted({len(tail) - 1 for tail in tails})
        out = self.model(input_ids=tokens, position_ids=positions, past_key_values=cache, use_cache=True,
                         logits_to_keep=torch.tensor(last, device=self.device), **kwargs)
        layers = out.past_key_values.layers
        for row, ((job, shared, _), tail) in enumerate(zip(plans, tails)):
            job.logits = out.logits[row, last.index(len(tail) - 1)]
            cut = slice(past - shared, past + len(tail))
            job.kv = [(layer.keys[row:row + 1, :, cut].clone(), layer.values[row:row + 1, :, cut].clone())
                      for layer in layers]
            self._count(prompt_tokens=len(job.ids), prefill_tokens=len(tail))
        self._count(lm_head_rows=rows * len(last), forward_calls=1, attention_pairs=rows * width * (past + width))

    def _sample_chunk(self, chunk: list[_Job], params: SamplingParams,
                      stops: tuple[str, ...]) -> list[list[Completion]]:
        self._prefill(chunk)
        rows = [(job, j) for job in chunk for j in range(len(job.rngs))]
        row_prompt = torch.tensor([p for p, job in enumerate(chunk) for _ in job.rngs], device=self.device)
        cache_class = SharedPrefixCache if self.shared_attention else RepeatedPrefixCache
        longest = max(job.max_new_tokens for job in chunk)
        # room for 64 new tokens to start with; a layer doubles it when it runs out
        cache = cache_class([job.kv for job in chunk], row_prompt, room=min(longest, 64))
        prompt_kv = {id(job): job.kv for job in chunk}  # (for the samples kept for the next call)
        for job in chunk:
            job.kv = None  # the chunk's cache holds them now
        positions = torch.tensor([len(job.ids) for job, _ in rows], device=self.device)
        logits = torch.stack([job.logits for job in chunk])[row_prompt]

        batch = list(range(len(rows)))  # the row number at each position of the batch
        alive = [True] * len(batch)  # finished rows stay in the batch (ignored) until compaction
        generated: list[list[int]] = [[] for _ in rows]
        results: list[Completion | None] = [None] * len(rows)
        # Samples kept for the next call, when they are steps (the call has stop strings: a later
        # prompt may extend them; a whole rollout is not): a row that has just finished is fed
        # its last token once more (not dropped before), so its keys/values and the logits after
        # it are known.
        keeping = self.prompt_cache is not None and isinstance(cache, SharedPrefixCache) and bool(stops)
        after: dict[int, torch.Tensor] = {}  # row -> the logits after its last token
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
            just_finished = {p for p in live if not alive[p]} if keeping else set()
            gone = [p for p, ok in enumerate(alive) if not ok and p not in just_finished]
            if 4 * len(gone) >= len(batch):  # a quarter finished: drop them
                if keeping:
                    self._keep_samples(cache, [(p, batch[p]) for p in gone], rows, generated, prompt_kv, after)
                stay = [p for p in range(len(batch)) if alive[p] or p in just_finished]
                keep = torch.tensor(stay, device=self.device)
                cache.select_rows(keep)
                positions, tokens = positions[keep], tokens[keep]
                batch, alive = [batch[p] for p in stay], [alive[p] for p in stay]
                just_finished = {i for i, p in enumerate(stay) if p in just_finished}
            out = self.model(input_ids=tokens[:, None], position_ids=positions[:, None], past_key_values=cache,
                             use_cache=True, **cache.forward_kwargs())
            logits, positions = out.logits[:, -1], positions + 1
            for p in just_finished:
                after[batch[p]] = logits[p].clone()
            if self.max_length:  # finished rows waiting for compaction must not run off the positions
                positions = positions.clamp_(max=self.max_length - 1)
            self._count(decode_tokens=len(batch), lm_head_rows=len(batch), forward_calls=1,
                        attention_pairs=cache.attended_pairs())

        if keeping:
            self._keep_samples(cache, list(enumerate(batch)), rows, generated, prompt_kv, after)
        self._count(generated_tokens=sum(c.tokens for c in results))
        grouped: dict[int, list[Completion]] = {}
        for (job, _), completion in zip(rows, results):
            grouped.setdefault(job.index, []).append(completion)
        return [grouped[job.index] for job in chunk]

    def _keep_samples(self, cache, leaving: list[tuple[int, int]], rows, generated, prompt_kv, after) -> None:
        """Keep the samples of rows leaving the batch ((position in the batch, row)) for the next
        call, with the keys and values decoding computed for their tokens: all of them and the
        logits after the last when the row was fed its last token (`after`), else all but the
        last."""
        fed = [len(generated[row]) - (0 if row in after else 1) for _, row in leaving]
        if max(fed, default=0) < 1:
            return
        # one gather per layer for all leaving rows; each sample keeps a view of its row
        index = torch.tensor([position for position, _ in leaving], device=self.device)
        width = max(fed)
        gathered = [(layer.generated.keys[index, :, :width], layer.generated.values[index, :, :width])
                    for layer in cache.layers]
        for i, ((_, row), count) in enumerate(zip(leaving, fed)):
            if count < 1:
                continue
            job = rows[row][0]
            own = [(keys[i:i + 1, :, :count], values[i:i + 1, :, :count]) for keys, values in gathered]
            self.prompt_cache.samples.add(SampledContinuation(tuple(job.ids) + tuple(generated[row][:count]),
                                                              prompt_kv[id(job)], own, after.get(row)))

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
    per sample; `kv`/`logits` hold its encoded prompt between prefill and decoding. `parts`:
    (request index, samples) of each request it samples for, in the order of `rngs`."""

    index: int
    ids: list[int]
    rngs: list[random.Random]
    max_new_tokens: int  # the request's, or less if the model's positions run out
    kv: list | None = None
    logits: torch.Tensor | None = None
    parts: list[tuple[int, int]] | None = None

    def __post_init__(self):
        if self.parts is None:
            self.parts = [(self.index, len(self.rngs))]


def _segments(source, layer: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The keys/values ([1, heads, tokens, dim]) of one layer of an encoded prefix, in order: a
    job's cache, an `EncodedPrompt`, or a `SampledContinuation` (its prompt's, then its own)."""
    if isinstance(source, SampledContinuation):
        return [source.prompt_kv[layer], source.generated_kv[layer]]
    if isinstance(source, EncodedPrompt):
        return [source.kv[layer]]
    return [source[layer]]


def _layers(source) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first keys/values of each layer of `source` (for their shapes)."""
    if isinstance(source, SampledContinuation):
        return source.prompt_kv
    return source.kv if isinstance(source, EncodedPrompt) else source


# A job waits for a longer job of its chunk (a later forward pass) only to save this many tokens
# or more, and at least half of what it would encode now.
WAIT_GAIN_TOKENS = 16
# Positions (rows x (shared + new tokens)) of one batched prefill pass: bounds its memory.
PREFILL_POSITIONS = 16384


def _padding_groups(plans: list[tuple[_Job, int, list | None]]) -> list[list]:
    """The (job, shared, source) plans of one wave cut into forward passes: sorted by their new
    tokens, a group closes before padding would more than double the tokens it computes, or
    it would hold more than `PREFILL_POSITIONS` positions."""
    groups, current = [], []
    for plan in sorted(plans, key=lambda p: (len(p[0].ids) - p[1], p[1])):
        trial = current + [plan]
        width = max(len(job.ids) - shared for job, shared, _ in trial)
        past = max(shared for _, shared, _ in trial)
        new = sum(len(job.ids) - shared for job, shared, _ in trial)
        if current and (len(trial) * width > 2 * new + 64 or len(trial) * (past + width) > PREFILL_POSITIONS):
            groups.append(current)
            trial = [plan]
        current = trial
    if current:
        groups.append(current)
    return groups


def _merge_same_prompts(jobs: list[_Job]) -> list[_Job]:
    """One job per distinct prompt: a prompt requested more than once (e.g. two rounds of
    Monte Carlo with their own seeds) is encoded once and its rows share its cache. Each
    row keeps its own random stream, so its samples are those of its own request."""
    merged: dict[tuple[int, ...], _Job] = {}
    for job in jobs:
        same = merged.get(tuple(job.ids))
        if same is None:
            merged[tuple(job.ids)] = _Job(job.index, job.ids, list(job.rngs), job.max_new_tokens)
        else:
            same.rngs += job.rngs
            same.parts.append((job.index, len(job.rngs)))
    return list(merged.values())


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


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return ids
