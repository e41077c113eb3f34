"""Answer grading: find the final answer in a completion and decide whether it equals the reference.

Extraction (`extract_answer`) reads, in this order of precedence, the first `#### x` line (GSM8K
and the tiny model), the last `\\boxed{x}` or `\\fbox{x}` (MATH; nested braces), the last
"The (final) answer is x", and a last line `A: x` (the GSM8K example model solutions). A
completion with none of these has no answer and never counts as correct.

Equivalence (`Grader.is_equivalent`) is decided by math-verify (numbers with commas, units or
percent, fractions, LaTeX expressions, sets and intervals), not by hand-written rules. The only
text handled here is what math-verify cannot know about: GSM8K answers written as a number
followed by plain words ("18 dollars", "5 apples"), which are reduced to the number, because
math-verify would read the words as a product of symbols.

Time limits. math-verify bounds each `parse` and `verify` with `signal.alarm`, which only works
in the main thread. In the main thread we use those limits (rounded up to whole seconds). In
any other thread (e.g. the runner's `--workers`) math-verify is called with its limits off
(`parsing_timeout=None`, `timeout_seconds=None`) inside a helper process that we kill and
restart when one comparison takes longer than `timeout_seconds`; a timed-out comparison counts
as "not equivalent" and is counted in `Grader.timeouts`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import select
import subprocess
import sys
import threading
from dataclasses import dataclass, field

# Longer "answers" are rambling text, not an answer; they are not parsed (and never correct).
MAX_ANSWER_CHARS = 400

_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\b")
_ANSWER_IS = re.compile(r"the\s+(?:final\s+)?answer\s+is\s*:?[ \t]*([^\n]*)", re.IGNORECASE)
_A_LINE = re.compile(r"^A:[ \t]*([^\n]*)$", re.MULTILINE)
# "18 dollars", "$1,200 per month", "50% of them": a number followed by plain words only.
_NUMBER_THEN_WORDS = re.compile(
    r"^\s*(?P<number>[-+]?\s*[$€£]?\s*(?:\d[\d,]*(?:\.\d+)?|\.\d+)\s*%?)\s+[A-Za-z][A-Za-z\s'./-]*$")


def extract_answer(text: str) -> str | None:
    """The final answer written in a completion, or None if it states none."""
    if not text:
        return None
    match = _HASHES.search(text)
    if match:
        return _clean(match.group(1))
    boxed = last_boxed(text)
    if boxed is not None:
        return _clean(boxed)
    matches = _ANSWER_IS.findall(text)
    if matches:
        return _clean(matches[-1])
    matches = _A_LINE.findall(text)
    if matches:
        return _clean(matches[-1])
    return None


def last_boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` (or `\\fbox`), braces balanced; `\\boxed 5` too."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        rest = text[start:].lstrip()
        if rest.startswith("{"):
            depth = 0
            for i, char in enumerate(rest):
                if char == "{":
                    depth += 1
                elif char == "}":
                    depth -= 1
                    if depth == 0:
                        return rest[1:i]
            continue  # unbalanced: try an earlier one
        token = re.match(r"[^\s$]+", rest)
        if token:
            return token.group(0)
    return None


def _clean(answer: str) -> str | None:
    answer = answer.strip().rstrip(" .")
    if answer.startswith("$") and answer.endswith("$") and len(answer) > 1 and answer.count("$") == 2:
        answer = answer[1:-1].strip().rstrip(" .")
    if "\\boxed" in answer or "\\fbox" in answer:
        answer = last_boxed(answer) or answer
    return answer or None


def _reduce_plain_units(answer: str) -> str:
    match = _NUMBER_THEN_WORDS.match(answer)
    return match.group("number").replace(" ", "") if match else answer


def _parse_candidates(answer: str, timeout: int | None) -> list:
    """math-verify's readings of one answer: as LaTeX first, as a plain expression if that fails."""
    from math_verify import parse

    answer = _reduce_plain_units(answer)
    parsed = parse(f"${answer}$", parsing_timeout=timeout)
    if not parsed:
        parsed = parse(answer, parsing_timeout=timeout)
    return parsed


def equivalent_unguarded(answer: str, reference: str, timeout: int | None) -> bool:
    """math-verify's decision with its own per-call limits (`timeout`=None: no limit at all)."""
    from math_verify import verify

    gold = _parse_candidates(reference, timeout)
    target = _parse_candidates(answer, timeout)
    if not gold or not target:
        return False
    return bool(verify(gold, target, timeout_seconds=timeout))


class _TimeoutCounter(logging.Handler):
    """Counts math-verify's "Timeout during ..." warnings (it reports its timeouts only by logging)."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record):
        if str(record.msg).startswith("Timeout during"):
            self.count += 1


_TIMEOUT_COUNTER = _TimeoutCounter()
for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addHandler(_TIMEOUT_COUNTER)


def serve(stdin=None, stdout=None) -> None:
    """The helper process: read `[answer, reference]` JSON lines, answer `true`/`false` lines.

    Runs math-verify with its signal-based limits off; the parent enforces the time limit.
    """
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401 - import before saying ready, outside any time limit

    stdout.write("ready\n")
    stdout.flush()
    for line in stdin:
        try:
            answer, reference = json.loads(line)
            result = equivalent_unguarded(answer, reference, None)
        except Exception:  # noqa: BLE001 - any failure of the library means "not shown equal"
            result = False
        stdout.write("true\n" if result else "false\n")
        stdout.flush()


class _HelperProcess:
    """A `python -m annotate.grading` process grading one comparison at a time, killed on overrun.

    A plain subprocess (not multiprocessing) so it works whatever the parent's `__main__` is.
    """

    def __init__(self):
        self._proc: subprocess.Popen | None = None

    def _start(self):
        self._proc = subprocess.Popen([sys.executable, "-m", "annotate.grading"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)
        if self._proc.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("the grading helper process did not start")

    def compare(self, answer: str, reference: str, timeout: float) -> bool | None:
        """True/False, or None when the comparison overran `timeout` seconds (process restarted)."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        self._proc.stdin.write(json.dumps([answer, reference]) + "\n")
        self._proc.stdin.flush()
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        if ready:
            return self._proc.stdout.readline().strip() == "true"
        self.close()
        return None

    def close(self):
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc.stdin.close()
            self._proc.stdout.close()
            self._proc = None


@dataclass
class Grader:
    """Decides whether an answer equals a reference, with a time limit per comparison.

    Results are cached by (answer, reference): rollouts often repeat the same answers.
    Safe to share between threads.
    """

    timeout_seconds: float = 5.0
    timeouts: int = 0
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _helper: _HelperProcess | None = field(default=None, repr=False)

    def is_equivalent(self, answer: str | None, reference: str | None) -> bool:
        if answer is None or reference is None:
            return False
        answer, reference = answer.strip(), reference.strip()
        if not answer or not reference or len(answer) > MAX_ANSWER_CHARS:
            return False
        if answer == reference:
            return True
        key = (answer, reference)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        if threading.current_thread() is threading.main_thread():
            result = self._compare_in_main_thread(answer, reference)
        else:
            result = self._compare_in_helper(answer, reference)
        with self._lock:
            self._cache[key] = result
        return result

    def grade(self, completion_text: str, reference: str | None) -> tuple[str | None, bool]:
        """(extracted answer, whether it equals the reference) for one completion."""
        answer = extract_answer(completion_text)
        return answer, self.is_equivalent(answer, reference)

    def _compare_in_main_thread(self, answer: str, reference: str) -> bool:
        limit = max(1, math.ceil(self.timeout_seconds))
        before = _TIMEOUT_COUNTER.count
        try:
            return equivalent_unguarded(answer, reference, limit)
        except Exception:  # noqa: BLE001 - a library failure means "not shown equal"
            return False
        finally:
            self.timeouts += _TIMEOUT_COUNTER.count - before

    def _compare_in_helper(self, answer: str, reference: str) -> bool:
        with self._lock:  # one comparison at a time through the helper
            if self._helper is None:
                self._helper = _HelperProcess()
            result = self._helper.compare(answer, reference, self.timeout_seconds)
            if result is None:
                self.timeouts += 1
                return False
            return result

    def close(self) -> None:
        """Stop the helper process, if one was started."""
        with self._lock:
            if self._helper is not None:
                self._helper.close()
                self._helper = None


if __name__ == "__main__":
    serve()
