"""Scoring a growing prefix once: causal step scorers keep each prefix's key/value cache and
run only the tokens its extensions add.

A search scores the prefixes of a tree: a node's prefix is its parent's plus one step. Scored
whole, a search of depth D reads every step D(D+1)/2 times; with a causal backbone the
hidden state of a token depends only on the tokens before it, so a parent's KV cache can be
kept and only the new step's tokens run: D steps then cost O(D) tokens.

`score_incrementally(scorer, items, parents)` is what `BatchedStepScorer.score_prefixes`
runs for a scorer whose `_causal_backbone()` is not None. For each item it

1. encodes the whole prefix with the scorer's own `_encode_many` (so the input is exactly
   what full scoring reads, whatever the family's format),
2. reuses the parent's cache up to the longest common prefix of the two token sequences (a
   tokenizer that merges a step with what follows, or a lookahead continuation in the
   parent, only shortens the reused part; scores never depend on it), and the parent's
   probabilities at the step positions inside that part,
3. runs the rest for all items in length-sorted batches: the parents' caches left-padded to
   one width with an attention mask, the new tokens right-padded, with explicit position ids,
4. applies the scorer's `_step_head` to the hidden states at the new step positions.

Items without a parent that share a problem (the first depth of a search) first run their
common prompt once, as a synthetic parent. Scores equal full re-scoring to float tolerance
(tests/test_reward_prefix_cache.py checks every causal family).

`PrefixState` is what a scored prefix leaves for its extensions: its token ids, the
probabilities at its step positions, and (causal scorers) one (keys, values) pair per layer.
Scorers without a cache return states with ids only, so the caller's accounting of the
tokens shared with a parent works the same for every scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a cache is used: this module is imported by every scorer
    import torch


@dataclass
class PrefixState:
    """What a scored prefix leaves for the scoring of its extensions (opaque to callers)."""

    input_ids: list[int]
    probs: dict[int, float] = field(default_factory=dict)  # step position -> probability
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer [1, kv_heads, len, dim]


@dataclass
class ScoredPrefix:
    """One item's result from `StepScorer.score_prefixes`.

    scores: one per step (None where no score could be given). state: pass it as the parent
    of this prefix's extensions (None: the scorer keeps nothing). tokens: the prefix's input
    tokens; computed_tokens: how many of them the model ran in this call (the rest came from
    the parent's cache); new_tokens: tokens not shared with the parent's input (or, for items
    without a parent, with an earlier item of the same problem in the call): what a perfect
    cache would have to compute.
    """

    scores: list[float | None]
    state: PrefixState | None = None
    tokens: int = 0
    computed_tokens: int = 0
    new_tokens: int = 0


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def new_token_counts(encoded, items, parents) -> list[int]:
    """For each encoded item: tokens not shared with its parent's ids (parentless items: with
    the longest match among earlier parentless items of the same problem)."""
    counts, seen = [], {}
    for enc, item, parent in zip(encoded, items, parents):
        ids = enc.input_ids
        if parent is not None:
            counts.append(len(ids) - common_prefix(parent.input_ids, ids))
            continue
        earlier = seen.setdefault(item[0], [])
        shared = max((common_prefix(other, ids) for other in earlier), default=0)
        counts.append(len(ids) - shared)
        earlier.append(ids)
    return counts


def is_causal(model) -> bool:
    """True when every self-attention of `model` is causal and full (no sliding window): then
    a prefix's hidden states do not depend on what follows and its cache can be reused."""
    config = getattr(model, "config", None)
    if config is not None:
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        if getattr(text, "use_sliding_window", False) or getattr(text, "attn_logit_softcapping", None):
            return False
        layer_types = getattr(text, "layer_types", None)
        if layer_types and any(t != "full_attention" for t in layer_types):
            return False
        if getattr(text, "is_encoder_decoder", False):
            return False
    flags = [m.is_causal for m in model.modules()
             if "Attention" in type(m).__name__ and isinstance(getattr(m, "is_causal", None), bool)]
    return bool(flags) and all(flags)


def cached_causal_check(owner, model) -> bool:
    """`is_causal(model)`, computed once per scorer `owner` (kept in `owner._prefix_cache_ok`)."""
    known = getattr(owner, "_prefix_cache_ok", None)
    if known is None:
        known = is_causal(model)
        owner._prefix_cache_ok = known
    return known


@dataclass
class _Row:
    """One forward row: `ids[start:]` run after `parent_kv` (which covers ids[:start])."""

    ids: list[int]
    start: int
    parent_kv: list[tuple[torch.Tensor, torch.Tensor]] | None
    positions: list[int]  # step positions >= start, whose probabilities this row computes


def score_incrementally(scorer, items: list, parents: list[PrefixState | None],
                        batch_size: int | None = None) -> list[ScoredPrefix]:
    """Score each item from its parent's cache (see the module docstring)."""
    encoded = scorer._encode_many(items)
    parents = list(parents)
    news = new_token_counts(encoded, items, parents)
    computed = [0] * len(items)
    budget = (batch_size or scorer.batch_size, scorer.max_batch_tokens)

    # 1. items without a parent that share a problem: their common prompt once, as a parent
    groups: dict[str, list[int]] = {}
    for i, (item, parent) in enumerate(zip(items, parents)):
        if parent is None:
            groups.setdefault(item[0], []).append(i)
    shared_rows, members = [], []
    for indices in groups.values():
        if len(indices) < 2:
            continue
        seqs = [encoded[i].input_ids for i in indices]
        length = min(len(s) for s in seqs) - 1  # every member runs at least one token itself
        for s in seqs[1:]:
            length = min(length, common_prefix(seqs[0], s))
        firsts = [p for i in indices for p in encoded[i].step_positions[:1]]
        length = min([length] + firsts)  # no member's step position inside the shared part
        if length >= 2:
            shared_rows.append(_Row(seqs[0][:length], 0, None, []))
            members.append(indices)
    if shared_rows:
        for row, indices, (state, _) in zip(shared_rows, members, _run(scorer, shared_rows, *budget)):
            computed[indices[0]] += len(row.ids)
            for i in indices:
                parents[i] = state

    # 2. every item from its parent's cache
    rows, starts = [], []
    for enc, parent in zip(encoded, parents):
        ids = enc.input_ids
        start = 0
        if parent is not None and parent.kv is not None:
            start = common_prefix(parent.input_ids, ids)
            missing = [p for p in enc.step_positions if p < start and p not in parent.probs]
            start = min([start] + missing)
        starts.append(start)
        if start < len(ids):
            rows.append(_Row(ids, start, parent.kv if start > 0 else None,
                             [p for p in enc.step_positions if p >= start]))
    ran = iter(_run(scorer, rows, *budget))
    results = []
    for i, (enc, parent, start) in enumerate(zip(encoded, parents, starts)):
        if start < len(enc.input_ids):
            state, probs = next(ran)
        else:  # all of it is in the parent's cache (e.g. a step cut by max_length)
            state = PrefixState(list(enc.input_ids), kv=[(k[:, :, :start], v[:, :, :start]) for k, v in parent.kv])
            probs = {}
        state.probs = {p: parent.probs[p] for p in enc.step_positions if p < start} if start else {}
        state.probs.update(probs)
        computed[i] += len(enc.input_ids) - start
        scores = [state.probs[p] for p in enc.step_positions] + [None] * (enc.n_steps - enc.kept)
        results.append(ScoredPrefix(scores, state, len(enc.input_ids), computed[i], news[i]))
    dropped = [e.dropped for e in encoded if e.dropped]
    if dropped:
        import logging

        logging.getLogger("prm.reward.scorer").warning(
            "%d step(s) in %d trace(s) did not fit in max_length and have no score", sum(dropped), len(dropped))
    return results


def _run(scorer, rows: list[_Row], batch_size: int, max_tokens: int) -> list[tuple[PrefixState, dict[int, float]]]:
    """Run every row's new tokens after its parent's cache, in length-sorted batches; per
    row its new state (ids and cache; probabilities filled by the caller) and the
    probabilities at its new step positions."""
    import torch

    from prm.reward.batching import length_batches

    backbone = scorer._causal_backbone()
    out: list = [None] * len(rows)
    with torch.inference_mode():
        for batch in length_batches([len(r.ids) for r in rows], batch_size, max_tokens):
            for index, result in zip(batch, _forward(scorer, backbone, [rows[i] for i in batch])):
                out[index] = result
    return out


def _cache_argument(backbone) -> str:
    """The name of the forward argument that takes a KV cache: `cache` in recent transformers
    (`past_key_values` before, and through a peft wrapper)."""
    import inspect

    model = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _forward(scorer, backbone, rows: list[_Row]) -> list[tuple[PrefixState, dict[int, float]]]:
    import torch
    from transformers import DynamicCache

    device = next(backbone.parameters()).device
    width = max(r.start for r in rows)  # the parents' caches, left-padded to one width
    new = max(len(r.ids) - r.start for r in rows)
    pad = getattr(scorer, "pad_id", None)
    pad = 0 if pad is None else pad
    input_ids = torch.full((len(rows), new), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width + new), dtype=torch.long)
    positions = torch.zeros((len(rows), new), dtype=torch.long)
    for b, row in enumerate(rows):
        count = len(row.ids) - row.start
        input_ids[b, :count] = torch.tensor(row.ids[row.start:], dtype=torch.long)
        mask[b, width - row.start:width + count] = 1
        positions[b] = torch.arange(row.start, row.start + new)
    cache = DynamicCache()
    if width:
        layers = []
        template = next(r.parent_kv for r in rows if r.parent_kv is not None)
        for layer, (k0, v0) in enumerate(template):
            keys = k0.new_zeros(len(rows), k0.shape[1], width, k0.shape[3])
            values = v0.new_zeros(len(rows), v0.shape[1], width, v0.shape[3])
            for b, row in enumerate(rows):
                if row.start:
                    k, v = row.parent_kv[layer]
                    keys[b, :, width - row.start:] = k[0, :, :row.start]
                    values[b, :, width - row.start:] = v[0, :, :row.start]
            layers.append((keys.to(device), values.to(device)))
        cache = DynamicCache(layers)
    hidden = backbone(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                      position_ids=positions.to(device), use_cache=True,
                      **{_cache_argument(backbone): cache}).last_hidden_state  # the cache grows in place
    picks = [(b, p) for b, row in enumerate(rows) for p in row.positions]
    probs = []
    if picks:
        index_b = torch.tensor([b for b, _ in picks], device=hidden.device)
        index_t = torch.tensor([p - rows[b].start for b, p in picks], device=hidden.device)
        probs = scorer._step_head(hidden[index_b, index_t]).float().cpu().tolist()
    found: list[dict[int, float]] = [{} for _ in rows]
    for (b, p), value in zip(picks, probs):
        found[b][p] = value
    results = []
    for b, row in enumerate(rows):
        count = len(row.ids) - row.start
        lo, hi = width - row.start, width + count
        kv = [(layer.keys[b:b + 1, :, lo:hi].clone(), layer.values[b:b + 1, :, lo:hi].clone())
              for layer in cache.layers]
        results.append((PrefixState(list(row.ids), kv=kv), found[b]))
    return results
