"""Running an annotation for real: streaming output, resume, shards, progress and a summary.

The output is JSONL, one finished trace a line, appended through `prm.io.ResumableOutput`
as soon as the trace is done (flushed at once, fsynced at most once a second). Killing the
process at any moment loses at most the trace in progress: on restart the output is read
back, a torn last line (a write cut short has no final newline) is dropped, the ids already
done are skipped and the run carries on. Every trace's
samples come from seeds derived from (run seed, trace id), so the resumed output equals an
uninterrupted run's, apart from the wall-clock `seconds` fields: with every completer that
reproduces a sample from its seed (the in-process ones, this project's server). Through a
server that does not (`reproducible` is False: llama.cpp, vLLM, SGLang, see
`completers.openai_completer`), each trace records `"samples_reproducible": false` in its
settings, and a resume re-samples the traces that were not finished; finished traces are
never sampled again, so nothing already written changes.

`--shard i/n` keeps the traces whose id hashes to i (sha256 of the id, modulo n): each
process decides alone, and a trace stays in its shard if the input is reordered or grows.
`annotate.merge` joins the shard outputs and checks that none is missing.

Several traces are annotated at once in threads: with a completer whose calls are best
merged (the transformers completer: `label_traces`), written in input order; with `workers > 1`
otherwise (useful for HTTP completers, where the time is spent waiting on a server), in the
order they finish.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prm.errors import RecordError
from prm.io import ResumableOutput, read_finished, read_records  # read_finished: for annotate.merge
from prm.records import Trace

from annotate.config import AnnotateConfig

if TYPE_CHECKING:
    from annotate.grading import Grader
    from completers.base import Completer


# -- input ------------------------------------------------------------------------------------

def input_formats() -> list[str]:
    """"auto" and every format `prm.formats` can read."""
    from prm.formats import FORMATS

    return ["auto"] + [name for name, fmt in FORMATS.items() if fmt.reader is not None]


def load_input(path: str | os.PathLike, input_format: str = "auto", limit: int | None = None,
               need_reference: bool = True) -> list[Trace]:
    """The traces to annotate: native traces (JSONL, `datasets` folder, Parquet) or any layout
    `prm.formats` reads (GSM8K, MATH500, PRM800K, ...), told from its fields by default.

    Every trace needs a unique id, and a reference answer unless `need_reference` is False (an
    LLM judge grades no completion); a bad record raises `RecordError` naming the file, line
    (the record number for non-JSONL input) and field before any work starts.
    """
    from prm.formats import get_format, guess_format, read

    path = Path(path)
    if not path.exists():
        raise RecordError("no such file or folder", path=str(path))
    if input_format == "auto":
        input_format = guess_format(path)
    get_format(input_format)
    seen: dict[str, int] = {}

    def check(trace: Trace, number: int) -> Trace:
        if need_reference and (not trace.reference_answer or not str(trace.reference_answer).strip()):
            raise RecordError("a reference answer is needed to grade completions", field="reference_answer")
        if trace.id in seen:
            raise RecordError(f"duplicate id {trace.id!r} (first in record {seen[trace.id]})", field="id")
        seen[trace.id] = number
        return trace

    if input_format == "native" and path.is_file() and path.suffix != ".parquet":
        # read line by line so that an error names its line
        counter = iter(range(1, sys.maxsize))
        traces = []
        for trace in read_records(path, lambda value: check(Trace.from_dict(value), next(counter))):
            traces.append(trace)
            if limit is not None and len(traces) >= limit:
                break
        return traces
    traces = read(path, input_format, limit=limit)
    for number, trace in enumerate(traces, start=1):
        try:
            check(trace, number)
        except RecordError as err:
            raise RecordError(f"record {number} ({trace.id}): {err.reason}", path=str(path),
                              field=err.field) from None
    return traces


def parse_shard(text: str) -> tuple[int, int]:
    """`"i/n"` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"a shard is written i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return index, count


def shard_of(trace_id: str, count: int) -> int:
    """The shard (0..count-1) a trace id belongs to: stable across runs, machines and input order."""
    return int.from_bytes(hashlib.sha256(trace_id.encode("utf-8")).digest()[:8], "big") % count


def select_shard(traces: list[Trace], shard: tuple[int, int] | None) -> list[Trace]:
    if shard is None:
        return traces
    index, count = shard
    return [t for t in traces if shard_of(t.id, count) == index]


# -- output -----------------------------------------------------------------------------------

def run_settings(config: AnnotateConfig, completer_spec: str) -> dict:
    return {"completer": completer_spec, **config.settings()}


def samples_reproducible(completer) -> bool:
    """Whether `completer` gives the same samples for the same prompt and seed (in-process
    completers do; an HTTP completer knows from its server's kind)."""
    return bool(getattr(completer, "reproducible", True))


def stored_settings(trace: Trace) -> dict | None:
    annotation = trace.meta.get("annotation") or {}
    if "settings" not in annotation:
        return None
    settings = {k: v for k, v in annotation["settings"].items() if k != "samples_reproducible"}  # a record
    return {"completer": annotation.get("completer"), **settings}


def open_output(out_path: str | os.PathLike) -> ResumableOutput:
    """The run's output (`prm.io.ResumableOutput`): locked, its torn line repaired on resume, and
    each finished trace checked against this run (in its input or shard, once, same settings)."""
    return ResumableOutput(out_path, "id", "prm annotate", recorded=stored_settings,
                           settings_field="meta.annotation")


# -- one trace ----------------------------------------------------------------------------------

def annotate_trace(trace: Trace, completer: "Completer", config: AnnotateConfig, grader: "Grader",
                   completer_spec: str | None = None) -> Trace:
    """A labelled copy of one trace, by the method of `config`."""
    if config.method == "mc":
        from annotate.monte_carlo import label_trace
    elif config.method == "judge":
        from annotate.judge import label_trace
    else:
        from annotate.binary_search import label_trace
    try:
        if config.method == "judge":  # the judgement records the judge by the name the user gave
            labelled = label_trace(trace, completer, config, grader, judge_name=completer_spec)
        else:
            labelled = label_trace(trace, completer, config, grader)
    except Exception as err:  # say which trace; the traces finished before it are kept
        raise RuntimeError(f"annotating trace {trace.id!r} failed: {type(err).__name__}: {err}") from err
    labelled.meta["annotation"]["completer"] = completer_spec if completer_spec is not None else completer.name
    if not samples_reproducible(completer):
        labelled.meta["annotation"]["settings"]["samples_reproducible"] = False
    return labelled


# -- the run ------------------------------------------------------------------------------------

@dataclass
class RunSummary:
    """What a run did (this process) and what the output holds now."""

    annotated: int = 0
    already_done: int = 0
    steps: int = 0
    rollouts: int = 0
    tokens: int = 0
    seconds: float = 0.0
    labels: dict[str, int] = field(default_factory=lambda: {"positive": 0, "negative": 0, "unknown": 0})
    output_traces: int = 0
    grading_timeouts: int = 0
    skipped_steps: int = 0  # steps whose prefix the completer refused (e.g. longer than its context)

    def count_labels(self, trace: Trace) -> None:
        self.output_traces += 1
        for label in trace.hard_labels:
            self.labels["unknown" if label is None else "positive" if label == 1 else "negative"] += 1

    def add(self, trace: Trace) -> None:
        annotation = trace.meta["annotation"]
        self.annotated += 1
        self.steps += len(trace.steps)
        self.rollouts += annotation["rollouts"]
        self.tokens += annotation["tokens"]
        self.skipped_steps += len(annotation.get("skipped", []))
        self.count_labels(trace)

    def text(self) -> str:
        labels = self.labels
        total = sum(labels.values()) or 1
        balance = ", ".join(f"{labels[k]} {k} ({labels[k] / total:.0%})" for k in ("positive", "negative", "unknown"))
        rate = self.annotated / self.seconds if self.seconds else 0.0
        lines = [f"annotated {self.annotated} trace(s) ({self.already_done} already done), {self.steps} steps, "
                 f"{self.rollouts} rollouts, {self.tokens} tokens in {self.seconds:.1f} s ({rate:.2f} traces/s)",
                 f"output holds {self.output_traces} trace(s); step labels: {balance}"]
        if self.skipped_steps:
            lines.append(f"{self.skipped_steps} step(s) left unknown: the completer refused their prefix "
                         "(see meta.annotation.skipped; e.g. longer than the model's context)")
        if self.grading_timeouts:
            lines.append(f"{self.grading_timeouts} answer comparison(s) timed out (counted as wrong)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def run(traces: list[Trace], out_path: str | os.PathLike, completer: "Completer", config: AnnotateConfig, *,
        completer_spec: str, shard: tuple[int, int] | None = None, workers: int | None = None,
        progress: bool = True, on_trace: Callable[[Trace], None] | None = None,
        labeller: Callable[[list[Trace]], Iterable[Trace]] | None = None,
        status: Callable[[], str] | None = None) -> RunSummary:
    """Annotate `traces` (this shard's part) into `out_path`, resuming what is already there.

    The output is a `prm.io.ResumableOutput`, locked for the whole run: a second run writing
    the same file is refused with a `RecordError` instead of appending every trace again.

    `labeller`, when given, labels the traces elsewhere instead of `completer` (e.g. Ray
    actors, `prm.app.ray_jobs`): it takes the traces still to do and yields each labelled
    trace once, in any order; `status()` is shown on the progress bar (e.g. busy actors)."""
    out_path = Path(out_path)
    if out_path.suffix not in (".jsonl", ".json"):
        raise RecordError("the output is streamed as JSONL: give a .jsonl file "
                          "(convert it afterwards with `prm convert`)", path=str(out_path))
    todo = select_shard(traces, shard)
    settings = run_settings(config, completer_spec)
    with open_output(out_path) as output:  # a second run on the same output is refused
        return _run_locked(todo, output, completer, config, settings, completer_spec, workers, progress,
                           on_trace, labeller, status)


def _run_locked(todo, output: ResumableOutput, completer, config, settings, completer_spec, workers, progress,
                on_trace, labeller=None, status=None) -> RunSummary:
    from prm.progress import progress_bar

    from annotate.grading import Grader

    done = output.resume([t.id for t in todo], settings)
    done_ids = {t.id for t in done}
    summary = RunSummary(already_done=len(done))
    for trace in done:
        summary.count_labels(trace)
    remaining = [t for t in todo if t.id not in done_ids]

    grader = Grader(timeout_seconds=config.grading_timeout)
    start = time.perf_counter()
    bar = progress_bar(len(todo), initial=len(done), unit="trace", desc=f"annotate ({config.label_source})",
                       enabled=progress)
    try:
        labelled_traces = labeller(remaining) if labeller is not None else \
            _labelled(remaining, completer, config, grader, completer_spec, workers)
        for labelled in labelled_traces:
            output.append(labelled)
            summary.add(labelled)
            elapsed = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix_str(f"{summary.rollouts / elapsed:.1f} rollouts/s, "
                                f"{summary.tokens / elapsed:.0f} tok/s"
                                + (f", {status()}" if status is not None else ""), refresh=False)
            if on_trace is not None:
                on_trace(labelled)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
        summary.grading_timeouts = grader.timeouts
        grader.close()
    return summary


def label_traces(traces: list[Trace], completer: "Completer", config: AnnotateConfig, grader: "Grader",
                 completer_spec: str | None = None, workers: int | None = None) -> Iterable[Trace]:
    """Labelled traces, `workers` at a time (default: as many as the completer asks for).

    A completer that samples best in big batches (`Completer.merge_calls` > 1: the
    transformers completer, 64 by default) labels that many traces at once, each in a thread,
    with their completer calls merged into one (`completers.batching.CallBatcher`), and the
    labelled traces come in input order: one trace at a time gave it a tenth of the rows it
    decodes at the same cost per decoding step (bench/annotate.py). The labels are the same.
    Other completers label `workers` traces (default 1) in threads (e.g. to keep an HTTP
    server busy), yielded in the order they finish."""
    merge = getattr(completer, "merge_calls", 1) if config.method != "judge" else 1
    at_once = workers or merge
    if at_once <= 1:
        for trace in traces:
            yield annotate_trace(trace, completer, config, grader, completer_spec)
    elif merge > 1:
        from completers.batching import CallBatcher

        batcher = CallBatcher(completer)

        def label(trace):
            with batcher.session():
                return annotate_trace(trace, batcher, config, grader, completer_spec)

        yield from _in_threads(traces, label, at_once, ordered=True)
    else:
        yield from _in_threads(traces, lambda trace: annotate_trace(trace, completer, config, grader,
                                                                      completer_spec), at_once, ordered=False)


_labelled = label_traces


def _in_threads(traces, label, workers: int, ordered: bool):
    """label(trace) for every trace in `workers` threads, yielded in input order or in the
    order they finish."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="annotate") as pool:
        pending: deque = deque()
        queue = iter(traces)
        try:
            while True:
                while len(pending) < 2 * workers and (trace := next(queue, None)) is not None:
                    pending.append(pool.submit(label, trace))
                if not pending:
                    return
                if ordered:
                    yield pending.popleft().result()
                    continue
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                pending = deque(f for f in pending if f not in finished)
                failed = [f for f in finished if f.exception() is not None]
                for future in finished:  # keep every finished trace before reporting a failure
                    if future.exception() is None:
                        yield future.result()
                if failed:
                    raise failed[0].exception()
        finally:
            for future in pending:
                future.cancel()
