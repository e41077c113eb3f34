"""The shared-prefix KV-cache machinery of `TransformersCompleter`: decoding the N samples of
a few prompts with each prompt's cache kept once.

- `SharedPrefixCache` (the fast path): one KV cache per prompt, shared by its N rows through
  `shared_prefix_attention` (registered with transformers' AttentionInterface), which attends
  each row's query to its prompt's cache and to its own generated tokens and merges the two
  softmaxes exactly by their log-sum-exp, as cascade attention does. For small models on
  CPU, reading N copies of the cache was most of the decoding time.
- `RepeatedPrefixCache` (the simple path, any attention implementation): each prompt's cache
  copied for each of its rows, left-padded, with an attention mask.
- `use_shared_prefix_attention(model)` switches a model to the fast path when its attention
  is plain SDPA (no sliding windows, soft-capping or flash kernels).

Both caches grow in place (`RoomyLayer`: room doubles when it runs out) and drop finished rows
with `select_rows`.

- `PromptCache`: encoded prompts kept from one call to the next (least recently used dropped
  beyond a size in bytes), so that a prompt extending one already encoded (step-level search:
  the kept prefix plus its new step, at every depth; binary search: a longer prefix of the
  trace it probed) encodes only its new tokens, and a prompt asked again none.
- `CallSamples` (in `PromptCache`): the last call's samples with the keys and values their decoding computed,
  so that a search's next prompt (a kept prefix plus the step sampled for it) encodes only the
  delimiter after that step.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

SHARED_PREFIX_ATTENTION = "prm_shared_prefix"


class RoomyLayer(DynamicLayer):
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

    @classmethod
    def filled(cls, keys: torch.Tensor, values: torch.Tensor, length: int) -> RoomyLayer:
        """A layer over these buffers, the first `length` positions filled (no copy)."""
        layer = cls.__new__(cls)
        DynamicLayer.__init__(layer)
        layer._keys, layer._values = keys, values
        layer.length, layer.dtype, layer.device, layer.is_initialized = length, keys.dtype, keys.device, True
        layer._expose()
        return layer

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


class RepeatedPrefixCache(DynamicCache):
    """The simple path: each prompt's cache copied for each of its rows, left-padded, with an
    attention mask; works with any attention implementation."""

    def __init__(self, prompt_kv: list[list[tuple]], row_prompt: torch.Tensor, room: int):
        super().__init__()
        self.layers = []
        for layer in zip(*prompt_kv):
            keys, self.valid = _left_padded([k for k, _ in layer])
            values, _ = _left_padded([v for _, v in layer])
            self.layers.append(RoomyLayer(keys[row_prompt], values[row_prompt], room))
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
    """One layer of `SharedPrefixCache`: the prompts' keys/values once each, and each row's
    generated keys/values (what `update` stores and returns to the attention function)."""

    def __init__(self, prompt_keys, prompt_values, rows: int, room: int):
        super().__init__()
        self.prompt_keys, self.prompt_values = prompt_keys, prompt_values
        self.generated = RoomyLayer(prompt_keys.new_empty(rows, prompt_keys.shape[1], 0, prompt_keys.shape[3]),
                                     prompt_values.new_empty(rows, prompt_values.shape[1], 0,
                                                             prompt_values.shape[3]), room)
        self.dtype, self.device, self.is_initialized = prompt_keys.dtype, prompt_keys.device, True
        self.keys, self.values = self.generated.keys, self.generated.values

    def update(self, key_states, value_states, *args, **kwargs):
        self.keys, self.values = self.generated.update(key_states, value_states)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.prompt_keys.shape[2] + self.generated.length


class SharedPrefixCache(DynamicCache):
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
                            scaling: float | None = None, shared_prefix_cache: SharedPrefixCache | None = None,
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


def use_shared_prefix_attention(model) -> bool:
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


@dataclass
class EncodedPrompt:
    """A prompt's token ids, per-layer keys and values ([1, heads, tokens, dim]) and the logits
    of its next token."""

    ids: tuple[int, ...]
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    logits: torch.Tensor

    @property
    def bytes(self) -> int:
        return self.logits.numel() * self.logits.element_size() + \
            sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.kv)


@dataclass
class SampledContinuation:
    """A sample of the completer's last call: its prompt's keys and values and those its
    decoding computed for its tokens (all, with the logits after them, when its last token was
    fed back before the row left the batch; else all but the last), so that a prompt extending
    it (a search's kept prefix plus the step just sampled) encodes only what follows, or
    nothing."""

    ids: tuple[int, ...]  # the prompt's tokens, then the sampled ones with keys and values
    prompt_kv: list[tuple[torch.Tensor, torch.Tensor]]  # [1, heads, prompt tokens, dim]
    generated_kv: list[tuple[torch.Tensor, torch.Tensor]]  # [1, heads, sampled tokens, dim]
    logits: torch.Tensor | None = None  # of the token after `ids`, when decoding computed it

    @property
    def kv(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.cat([pk, gk], dim=2), torch.cat([pv, gv], dim=2))
                for (pk, pv), (gk, gv) in zip(self.prompt_kv, self.generated_kv)]


class CallSamples:
    """The `SampledContinuation`s of one call, grouped like `PromptCache` by their first tokens."""

    def __init__(self):
        self.groups: dict[tuple[int, ...], list[SampledContinuation]] = {}

    def add(self, sample: SampledContinuation) -> None:
        self.groups.setdefault(sample.ids[:PromptCache.KEY_TOKENS], []).append(sample)

    def longest_prefix(self, ids: list[int]) -> tuple[int, SampledContinuation | None]:
        best, found = 0, None
        for sample in self.groups.get(tuple(ids[:PromptCache.KEY_TOKENS]), ()):
            common = common_length(ids, sample.ids)
            if common > best:
                best, found = common, sample
        return best, found


class PromptCache:
    """Encoded prompts kept between calls, at most `max_bytes` of keys and values (the least
    recently used go first). Prompts are grouped by their first `KEY_TOKENS` tokens (the
    problem's text), so a lookup compares a prompt with its own problem's prompts only.

    It also keeps the samples of the completer's last call if it had stop strings (steps,
    `SampledContinuation`), until the end of the next call (`start_call`, `end_call`): a
    search's next prompts extend some of them; the others (pruned) are dropped after one call.
    They are not counted in `max_bytes`: they are what that call's decoding held."""

    KEY_TOKENS = 16

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes = max_bytes, 0
        self.entries: OrderedDict[tuple[int, ...], EncodedPrompt] = OrderedDict()
        self.groups: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
        self.samples, self.last_samples = CallSamples(), CallSamples()  # this call's, the last call's

    def start_call(self) -> None:
        self.last_samples, self.samples = self.samples, CallSamples()

    def end_call(self) -> None:
        self.last_samples = CallSamples()

    def longest_prefix(self, ids: list[int]) -> tuple[int, EncodedPrompt | SampledContinuation | None]:
        """(tokens shared, entry) of the cached prompt or last call's sample sharing the most
        leading tokens with `ids` (`touch` counts it as used)."""
        best, found = 0, None
        for key in self.groups.get(tuple(ids[:self.KEY_TOKENS]), ()):
            common = common_length(ids, key)
            if common > best:
                best, found = common, key
        shared, sample = self.last_samples.longest_prefix(ids)
        if shared > best:
            return shared, sample
        if found is None:
            return 0, None
        return best, self.entries[found]

    def touch(self, entry: EncodedPrompt | SampledContinuation | None) -> None:
        """Count a kept prompt (what `longest_prefix` returned) as used: the least recently used go first."""
        if isinstance(entry, EncodedPrompt) and entry.ids in self.entries:
            self.entries.move_to_end(entry.ids)

    def add(self, entry: EncodedPrompt) -> None:
        """Keep `entry`. The prompts it extends are dropped: it holds their keys and values (a
        search's kept prefix is superseded by its children, so a beam's cache is one entry)."""
        if entry.ids in self.entries:
            self.entries.move_to_end(entry.ids)
            return
        size = entry.bytes
        if size > self.max_bytes:
            return
        group = self.groups.setdefault(entry.ids[:self.KEY_TOKENS], set())
        for ids in [ids for ids in group if len(ids) < len(entry.ids) and entry.ids[:len(ids)] == ids]:
            self._drop(ids)
        self.entries[entry.ids] = entry
        self.groups.setdefault(entry.ids[:self.KEY_TOKENS], set()).add(entry.ids)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self.entries)))

    def _drop(self, ids: tuple[int, ...]) -> None:
        self.bytes -= self.entries.pop(ids).bytes
        self.groups[ids[:self.KEY_TOKENS]].discard(ids)
        if not self.groups[ids[:self.KEY_TOKENS]]:
            del self.groups[ids[:self.KEY_TOKENS]]

    def clear(self) -> None:
        self.entries.clear()
        self.groups.clear()
        self.bytes = 0
        self.samples, self.last_samples = CallSamples(), CallSamples()


def common_length(a, b) -> int:
    """How many leading tokens two sequences share."""
    n = min(len(a), len(b))
    if list(a[:n]) == list(b[:n]):
        return n
    i = 0
    while a[i] == b[i]:
        i += 1
    return i
