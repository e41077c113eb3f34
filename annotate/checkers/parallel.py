"""Checking many traces in worker processes, every check under a hard time limit.

`CheckerPool(options, limits, workers=N)` starts N processes, each holding its own checkers
(built by name with `get_checker(name, **options[name])`). A worker is handed whole traces
(two at a time, so that it never waits for the parent; one at a time for the last few, so
that none waits behind a long check while another worker is free) and checks the steps of
each in order, every checker on every step (the z3 checker builds its hypotheses
incrementally along a trace), sending the verdicts back when the trace is done (one message
a trace keeps the parent's share of the CPUs small). `check_traces(traces)` yields `(position, trace)` as
each trace is finished, in the order they finish, with the new verdicts in its steps (an
older verdict of the same checker is replaced).

The checkers limit their own time with a CPU-time alarm (SIGPROF), but a limit can be missed (a long
computation inside one C call, or a timeout caught and the loop carrying on). So the parent
keeps the real limit: each worker writes which check it is running, and since when, into a
small shared array; a check still running `grace` seconds after its checker's limit is
ended by killing the worker process. That step gets an `unknown` verdict whose evidence says
"time limit", a new worker is started, and the trace is checked again there without it. A
worker that dies for any other reason is handled the same way ("worker died"); so is one
that does not start work handed to it within the limit.

Why not `concurrent.futures` or `multiprocessing.Pool`: neither can end one running task,
which is the whole point here. Workers are forked from a fork server (cheap restarts, no
threads inherited from the parent; it imports the checkers and warms up their parsing once,
`annotate.checkers.warm`, and every worker inherits that), put in their own process group
so that a Ctrl-C at the terminal reaches only the parent (z3 would otherwise catch it and
carry on), and die with the parent. Stopping the iteration (an exception, Ctrl-C, `close()`)
kills the workers at once.
As with any `multiprocessing` code that does not fork, a script using the pool must guard
its top level with `if __name__ == "__main__":` (the workers import the main module).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from prm.records import Trace, Verdict

GRACE_SECONDS = 0.5  # how long past its limit a check may run before its worker is killed
UNTIMED_SECONDS = 90.0  # the limit of a checker without its own `seconds` (Lean: 60 s a proof + the REPL)


def start_fork_server(names: Iterable[str]) -> None:
    """Start the fork server the workers are forked from, without waiting for it. It imports
    the modules of the checkers `names` and warms up their parsing (`annotate.checkers.warm`),
    so a caller that calls this first and then reads its input has both done by the time the
    first worker is asked for. (`CheckerPool` calls it too; once the server runs, a call does
    nothing, so the first caller's checkers are the ones preloaded.)"""
    from multiprocessing import forkserver

    from annotate.checkers import CHECKERS

    preload = [CHECKERS[name][0] for name in names if name in CHECKERS] + ["annotate.checkers.warm"]
    multiprocessing.get_context("forkserver").set_forkserver_preload(preload)
    forkserver.ensure_running()


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class PoolStats:
    """What happened in a run besides verdicts: checks stopped at the time limit, workers
    that died, checkers that raised (their step is `unknown` with the error as evidence)."""

    timed_out: int = 0
    worker_deaths: int = 0
    checker_errors: int = 0
    restarts: int = 0
    steps: int = 0
    worker_cpu_seconds: float = 0.0  # CPU time the workers used (Linux; 0.0 elsewhere)
    timed_out_where: list[str] = field(default_factory=list)  # "trace id, step i, checker"


@dataclass
class _Job:
    """One trace being checked: where it is in the input and its verdicts so far."""

    position: int
    trace: Trace
    verdicts: list  # one per unit (step-major, checker-minor); None until known

    def todo(self) -> list[int]:
        return [unit for unit, verdict in enumerate(self.verdicts) if verdict is None]


class _Worker:
    """One worker process, its pipe, the jobs handed to it (in order), and a small shared
    array where it writes what it is doing: (trace position, unit, start time), position -1
    while it waits for work."""

    def __init__(self, context, options: dict[str, dict]):
        self.conn, child = context.Pipe()
        self.progress = context.Array("d", [-1.0, -1.0, 0.0], lock=False)
        self.process = context.Process(target=_work, args=(child, options, self.progress),
                                       daemon=True, name="prm-check-worker")
        self.process.start()
        child.close()
        self.ready = False
        self.jobs: deque[_Job] = deque()
        self.since = time.monotonic()  # since when it has had work it has not started

    def current(self) -> tuple[int, int, float] | None:
        """(position, unit, monotonic start) of the check running now; with work handed but
        not started yet, the first check of its first job since it was due; else None."""
        position, unit, started = self.progress[0], self.progress[1], self.progress[2]
        if position >= 0 and self.progress[0] == position:  # (not changing under us)
            return int(position), int(unit), started
        if self.jobs:
            return self.jobs[0].position, self.jobs[0].todo()[0], self.since
        return None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the worker has used so far; 0.0 where /proc is missing."""
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def kill(self) -> None:
        try:
            self.process.kill()
        except (OSError, ValueError):
            pass
        self.process.join(timeout=5)
        self.conn.close()


class CheckerPool:
    """Worker processes that check traces; see the module docstring.

    `options`: checker name -> constructor options (in the order the verdicts are added);
    `limits`: checker name -> seconds one check may take (default: each checker's own
    `seconds`, which the workers report when they have built it, so that this process need
    not build or even import the checkers); `workers`: processes (default: CPUs).
    Each worker holds up to `queue` traces, so that it never waits for the parent between two.
    `keep_workers`: the workers stay up between two `check_traces` calls (for a caller that
    checks many small batches, such as a Ray actor); `close()` stops them.
    """

    def __init__(self, options: dict[str, dict], limits: dict[str, float] | None = None, *,
                 workers: int | None = None, grace: float = GRACE_SECONDS, queue: int = 2,
                 keep_workers: bool = False):
        self.names = list(options)
        self.options = options
        self.limits = {name: float(limits[name]) for name in self.names} if limits is not None else {}
        self.workers = max(1, workers or default_workers())
        self.grace = grace
        self.queue = max(1, queue)
        self.keep_workers = keep_workers
        self.stats = PoolStats()
        self._context = multiprocessing.get_context("forkserver")
        start_fork_server(self.names)
        self._pool: list[_Worker] = []

    # -- the run -----------------------------------------------------------------------------

    def check_traces(self, traces: Iterable[Trace]) -> Iterator[tuple[int, Trace]]:
        """Yield `(position in traces, trace with verdicts)` as each trace is finished."""
        jobs = [_Job(position, trace, [None] * (len(trace.steps) * len(self.names)))
                for position, trace in enumerate(traces)]
        for job in jobs:
            if not job.verdicts:  # no steps: nothing to check
                yield job.position, job.trace
        waiting = deque(job for job in jobs if job.verdicts)
        done = False
        try:
            while len(self._pool) < min(self.workers, len(waiting)):
                self._pool.append(_Worker(self._context, self.options))
            while waiting or any(w.jobs for w in self._pool):
                for worker in self._pool:
                    while worker.ready and waiting and self._takes_more(worker, waiting):
                        self._hand(worker, waiting.popleft())
                finished: list[_Job] = []
                self._receive(finished, waiting)
                self._enforce_limits(finished, waiting)
                for job in sorted(finished, key=lambda j: j.position):
                    yield job.position, self._apply(job)
            done = True
        finally:
            if not (done and self.keep_workers):
                self.close(graceful=done)

    def _takes_more(self, worker: _Worker, waiting: deque) -> bool:
        """Whether `worker` gets another trace now: one when it has none; more, up to `queue`,
        only while more traces wait than there are workers, so that the last few go to
        whichever worker is free first instead of queueing behind a long check."""
        return not worker.jobs or (len(worker.jobs) < self.queue and len(waiting) > len(self._pool))

    def _hand(self, worker: _Worker, job: _Job) -> None:
        if not worker.jobs:
            worker.since = time.monotonic()
        worker.jobs.append(job)
        try:
            worker.conn.send((job.position, job.trace.problem, job.trace.step_texts, job.todo()))
        except OSError:  # the worker is gone: `_receive` finds out and replaces it
            pass

    def _receive(self, finished: list[_Job], waiting: deque) -> None:
        """Wait (until the next deadline, 0.25 s at most) for results and take in all that came."""
        timeout = min(self._next_deadline() - time.monotonic(), 0.25)
        ready = wait([w.conn for w in self._pool], timeout=max(0.0, timeout))
        for worker in [w for w in self._pool if w.conn in ready]:
            while True:
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    self._replace(worker, finished, waiting, "worker died (exit code "
                                  f"{worker.process.exitcode})")
                    break
                self._handle(worker, message, finished)
                if not worker.conn.poll():
                    break

    def _handle(self, worker: _Worker, message, finished: list[_Job]) -> None:
        kind = message[0]
        if kind == "ready":  # ("ready", {name: the checker's own seconds or None})
            worker.ready = True
            for name, seconds in message[1].items():
                self.limits.setdefault(name, float(seconds or UNTIMED_SECONDS))
        elif kind == "failed":
            raise RuntimeError(f"a checker could not be started in a worker: {message[1]}")
        else:  # ("done", position, [(unit, verdict, raised), ...]): the worker's first job
            _, position, results = message
            job = worker.jobs.popleft()
            worker.since = time.monotonic()
            assert job.position == position, "a worker answered out of turn"
            for unit, verdict, raised in results:
                job.verdicts[unit] = verdict
                self.stats.checker_errors += raised
            finished.append(job)

    def _limit_of(self, unit: int) -> float:
        return self.limits[self.names[unit % len(self.names)]]

    def _next_deadline(self) -> float:
        deadlines = [started + self._limit_of(unit) + self.grace
                     for _, unit, started in filter(None, (w.current() for w in self._pool))]
        return min(deadlines, default=time.monotonic() + 1.0)

    def _enforce_limits(self, finished: list[_Job], waiting: deque) -> None:
        now = time.monotonic()
        for worker in list(self._pool):
            current = worker.current()
            if current is not None and now - current[2] > self._limit_of(current[1]) + self.grace:
                limit = self._limit_of(current[1])
                self._replace(worker, finished, waiting,
                              f"time limit of {limit:g} s exceeded: the check was stopped",
                              timed_out=True, current=current)

    def _replace(self, worker: _Worker, finished: list[_Job], waiting: deque, why: str,
                 timed_out: bool = False, current: tuple[int, int, float] | None = None) -> None:
        """Kill `worker`, give the check it was running an `unknown` verdict saying `why`,
        start a new worker and put its jobs first in line (their other checks are redone)."""
        current = current or worker.current()
        self.stats.worker_cpu_seconds += worker.cpu_seconds()
        worker.kill()
        self._pool[self._pool.index(worker)] = _Worker(self._context, self.options)
        self.stats.restarts += 1
        if not worker.ready:
            raise RuntimeError(f"a checker worker could not start ({why})")
        job = next((j for j in worker.jobs if current and j.position == current[0]), None)
        if job is not None:
            position, unit, started = current
            step, name = divmod(unit, len(self.names))
            job.verdicts[unit] = Verdict(self.names[name], "unknown", evidence=why,
                                         seconds=time.monotonic() - started)
            if timed_out:
                self.stats.timed_out += 1
                self.stats.timed_out_where.append(f"{job.trace.id}, step {step}, {self.names[name]}")
            else:
                self.stats.worker_deaths += 1
        for job in reversed(worker.jobs):
            if job.todo():
                waiting.appendleft(job)
            else:
                finished.append(job)

    def _apply(self, job: _Job) -> Trace:
        count = len(self.names)
        for index, step in enumerate(job.trace.steps):
            new = job.verdicts[index * count:(index + 1) * count]
            step.verdicts = [v for v in step.verdicts if v.checker not in self.names] + new
        self.stats.steps += len(job.trace.steps)
        return job.trace

    def worker_pids(self) -> list[int]:
        """The process ids of the running workers (for diagnostics)."""
        return [w.process.pid for w in self._pool]

    def cpu_seconds(self) -> float:
        """CPU time the workers have used so far, the stopped ones' and the running ones'."""
        return self.stats.worker_cpu_seconds + sum(worker.cpu_seconds() for worker in self._pool)

    def close(self, graceful: bool = False) -> None:
        """Stop every worker: ask idle ones to close their checkers (`graceful`), kill the rest."""
        for worker in self._pool:
            self.stats.worker_cpu_seconds += worker.cpu_seconds()
        if graceful:
            for worker in self._pool:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
            for worker in self._pool:
                worker.process.join(timeout=2)
        for worker in self._pool:
            worker.kill()
        self._pool = []

    def __enter__(self) -> CheckerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- in the worker process --------------------------------------------------------------------

def _work(conn, options: dict[str, dict], progress) -> None:
    """A worker: build the checkers, then check the traces handed to it until told to stop.
    Before each check it writes (trace position, unit, start time) to `progress`, where the
    parent watches the time limit; the verdicts of a trace are sent when it is finished."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setpgrp()  # a Ctrl-C at the terminal goes to the parent, which stops us
    _die_with_parent()
    from annotate.checkers import get_checker

    try:
        checkers = [get_checker(name, **opts) for name, opts in options.items()]
    except Exception as err:  # reported to the parent, which stops the run with it
        conn.send(("failed", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", {name: getattr(checker, "seconds", None) for name, checker in zip(options, checkers)}))
    try:
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                return
            if job is None:
                return
            position, problem, steps, todo = job
            results = []
            for unit in todo:
                index, which = divmod(unit, len(checkers))
                progress[0] = -1.0  # the parent ignores the array while it changes
                progress[1], progress[2] = unit, time.monotonic()
                progress[0] = position
                verdict, raised = _check_one(checkers[which], problem, steps, index)
                results.append((unit, verdict, raised))
            progress[0] = -1.0
            conn.send(("done", position, results))
    except (BrokenPipeError, EOFError, OSError):
        return  # the parent is gone
    finally:
        for checker in checkers:
            close = getattr(checker, "close", None)
            if close is not None:
                close()


def _check_one(checker, problem: str, steps: list[str], index: int) -> tuple[Verdict, bool]:
    started = time.perf_counter()
    try:
        return checker.check(problem, steps[:index], steps[index]), False
    except Exception as err:  # a checker must not raise; if one does, the step stays unknown
        return Verdict(checker.name, "unknown", evidence=f"checker failed: {type(err).__name__}: "
                       f"{str(err)[:200]}", seconds=time.perf_counter() - started), True


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent (the fork server, which itself ends
    with the main process) dies, so a SIGKILLed run leaves no worker behind."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
