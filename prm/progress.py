"""Progress for long commands: a tqdm bar on a terminal, a log line every N seconds elsewhere.

A bar redrawn with carriage returns is unreadable in a log file, a CI job or `nohup`
output, and tqdm's own default (`disable=None`) shows nothing at all there. `progress_bar`
returns a tqdm bar either way; when its stream is not a terminal the bar prints one plain
line every `log_every` seconds (and a last one when closed), e.g.

    prm check:  40%|████      | 400/1000 [01:10<01:45, 5.71trace/s, 38.2 steps/s]

Use it like tqdm: `update(n)`, `set_postfix_str(text, refresh=False)`, `close()` (or `with`).
The interval of the log lines is `log_every` or, when that is None, $PRM_PROGRESS_SECONDS
(default 30).
"""

from __future__ import annotations

import os
import sys

from tqdm import tqdm

DEFAULT_LOG_SECONDS = 30.0


class LogLines(tqdm):
    """A tqdm bar that writes a full line (no carriage return) at most every `mininterval` s."""

    def display(self, msg=None, pos=None):
        if self.disable or msg == "":
            return False
        self.fp.write((msg if msg is not None else self.__str__()) + "\n")
        self.fp.flush()
        return True

    def close(self):
        if not getattr(self, "disable", True):
            self._ema_dt = lambda: None  # the last line shows the overall rate
            self.display()
            self.leave = False  # tqdm would redraw the bar; the line above is the last one
        super().close()


def log_seconds(log_every: float | None = None) -> float:
    """The interval of log lines: `log_every`, else $PRM_PROGRESS_SECONDS, else 30 s."""
    if log_every is not None:
        return float(log_every)
    try:
        return float(os.environ.get("PRM_PROGRESS_SECONDS", DEFAULT_LOG_SECONDS))
    except ValueError:
        return DEFAULT_LOG_SECONDS


def progress_bar(total: int | None = None, *, desc: str, unit: str = "it", initial: int = 0,
                 enabled: bool = True, log_every: float | None = None, file=None) -> tqdm:
    """A progress bar on `file` (default stderr): tqdm's bar on a terminal, log lines otherwise.

    `enabled=False` gives a bar that shows nothing (so callers need no `if`).
    """
    file = sys.stderr if file is None else file
    common = {"total": total, "desc": desc, "unit": unit, "initial": initial, "file": file,
              "disable": not enabled, "smoothing": 0.1}
    if _is_terminal(file):
        return tqdm(dynamic_ncols=True, **common)
    # miniters=1: look at the clock on every update, so that a line is due every interval
    return LogLines(mininterval=log_seconds(log_every), maxinterval=float("inf"), miniters=1,
                    ncols=100, ascii=True, **common)


def _is_terminal(file) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False
