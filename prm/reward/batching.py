"""Grouping items of different lengths into padded batches (`length_batches`), shared by
whole-prefix scoring (`prm.reward.scorer`) and incremental scoring (`prm.reward.prefix_cache`)."""

from __future__ import annotations


def length_batches(lengths: list[int], batch_size: int, max_tokens: int,
                   max_padding: float = 0.1) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first: at most `batch_size`
    items, at most `max_tokens` padded tokens, and no item padded by more than `max_padding`
    of the batch's width (a longer item still gets a batch of its own).

    The padding bound matters on CPU, where a padded token costs as much as a real one: for a
    135M model, unbounded batches of GSM8K traces computed 1.76x the real tokens and scored at
    half the speed of one trace at a time (bench/README.md, scoring)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches, current, width = [], [], 0
    for i in order:
        length = lengths[i]
        full = len(current) >= batch_size or (len(current) + 1) * max(width, length) > max_tokens
        if current and (full or length < (1 - max_padding) * width):
            batches.append(current)
            current, width = [], 0
        current.append(i)
        width = max(width, length)
    if current:
        batches.append(current)
    return batches
