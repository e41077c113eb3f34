"""The Lean 4 checker: steps stated formally (a ```lean block) are checked by Lean itself.

A step carries a Lean statement and proof in a fenced block:

    ```lean
    theorem step3 (x : ℝ) (h : 2 * x + 1 = 7) : x = 3 := by linarith
    ```

and Lean decides: an error message means `refuted` (the statement does not hold or the
proof is wrong), a `sorry` (or "declaration uses 'sorry'") means `unknown` (nothing was
proved), no error means `verified`. A step without a Lean block is `unknown`.

Backends, in the order `backend="auto"` tries them:

1. lean-dojo (when `lean_dojo` imports, `lake` is on PATH and `PRM_LEAN_DOJO_REPO` names
   a traced repository): `Dojo((repo, file, line))` in command mode, `run_cmd`.
2. The Lean REPL (leanprover-community/repl), `lake exe repl` run in the Lean project
   `PRM_LEAN_PROJECT` (or `project=`): one long-lived process, JSON commands
   `{"cmd": ..., "env": n}` separated by blank lines, answered by
   `{"messages": [...], "sorries": [...], "env": n}`. A `header` (e.g. `import Mathlib`)
   is run once and every step is checked in that environment.
3. `lean --json FILE` on a temporary file (`lake env lean` inside a project): one JSON
   message a line.

A block is run only if it passes `lean_filter.vet` (an allow-list of what a proof needs: no
`#eval`, `IO`, `run_cmd`, `macro`, custom imports, ...); a refused block is `unknown` and
never reaches Lean. Every Lean process runs under `lean_filter.resource_limits` (memory,
CPU time for one-shot runs, file size) and a wall-clock timeout per step.

Where none is installed every verdict is `unavailable`. The request/response handling is
plain functions (`build_request`, `read_response`, `verdict_from_response`,
`parse_lean_json`) so that it is tested against recorded REPL transcripts without Lean.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import time
from typing import IO, Any

from annotate.checkers.base import Checker
from annotate.checkers.lean_filter import Refused, resource_limits, vet
from prm.records import Verdict

LEAN_BLOCK = re.compile(r"```\s*lean4?\s*\n(.*?)```", re.DOTALL | re.IGNORECASE)
SORRY_WARNING = re.compile(r"declaration uses '?`?sorry", re.IGNORECASE)


def lean_code(step: str) -> str | None:
    """The Lean code of a step: its ```lean blocks joined, or None."""
    blocks = [b.strip() for b in LEAN_BLOCK.findall(step) if b.strip()]
    return "\n\n".join(blocks) if blocks else None


def split_imports(code: str) -> tuple[list[str], str]:
    """(`import` lines, the rest): imports are only allowed in a fresh REPL environment."""
    imports, body = [], []
    for line in code.splitlines():
        (imports if line.strip().startswith("import ") else body).append(line)
    return imports, "\n".join(body).strip()


# -- the REPL protocol -----------------------------------------------------------------------

def build_request(code: str, env: int | None = None) -> dict[str, Any]:
    """The REPL command for `code`, in environment `env` (None: a fresh environment)."""
    request: dict[str, Any] = {"cmd": code}
    if env is not None:
        request["env"] = env
    return request


def encode_request(request: dict[str, Any]) -> bytes:
    """One command on the wire: a JSON object and the blank line that ends it."""
    return (json.dumps(request, ensure_ascii=False) + "\n\n").encode("utf-8")


def read_response(lines) -> dict[str, Any]:
    """The next response from an iterable of text lines (the REPL pretty-prints JSON over
    several lines and ends each response with a blank line). Raises EOFError at the end."""
    buffer: list[str] = []
    for line in lines:
        if not line.strip():
            if buffer:
                try:
                    return json.loads("".join(buffer))
                except json.JSONDecodeError:
                    continue  # a blank line inside a message string: keep reading
            continue
        if not buffer and not line.lstrip().startswith("{"):
            continue  # a log line printed by the REPL, not part of a response
        buffer.append(line)
        try:  # compact one-line responses need no blank line to be complete
            return json.loads("".join(buffer))
        except json.JSONDecodeError:
            pass
    if buffer:
        return json.loads("".join(buffer))
    raise EOFError("the Lean REPL closed its output")


def parse_lean_json(output: str) -> dict[str, Any]:
    """`lean --json` output (one message object a line) as a REPL-shaped response."""
    messages = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                messages.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return {"messages": messages}


def verdict_from_response(response: dict[str, Any]) -> tuple[str, str]:
    """(status, evidence) for a REPL or `lean --json` response.

    errors -> refuted; sorries (or the "declaration uses 'sorry'" warning) -> unknown;
    a REPL-level error (`{"message": ...}`, e.g. unknown environment) -> unknown;
    otherwise verified.
    """
    if "message" in response and "messages" not in response and "env" not in response:
        return "unknown", f"Lean REPL error: {response['message']}"
    messages = response.get("messages") or []
    errors = [m for m in messages if m.get("severity") == "error"]
    if errors:
        first = errors[0]
        position = first.get("pos") or {}
        where = f"line {position.get('line')}, column {position.get('column')}: " if position else ""
        more = f" (+{len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        return "refuted", f"Lean error at {where}{first.get('data', '').strip()}{more}"
    sorries = response.get("sorries") or []
    if sorries or any(SORRY_WARNING.search(m.get("data", "")) for m in messages):
        goals = "; ".join(s.get("goal", "").strip() for s in sorries if s.get("goal"))
        return "unknown", "proof incomplete (sorry)" + (f": open goal {goals}" if goals else "")
    notes = [m.get("data", "").strip() for m in messages if m.get("data")]
    return "verified", "Lean accepted it" + (f" ({'; '.join(notes)[:200]})" if notes else "")


# -- backends --------------------------------------------------------------------------------

class LeanUnavailable(RuntimeError):
    """No Lean backend is installed or configured."""


class ReplBackend:
    """A long-lived `lake exe repl` (or any command speaking the REPL protocol)."""

    name = "lean-repl"

    def __init__(self, command: list[str], cwd: str | None = None, header: str = "",
                 timeout: float = 60.0, memory_mb: int | None = 8192):
        self.command, self.cwd, self.header, self.timeout = command, cwd, header, timeout
        self.memory_mb = memory_mb
        self.process: subprocess.Popen | None = None
        self.header_env: int | None = None

    def start(self) -> None:
        # long-lived: its memory is capped; its CPU time is bounded per step by `timeout`
        self.process = subprocess.Popen(self.command, cwd=self.cwd, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        preexec_fn=resource_limits(self.memory_mb, None))
        self.header_env = None
        if self.header.strip():
            response = self.send(build_request(self.header.strip()))
            status, evidence = verdict_from_response(response)
            if status == "refuted" or "env" not in response:
                raise LeanUnavailable(f"the Lean header failed: {evidence}")
            self.header_env = response["env"]

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one command and wait (at most `timeout` seconds) for its response."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write(encode_request(request))
        self.process.stdin.flush()
        return read_response(_lines_until(self.process.stdout, time.monotonic() + self.timeout,
                                          self.stop))

    def run(self, code: str) -> dict[str, Any]:
        if self.process is None or self.process.poll() is not None:
            self.start()
        imports, body = split_imports(code)
        if imports:  # its own imports: a fresh environment
            return self.send(build_request(code))
        return self.send(build_request(body, self.header_env))

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _lines_until(stream: IO[bytes], deadline: float, on_timeout):
    """Lines from a pipe, giving up (and calling `on_timeout`) at `deadline`.

    Reads the file descriptor directly: a buffered `readline` could pull the next lines into
    Python's buffer, where `select` no longer sees them.
    """
    fd, pending = stream.fileno(), b""
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    try:
        while True:
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                yield line.decode("utf-8", errors="replace") + "\n"
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                on_timeout()
                raise TimeoutError("the Lean REPL did not answer in time")
            chunk = os.read(fd, 65536)
            if not chunk:
                if pending:
                    yield pending.decode("utf-8", errors="replace")
                return
            pending += chunk
    finally:
        selector.close()


class LeanFileBackend:
    """`lean --json` on a temporary file (inside a Lake project: `lake env lean --json`)."""

    name = "lean --json"

    def __init__(self, cwd: str | None = None, header: str = "", timeout: float = 60.0,
                 memory_mb: int | None = 8192):
        self.cwd, self.header, self.timeout, self.memory_mb = cwd, header, timeout, memory_mb

    def run(self, code: str) -> dict[str, Any]:
        imports, body = split_imports(code)
        text = "\n".join(imports or ([self.header] if self.header.strip() else [])) + "\n\n" + body
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "Step.lean")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            command = (["lake", "env", "lean", "--json", path] if self.cwd
                       else ["lean", "--json", path])
            done = subprocess.run(command, cwd=self.cwd, capture_output=True, text=True,
                                  timeout=self.timeout,
                                  preexec_fn=resource_limits(self.memory_mb,
                                                             int(self.timeout) + 1))
        return parse_lean_json(done.stdout)


class DojoBackend:
    """lean-dojo's command mode: `Dojo((repo, file, line))`, then `run_cmd` per step.

    Needs a repository traced by lean-dojo (`PRM_LEAN_DOJO_REPO` URL,
    `PRM_LEAN_DOJO_COMMIT`, `PRM_LEAN_DOJO_FILE`, optional `PRM_LEAN_DOJO_LINE`).
    """

    name = "lean-dojo"

    def __init__(self, repo: str, commit: str, file: str, line: int = 0):
        self.repo, self.commit, self.file, self.line = repo, commit, file, line
        self._context = None
        self._dojo = self._state = None

    def run(self, code: str) -> dict[str, Any]:
        import lean_dojo

        if self._dojo is None:
            repo = lean_dojo.LeanGitRepo(self.repo, self.commit)
            self._context = lean_dojo.Dojo((repo, self.file, self.line))
            self._dojo, self._state = self._context.__enter__()
        result = self._dojo.run_cmd(self._state, code)
        if isinstance(result, lean_dojo.LeanError):
            return {"messages": [{"severity": "error", "data": result.error}]}
        message = getattr(result, "message", "") or ""
        severity = "warning" if SORRY_WARNING.search(message) else "info"
        return {"messages": [{"severity": severity, "data": message}] if message else []}


# -- the checker -----------------------------------------------------------------------------

class LeanChecker(Checker):
    """Checks the ```lean block of a step with Lean 4 (lean-dojo, the REPL, or `lean --json`)."""

    name = "lean"

    def __init__(self, backend: str = "auto", project: str | None = None,
                 repl_command: list[str] | None = None, header: str | None = None,
                 timeout: float = 60.0, memory_mb: int | None = 8192):
        self.choice = backend
        self.project = project or os.environ.get("PRM_LEAN_PROJECT")
        self.repl_command = repl_command
        self.header = header if header is not None else os.environ.get("PRM_LEAN_HEADER", "")
        self.timeout, self.memory_mb = timeout, memory_mb
        self._backend = None
        self._why_unavailable = ""

    def _resolve(self):
        if self._backend is not None:
            return self._backend
        choice, lake = self.choice, shutil.which("lake")
        if self.repl_command is not None:  # an explicit REPL command (any program speaking it)
            self._backend = ReplBackend(self.repl_command, self.project, self.header, self.timeout,
                                        self.memory_mb)
        elif choice in ("auto", "dojo") and lake and _dojo_installed() \
                and os.environ.get("PRM_LEAN_DOJO_REPO"):
            self._backend = DojoBackend(os.environ["PRM_LEAN_DOJO_REPO"],
                                        os.environ.get("PRM_LEAN_DOJO_COMMIT", "main"),
                                        os.environ.get("PRM_LEAN_DOJO_FILE", "Main.lean"),
                                        int(os.environ.get("PRM_LEAN_DOJO_LINE", "0")))
        elif choice in ("auto", "repl") and lake and self.project:
            self._backend = ReplBackend(["lake", "exe", "repl"], self.project, self.header,
                                        self.timeout, self.memory_mb)
        elif choice in ("auto", "lean") and (shutil.which("lean") or (lake and self.project)):
            self._backend = LeanFileBackend(self.project if lake else None, self.header,
                                            self.timeout, self.memory_mb)
        else:
            self._why_unavailable = (
                "no Lean 4 toolchain: `lake`/`lean` are not on PATH" if not (lake or shutil.which("lean"))
                else "Lean is installed but no project is configured (set PRM_LEAN_PROJECT to a "
                     "Lake project with the REPL)")
        return self._backend

    def available(self) -> bool:
        return self._resolve() is not None

    @property
    def backend_name(self) -> str:
        backend = self._resolve()
        return f"{backend.name}" if backend is not None else "lean (not installed)"

    def check(self, problem: str, previous_steps: list[str], step: str) -> Verdict:
        started = time.perf_counter()
        code = lean_code(step)
        backend = self._resolve()
        if backend is None:
            return Verdict(self.name, "unavailable", claim=code, evidence=self._why_unavailable,
                           backend=None, seconds=time.perf_counter() - started)
        if code is None:
            return Verdict(self.name, "unknown", evidence="no ```lean block in the step",
                           backend=backend.name, seconds=time.perf_counter() - started)
        try:
            runnable = vet(code)
        except Refused as err:
            return Verdict(self.name, "unknown", claim=code, evidence=f"not run: {err}",
                           backend=backend.name, seconds=time.perf_counter() - started)
        try:
            response = backend.run(runnable)
            status, evidence = verdict_from_response(response)
        except (TimeoutError, subprocess.TimeoutExpired):
            status, evidence = "unknown", f"Lean did not answer within {self.timeout:g} s"
        except (EOFError, OSError, json.JSONDecodeError, LeanUnavailable) as err:
            status, evidence = "unknown", f"Lean backend failed: {err}"
        return Verdict(self.name, status, claim=code, evidence=evidence, backend=backend.name,
                       seconds=time.perf_counter() - started)

    def close(self) -> None:
        if isinstance(self._backend, ReplBackend):
            self._backend.stop()


def _dojo_installed() -> bool:
    try:
        import lean_dojo  # noqa: F401
    except ImportError:
        return False
    return True
