"""`prm.progress.progress_bar`: tqdm's bar on a terminal, whole log lines anywhere else."""

import io

from tqdm import tqdm

from prm.progress import LogLines, progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_whole_lines_with_the_rate_and_a_last_line_when_closed():
    log = io.StringIO()
    with progress_bar(4, desc="prm check", unit="trace", log_every=0, file=log) as bar:
        assert isinstance(bar, LogLines)
        for _ in range(4):
            bar.update(1)
            bar.set_postfix_str("12.5 steps/s", refresh=False)
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    assert lines[0].startswith("prm check:   0%") and "0/4" in lines[0]
    assert "4/4" in lines[-1] and "trace/s" in lines[-1] and "12.5 steps/s" in lines[-1]


def test_log_lines_come_at_most_every_interval(monkeypatch):
    monkeypatch.setenv("PRM_PROGRESS_SECONDS", "3600")
    log = io.StringIO()
    with progress_bar(1000, desc="long", file=log) as bar:
        for _ in range(1000):
            bar.update(1)
    assert len(log.getvalue().splitlines()) == 2  # the first and the last


def test_a_terminal_gets_tqdms_bar_and_disabled_shows_nothing():
    screen = Terminal()
    with progress_bar(2, desc="bar", file=screen) as bar:
        assert type(bar) is tqdm
        bar.update(2)
    assert "\r" in screen.getvalue()
    quiet = io.StringIO()
    with progress_bar(2, desc="quiet", file=quiet, enabled=False) as bar:
        bar.update(2)
    assert quiet.getvalue() == ""
