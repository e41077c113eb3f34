"""Closed pipes: `prm check IN OUT | head -1` or `prm inspect FILE | true`.

When the reader of a pipe goes away, a Unix tool stops writing to it quietly. Here the
messages stop but the work does not: a `prm` command keeps its output files (a closed pipe
is not a reason to lose an hour of checking), so `sys.stdout` and `sys.stderr` are wrapped
for the run: the first write that meets a closed pipe points that stream at /dev/null (no
traceback, no "Exception ignored" at exit), the command finishes, and the exit status is
`CLOSED_PIPE_STATUS`, 141 (128 + SIGPIPE), what a shell reports for `yes | head -1`.
Written by hand because Python's own advice (catch BrokenPipeError once, at the top) would
stop the command at the first progress line.
"""

from __future__ import annotations

import errno
import os
import sys
from contextlib import contextmanager

CLOSED_PIPE_STATUS = 141  # 128 + SIGPIPE (13)


class _GuardedStream:
    """A text stream that turns a closed pipe into silence (see the module docstring)."""

    def __init__(self, stream, state: dict):
        self._stream, self._state = stream, state

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as err:
            self._closed(err)
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except OSError as err:
            self._closed(err)

    def _closed(self, err: OSError) -> None:
        if err.errno != errno.EPIPE:
            raise err
        self._state["closed"] = True
        try:  # later writes, and the flush at exit, go nowhere
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextmanager
def closed_pipes_are_quiet():
    """Guard stdout and stderr for the block; yields a dict whose "closed" says whether a pipe
    closed during it."""
    state = {"closed": False}
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _GuardedStream(sys.stdout, state), _GuardedStream(sys.stderr, state)
    try:
        yield state
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved
