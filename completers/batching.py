"""Merging the completer calls of many callers into one call.

An in-process sampler (`TransformersCompleter`) pays a fixed price per decoding step, whatever
the number of rows it decodes: a forward pass through every module in Python. Labelling one
trace at a time gives it a few prefixes times a few samples per call (8-30 rows), where it
decodes up to `batch_size` (128) rows for the same price per step. `CallBatcher` lets many
callers (threads, one trace each) share that price: each caller calls `complete_prompts` as
usual and blocks; when every caller in a `session` is waiting, their calls are sent to the
completer as one call (per-prompt seeds and sample counts keep every prompt's samples those
of its own call) and each caller gets its own part back.

The samples of a prompt depend only on (prompt, seed, sample index) (`Completer.complete_prompts`),
so a merged call returns what the separate calls would have.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

from completers.base import Completer, Completion, SamplingParams, per_prompt
from completers.text import normalize_stop


@dataclass
class _Call:
    prompts: list[str]
    params: SamplingParams
    stop: tuple[str, ...]
    seeds: list[int | None]
    ns: list[int]
    result: list[list[Completion]] | None = None
    error: BaseException | None = None

    def merge_key(self) -> tuple:
        """Calls that may be merged: the same sampling settings apart from seed and n."""
        p = self.params
        return (p.temperature, p.top_p, p.max_new_tokens, self.stop)


class CallBatcher(Completer):
    """A completer that merges the concurrent calls of its `session`s into calls to `completer`.

    Every thread that labels with it enters `session()` first; a call blocks until each thread
    in a session has a call waiting (or has left), and then one of them makes the merged call
    while the others wait for their part. A thread outside any session is served at once.
    """

    def __init__(self, completer: Completer):
        self.completer = completer
        self.name = completer.name
        self.step_delimiter = completer.step_delimiter
        self.tokenizer = completer.tokenizer
        self.calls = 0  # merged calls made, for benchmarks
        self._condition = threading.Condition()
        self._waiting: list[_Call] = []
        self._active = 0
        self._running = False

    def prompt_for(self, problem: str, prefix_steps: list[str]) -> str:
        return self.completer.prompt_for(problem, prefix_steps)

    def prompt_tokens(self, prompt: str) -> int | None:
        return self.completer.prompt_tokens(prompt)

    def split_steps(self, text: str) -> list[str]:
        return self.completer.split_steps(text)

    @contextmanager
    def session(self):
        """Count the calling thread among the callers whose calls are merged, until it leaves."""
        with self._condition:
            self._active += 1
        try:
            yield self
        finally:
            with self._condition:
                self._active -= 1
                self._condition.notify_all()  # the others may all be waiting now

    def complete_prompts(self, prompts: list[str], params: SamplingParams, *,
                         stop: str | list[str] | None = None, seeds: list[int | None] | None = None,
                         ns: list[int] | None = None) -> list[list[Completion]]:
        pairs = per_prompt(params, len(prompts), seeds, ns)
        call = _Call(list(prompts), params, tuple(normalize_stop(stop)), [s for s, _ in pairs], [n for _, n in pairs])
        with self._condition:
            self._waiting.append(call)
            self._condition.notify_all()
            while call.result is None and call.error is None:
                if not self._running and len(self._waiting) >= self._active:
                    batch, self._waiting, self._running = self._waiting, [], True
                    break
                self._condition.wait()
            else:
                return self._outcome(call)
        try:
            self._run(batch)
        finally:
            with self._condition:
                self._running = False
                self._condition.notify_all()
        return self._outcome(call)

    @staticmethod
    def _outcome(call: _Call) -> list[list[Completion]]:
        if call.error is not None:
            raise call.error
        return call.result

    def _run(self, batch: list[_Call]) -> None:
        """One completer call per group of mergeable calls; a refused merged call (`ValueError`,
        e.g. one prompt too long) is retried call by call, so only the caller that sent the
        refused prompt gets the error."""
        groups: dict[tuple, list[_Call]] = {}
        for call in batch:
            groups.setdefault(call.merge_key(), []).append(call)
        for calls in groups.values():
            try:
                self._complete(calls)
            except ValueError:
                for call in calls:
                    try:
                        self._complete([call])
                    except Exception as err:  # noqa: BLE001 - handed to the caller
                        call.error = err
            except BaseException as err:  # noqa: BLE001 - handed to every caller of the group
                for call in calls:
                    call.error = err

    def _complete(self, calls: list[_Call]) -> None:
        first = calls[0]
        results = self.completer.complete_prompts(
            [p for c in calls for p in c.prompts], first.params, stop=list(first.stop) or None,
            seeds=[s for c in calls for s in c.seeds], ns=[n for c in calls for n in c.ns])
        self.calls += 1
        start = 0
        for call in calls:
            call.result = results[start:start + len(call.prompts)]
            start += len(call.prompts)

    def close(self) -> None:
        """The wrapped completer belongs to whoever made it: closing the batcher leaves it open."""
