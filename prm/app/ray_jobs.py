"""Annotation, checking and scoring on a Ray cluster: `--ray` on `prm annotate`, `prm check`,
`prm score` and `prm eval --benchmark`.

Ray actors, not Ray Data (docs/architecture.md, "Scaling out on Ray", says why): each actor
builds one worker once (a completer, a checker pool or a scorer: the model is loaded once per
actor) and is handed small units of work (a trace, a few traces, a chunk of traces). Results
come back to the driver, which writes them with the command's own writer: the same resumable,
locked output file a single-process run writes, so resume, locking and exactly-once are one
piece of code for both. A unit's result depends only on the unit (seeds come from the run
seed and the trace id), never on the actor that did it, so a Ray run writes what a single
process writes (the wall-clock `seconds` fields aside).

`RayPool` is the scheduler. It is hand-written because `ray.util.ActorPool` neither hands the
work of a dead actor to another one nor replaces the actor: here every live actor holds up to
`in_flight` units; when an actor dies (its process killed, its node lost), each unit it held
goes to another actor and a replacement actor is started; a unit whose actor died
`max_attempts` times stops the run, naming it. Each unit's result is taken once, from the
one attempt that returned (a dead actor returns nothing), so nothing is written twice.

Ray is imported only here, and only when `--ray` is given.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prm.app.arguments import non_negative_float, positive_float, positive_int
from prm.errors import RecordError

INSTALL_HINT = '--ray needs Ray, which is not installed here: pip install "prm-toolkit[ray]" (or: pip install ray)'


# -- options --------------------------------------------------------------------------------------

@dataclass
class RayOptions:
    """Where the work runs and how it is split into actors.

    address: None starts a Ray on this machine (or joins the cluster in $RAY_ADDRESS); "auto"
        joins the cluster this machine belongs to (`ray start`); "ray://HOST:PORT" is Ray Client.
    actors: actors to start; None: as many as the cluster's CPUs (or GPUs, with
        gpus_per_actor > 0) fit.
    cpus_per_actor: CPUs Ray reserves for each actor; its torch threads and checker processes.
    gpus_per_actor: GPUs Ray reserves for each actor (0: CPU only; 1: one engine per GPU).
    in_flight: units handed to an actor before its first comes back (keeps it busy).
    max_attempts: an actor dying under the same unit this many times stops the run.
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    in_flight: int = 2
    max_attempts: int = 3

    @property
    def threads(self) -> int:
        """Whole CPU threads of one actor (at least 1)."""
        return max(1, int(self.cpus_per_actor))


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--ray` flag group, the same on every command that takes it."""
    group = parser.add_argument_group('Ray cluster (--ray; needs pip install "prm-toolkit[ray]")')
    group.add_argument("--ray", action="store_true",
                       help="run the work on Ray actors, each loading the model once; the driver writes "
                            "the same resumable output a single process writes (see docs/scale.md)")
    group.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="auto (the cluster `ray start` made) or ray://HOST:PORT (Ray Client) "
                            "(default: $RAY_ADDRESS, else a Ray started on this machine)")
    group.add_argument("--actors", type=positive_int, default=None, metavar="N",
                       help="actors to start (default: as many as the cluster's CPUs, or GPUs with "
                            "--gpus-per-actor, fit)")
    group.add_argument("--cpus-per-actor", type=positive_float, default=1.0, metavar="C",
                       help="CPUs per actor: its torch threads and checker processes (default: 1)")
    group.add_argument("--gpus-per-actor", type=non_negative_float, default=0.0, metavar="G",
                       help="GPUs per actor, e.g. 1 for one model (or vLLM engine) per GPU (default: 0)")


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray options of a command line (None without --ray); Ray flags without --ray are refused."""
    if not getattr(args, "ray", False):
        given = [flag for flag, name, default in (("--ray-address", "ray_address", None), ("--actors", "actors", None),
                                                  ("--cpus-per-actor", "cpus_per_actor", 1.0),
                                                  ("--gpus-per-actor", "gpus_per_actor", 0.0))
                 if getattr(args, name, default) != default]
        if given:
            raise RecordError(f"{', '.join(given)} apply to a Ray run: add --ray")
        return None
    return RayOptions(address=args.ray_address, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                      gpus_per_actor=args.gpus_per_actor)


# -- connecting -------------------------------------------------------------------------------------

def import_ray():
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RecordError(INSTALL_HINT) from None
    return ray


def connect(address: str | None) -> bool:
    """Join (or start) Ray unless this process already has; True when this call started it."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    import logging

    address = address or os.environ.get("RAY_ADDRESS") or "local"  # "local": a new Ray, never a stray one
    refuse_unreachable(address)
    settings: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == "local":
        settings["include_dashboard"] = False  # a Ray for this run only: no web server
    try:
        ray.init(address=address, **settings)
    except (ConnectionError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecordError(f"cannot reach the Ray cluster at {address}: {first}", field="--ray-address") from None
    if address == "local":
        reap_with_driver()
    return True


def refuse_unreachable(address: str, timeout: float = 5.0) -> None:
    """A one-line error at once for a HOST:PORT (or ray://HOST:PORT) where nothing listens:
    `ray.init` would retry "Failed to connect to GCS" for minutes. "auto" and "local" are
    left to Ray, which finds (or starts) the cluster itself."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise RecordError(f"cannot reach the Ray cluster at {address}: nothing answers at {host}:{port} "
                          f"({reason})", field="--ray-address") from None


# -- the local Ray dies with its driver ----------------------------------------------------------------

def reap_with_driver() -> None:
    """Start a small watcher that ends the local Ray's processes when this driver ends.

    Ray's own fate-sharing takes the GCS, the raylet and the workers down with a killed driver,
    but its dashboard agent and runtime-env agent then wait on the dead GCS and stay (about
    90 MB each, ignoring SIGTERM). The watcher (its own session, so a Ctrl-C or a kill of the
    driver's process group leaves it) notes the driver's Ray processes and their descendants
    every second; once the driver is gone however it ended, or has shut its Ray down
    (`stop_reaper`: the pipe it holds closes), it SIGKILLs those still running (matched by pid
    and start time, so a reused pid is never hit) and exits."""
    import subprocess

    ray = import_ray()
    read, write = os.pipe()  # neither end is inherited by anything else this process starts
    subprocess.Popen([sys.executable, "-c", "import sys; from prm.app.ray_jobs import watch_driver; "
                      "watch_driver(int(sys.argv[1]), sys.argv[2])", str(os.getpid()),
                      os.path.dirname(ray.__file__)],
                     stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(read)
    _REAPER_PIPES.append(write)


_REAPER_PIPES: list[int] = []  # the driver's ends: open while its Ray runs, closed by the OS at its end


def stop_reaper() -> None:
    """After `ray.shutdown()`: the watchers reap what is left of that Ray and exit."""
    while _REAPER_PIPES:
        os.close(_REAPER_PIPES.pop())


def watch_driver(driver: int, ray_dir: str, interval: float = 1.0) -> None:
    """The watcher's body (see `reap_with_driver`); stdin is the pipe the driver holds open."""
    import select

    import psutil

    def is_ray(process) -> bool:  # ray::Name workers and agents, gcs_server, raylet, Ray's scripts
        command = process.cmdline()
        return bool(command) and (command[0].startswith("ray::") or any(arg.startswith(ray_dir)
                                                                          for arg in command[:3]))

    seen: dict[int, float] = {}
    while True:
        try:
            for child in psutil.Process(driver).children(recursive=True):  # parents before children
                try:
                    if child.pid not in seen and (child.ppid() in seen or is_ray(child)):
                        seen[child.pid] = child.create_time()
                except psutil.Error:  # it ended meanwhile
                    continue
        except psutil.Error:  # the driver is gone
            break
        if select.select([sys.stdin], [], [], interval)[0]:  # end of file: the driver ended or shut Ray down
            break
    for pid, started in seen.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started:
                process.kill()
        except psutil.Error:
            pass


# -- the actor ------------------------------------------------------------------------------------

class _Host:
    """A Ray actor's body: builds its worker once (the model load), then runs units on it.

    A bad-input error (`RecordError`) comes back as a value, so the driver raises it as the
    one line it is (Ray would wrap it in a traceback); any other error is Ray's to report."""

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]]):
        self.error = None
        try:
            self.worker = make_worker()
        except RecordError as err:
            self.error = _recorded(err)
        except Exception as err:  # a model that cannot load: said in one line by the driver
            self.error = ("error", f"{type(err).__name__}: {err}")

    def ready(self) -> tuple:
        """(error or None, host name, process id): called once, after the worker is built."""
        return self.error, socket.gethostname(), os.getpid()

    def run(self, unit):
        if self.error is not None:
            return self.error
        try:
            return ("ok", self.worker(unit))
        except RecordError as err:
            return _recorded(err)


def _recorded(err: RecordError) -> tuple:
    return ("record", err.reason, err.path, err.line, err.field)


def _raise_failure(answer: tuple, where: str) -> None:
    if answer[0] == "record":
        _, reason, path, line, field = answer
        raise RecordError(reason, path=path, line=line, field=field)
    raise RecordError(f"{where}: {answer[1]}")


@dataclass
class _Actor:
    name: str
    handle: Any
    busy: int = 0  # units handed to it and not back yet
    where: str = ""  # host:pid, once it answered


@dataclass
class _Unit:
    index: int
    item: Any
    attempts: int = 0


class RayPool:
    """Actors that each build a worker with `make_worker()` and apply it to units; see the
    module docstring. `concurrency`: units one actor runs at once (threads, e.g. for HTTP
    completers). `describe(unit)` names a unit in an error. One pool runs one `map`."""

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]], options: RayOptions, *,
                 name: str = "prm", concurrency: int = 1, describe: Callable[[Any], str] = repr):
        self.make_worker = make_worker
        self.options = options
        self.name = name
        self.concurrency = max(1, concurrency)
        self.describe = describe
        self.actors: list[_Actor] = []
        self.started = 0
        self.deaths = 0
        self.retried = 0  # units handed to another actor after theirs died
        self.size = 0  # actors asked for
        self._ray = None
        self._class = None
        self._started_ray = False
        self._starting: dict[Any, _Actor] = {}  # ready() answer -> actor building its worker

    # -- the run ---------------------------------------------------------------------------------

    def map(self, units: Sequence, *, ordered: bool = False) -> Iterator:
        """Yield `make_worker()(unit)` for every unit, each exactly once: in the order they
        finish, or with `ordered=True` in the order of `units` (at most `in_flight` units per
        actor are then done ahead of the first one not yet back)."""
        units = list(units)
        if not units:
            return
        try:
            self._start()
            yield from self._map(units, ordered)
        finally:
            self.close()

    def _map(self, units: list, ordered: bool) -> Iterator:
        ray = self._ray
        todo: deque[_Unit] = deque(_Unit(i, item) for i, item in enumerate(units))
        pending: dict[Any, tuple[_Actor, _Unit]] = {}
        finished: dict[int, Any] = {}  # ordered: results waiting for an earlier unit
        next_out = 0
        window = self.options.in_flight * max(len(self.actors), 1)
        while todo or pending:
            for actor in sorted((a for a in self.actors if a.where), key=lambda a: a.busy):  # ready ones
                while todo and actor.busy < self.options.in_flight * self.concurrency:
                    if ordered and todo[0].index >= next_out + window:
                        break  # the finished-but-unwritten results are bounded
                    unit = todo.popleft()
                    unit.attempts += 1
                    pending[actor.handle.run.remote(unit.item)] = (actor, unit)
                    actor.busy += 1
            if not pending and not self._starting:
                raise RuntimeError(f"{self.name}: no live Ray actor is left to take the work")
            ready, _ = ray.wait(list(pending) + list(self._starting), num_returns=1)
            for ref in ready:
                if ref in self._starting:
                    self._on_ready(ref)
                    continue
                actor, unit = pending.pop(ref)
                actor.busy -= 1
                try:
                    answer = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as err:
                    self._lost(actor, unit, todo, err)
                    continue
                if answer[0] != "ok":
                    _raise_failure(answer, f"{self.name}: {self.describe(unit.item)}")
                if not ordered:
                    yield answer[1]
                    continue
                finished[unit.index] = answer[1]
                while next_out in finished:
                    yield finished.pop(next_out)
                    next_out += 1

    def _lost(self, actor: _Actor, unit: _Unit, todo: deque, err: Exception) -> None:
        """`actor` died holding `unit`: put the unit first in line for another actor (a live
        one, or the replacement once it is ready), and replace the actor (once per death)."""
        if unit.attempts >= self.options.max_attempts:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RuntimeError(f"{self.name}: the actor died under {self.describe(unit.item)} "
                               f"{unit.attempts} times (last: {first}); the work finished before is kept")
        todo.appendleft(unit)
        self.retried += 1
        self._replace(actor)

    def _replace(self, actor: _Actor) -> None:
        if actor not in self.actors:
            return  # replaced already (it held several units)
        self.actors.remove(actor)
        self.deaths += 1
        if self.deaths > self.options.max_attempts * max(self.size, 1):
            raise RuntimeError(f"{self.name}: {self.deaths} actors died; see the Ray logs (ray logs cluster) "
                               "for why; the work finished before is kept")
        self._ray.kill(actor.handle, no_restart=True)
        self.actors.append(self._new_actor())
        print(f"{self.name}: actor {actor.name} ({actor.where or 'starting'}) died; its work goes to "
              f"another actor, {self.actors[-1].name} replaces it", file=sys.stderr)

    # -- actors ----------------------------------------------------------------------------------

    def _start(self) -> None:
        """Join or start Ray and start the actors; each takes work once its worker is built."""
        self._ray = import_ray()
        self._started_ray = connect(self.options.address)
        self.size = self.options.actors or self._fitting_actors()
        self._warn_if_too_big(self.size)
        self._class = self._ray.remote(_Host).options(
            num_cpus=self.options.cpus_per_actor, num_gpus=self.options.gpus_per_actor,
            max_restarts=0, max_concurrency=self.concurrency)
        self.actors = [self._new_actor() for _ in range(self.size)]

    def _new_actor(self) -> _Actor:
        self.started += 1
        actor = _Actor(f"a{self.started}", self._class.remote(self.make_worker))
        self._starting[actor.handle.ready.remote()] = actor
        return actor

    def _on_ready(self, ref) -> None:
        """An actor finished building its worker (or failed to, or died doing it)."""
        actor = self._starting.pop(ref)
        try:
            error, host, pid = self._ray.get(ref)
        except (self._ray.exceptions.RayActorError, self._ray.exceptions.WorkerCrashedError):
            self._replace(actor)
            return
        if error is not None:
            _raise_failure(error, f"{self.name}: an actor could not start")
        actor.where = f"{host}:{pid}"

    def _fitting_actors(self) -> int:
        resources = self._ray.cluster_resources()
        if self.options.gpus_per_actor > 0:
            return max(1, int(resources.get("GPU", 0) // self.options.gpus_per_actor))
        return max(1, int(resources.get("CPU", 1) // self.options.cpus_per_actor))

    def _warn_if_too_big(self, count: int) -> None:
        resources = self._ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        if count * self.options.cpus_per_actor > cpus or count * self.options.gpus_per_actor > gpus:
            print(f"{self.name}: {count} actor(s) of {self.options.cpus_per_actor:g} CPU and "
                  f"{self.options.gpus_per_actor:g} GPU do not fit the cluster now ({cpus:g} CPUs, {gpus:g} GPUs); "
                  "the rest start when the cluster grows", file=sys.stderr)

    def pids(self) -> dict[str, int]:
        """Actor name -> process id (on its node), for the actors started and ready."""
        return {a.name: int(a.where.rsplit(":", 1)[1]) for a in self.actors if a.where}

    def status(self) -> str:
        """Which actors are busy, for the driver's progress bar."""
        busy = [a.name for a in self.actors if a.busy]
        names = " ".join(busy) if len(self.actors) <= 8 else f"{len(busy)}"
        text = f"busy {names or 'none'} of {len(self.actors)} actors"
        if self._starting:
            text += f" ({len(self._starting)} loading)"
        if self.deaths:
            text += f", {self.deaths} died (work retried)"
        return text

    def close(self) -> None:
        """Stop the actors, and Ray itself when this pool started it."""
        if self._ray is None:
            return
        for actor in self.actors:
            try:
                self._ray.kill(actor.handle, no_restart=True)
            except Exception:  # already gone
                pass
        self.actors = []
        self._starting = {}
        if self._started_ray:
            self._ray.shutdown()
            stop_reaper()
            self._started_ray = False


def set_threads(threads: int) -> None:
    """Torch in this actor uses `threads` threads (the same arithmetic as a process with as
    many); nothing when the worker does not use torch (a checker scorer loads none)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


# -- prm annotate -----------------------------------------------------------------------------------

class AnnotateWorker:
    """One actor's completer and grader; labels one trace a call."""

    def __init__(self, completer_spec: str, completer_options: dict, config, threads: int):
        from annotate.grading import Grader
        from completers.loading import load_completer
        from prm.errors import opening_model

        self.spec, self.config = completer_spec, config
        if completer_spec.strip().startswith(("http://", "https://")):
            self.completer = load_completer(completer_spec, **completer_options)
        else:
            with opening_model(completer_spec):
                self.completer = load_completer(completer_spec, **completer_options)
        self.grader = Grader(timeout_seconds=config.grading_timeout)
        set_threads(threads)

    def __call__(self, trace):
        from annotate.runner import annotate_trace

        return annotate_trace(trace, self.completer, self.config, self.grader, self.spec)


def annotate_on_ray(args: argparse.Namespace, traces: list, config, completer_options: dict):
    """`prm annotate --ray`: the runner's own resumable, locked writer, fed by Ray actors."""
    from functools import partial

    from annotate.runner import run as run_annotation

    options = ray_options(args)
    pool = RayPool(partial(AnnotateWorker, args.completer, completer_options, config, options.threads), options,
                   name="prm annotate", concurrency=args.workers, describe=lambda t: f"trace {t.id!r}")
    return run_annotation(traces, args.output, None, config, completer_spec=args.completer, shard=args.shard,
                          progress=not args.no_progress, labeller=pool.map, status=pool.status)


# -- prm check --------------------------------------------------------------------------------------

class CheckWorker:
    """One actor's checker pool (`cpus_per_actor` processes, each check under its time limit);
    checks a few traces a call and returns them with their verdicts and the pool's counts."""

    def __init__(self, options: dict, limits: dict, processes: int):
        from annotate.checkers.parallel import CheckerPool

        self.pool = CheckerPool(options, limits, workers=processes, keep_workers=True)

    def __call__(self, batch: list) -> tuple[list, dict]:
        from dataclasses import asdict

        before, cpu_before = asdict(self.pool.stats), self.pool.cpu_seconds()
        checked = dict(self.pool.check_traces([trace for _, trace in batch]))
        after = asdict(self.pool.stats)
        change = {key: after[key] - before[key] if not isinstance(after[key], list)
                  else after[key][len(before[key]):] for key in after}
        change["worker_cpu_seconds"] = self.pool.cpu_seconds() - cpu_before
        return [(position, checked[i]) for i, (position, _) in enumerate(batch)], change


class RayCheckerPool:
    """What `prm check` needs of a `CheckerPool` (`check_traces`, `stats`, `workers`), with
    the checks done by Ray actors, each holding its own `CheckerPool`."""

    def __init__(self, options: dict, limits: dict, ray: RayOptions):
        from functools import partial

        from annotate.checkers.parallel import PoolStats

        self.stats = PoolStats()
        self.ray = ray
        self.pool = RayPool(partial(CheckWorker, options, limits, ray.threads), ray, name="prm check",
                            describe=lambda batch: "trace(s) " + ", ".join(repr(t.id) for _, t in batch))

    @property
    def workers(self) -> int:
        return max(self.pool.size, 1) * self.ray.threads

    def status(self) -> str:
        return self.pool.status()

    def check_traces(self, traces: Iterable) -> Iterator[tuple[int, Any]]:
        """Yield `(position, trace with verdicts)` as each small batch of traces is finished."""
        traces = list(traces)
        actors = self.ray.actors or 2
        size = max(1, min(32, len(traces) // (actors * 4)))  # several batches per actor, for balance
        batches = [list(enumerate(traces))[i:i + size] for i in range(0, len(traces), size)]
        for checked, change in self.pool.map(batches):
            for key, value in change.items():
                setattr(self.stats, key, getattr(self.stats, key) + value)
            yield from checked


def checker_pool_on_ray(args: argparse.Namespace, options: dict, limits: dict) -> RayCheckerPool:
    return RayCheckerPool(options, limits, ray_options(args))


# -- prm score and prm eval --benchmark -----------------------------------------------------------------

class ScoreWorker:
    """One actor's step scorer, loaded once; scores one chunk of traces a call with `score`
    (the command's own chunk function, so a chunk comes out as it does in one process)."""

    def __init__(self, load: Callable[[], Any], score: Callable[[Any, list], list], threads: int):
        self.scorer = load()
        self.score = score
        set_threads(threads)

    def __call__(self, chunk: list) -> list:
        return self.score(self.scorer, chunk)


def score_chunks_on_ray(args: argparse.Namespace, chunks: list[list], load: Callable[[], Any],
                        score: Callable[[Any, list], list], name: str):
    """Scored chunks, in input order, from Ray actors (`load()` builds a scorer in each; `score`
    scores a chunk with it); the pool, so that the caller can show its status."""
    from functools import partial

    options = ray_options(args)
    threads = args.threads or options.threads
    pool = RayPool(partial(ScoreWorker, load, score, threads), options, name=name,
                   describe=lambda chunk: f"the chunk from trace {chunk[0].id!r}")
    return pool, pool.map(chunks, ordered=True)
