"""`prm check` streams, resumes, runs checkers in worker processes and keeps its time limits.

Real runs on GSM8K test solutions: a SIGKILL of a real `prm check` process, then the same
command, gives the output of an uninterrupted run; SIGTERM keeps the finished traces; a
partial output made with other settings is refused; a check past its time limit is stopped
(an adversarial step, and a worker frozen with SIGSTOP) and the run goes on; empty inputs and
folders without data give one line; two workers keep the input order and the verdicts.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from annotate.checkers.parallel import CheckerPool
from prm.app.check import partial_path
from prm.app.cli import main
from prm.formats import read
from prm.io import dumps, read_traces, write_traces
from prm.records import Step, Trace

# An adversarial step (55 KB): 100 towers of powers of pi, then 1,500 calculator notes. Each
# claim is quick to check or refuse, all of them take seconds, far over a limit of 0.05 s.
ADVERSARIAL = " ".join(f"$\\pi^{{\\pi^{{\\pi^{{{k}}}}}}} = {k}$." for k in range(2, 102)) + " " + \
    " ".join(f"{k}+{k} = <<{k}+{k}={2 * k}>>{2 * k} and" for k in range(1, 1500))


def prm(*args, **kwargs):
    """Start `prm ARGS` as a real process (stdout and stderr captured)."""
    return subprocess.Popen([sys.executable, "-m", "prm.app.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def normalised(path):
    """The output's records without wall-clock times (the only thing that differs between runs)."""
    with open(path, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    for record in records:
        for step in record["steps"]:
            for verdict in step["verdicts"]:
                verdict.pop("seconds")
    return records


def lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.fixture(scope="module")
def gsm8k_test(shared_data):
    return shared_data / "gsm8k" / "test.jsonl"


def test_resume_after_sigkill_equals_an_uninterrupted_run(gsm8k_test, tmp_path):
    args = [gsm8k_test, tmp_path / "resumed.jsonl", "--limit", 300, "--checkers", "sympy,z3",
            "--no-progress"]
    partial = partial_path(tmp_path / "resumed.jsonl")
    run = prm("check", *args, "--workers", 1)
    while lines(partial) < 20 and run.poll() is None:
        time.sleep(0.02)
    assert run.poll() is None, "the run ended before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not (tmp_path / "resumed.jsonl").exists()
    finished = lines(partial)
    assert 20 <= finished < 300
    with open(partial, "ab") as handle:  # a write cut short by the kill
        handle.write(b'{"id": "gsm8k-test-99999", "problem": "half a li')

    resumed = prm("check", *args, "--workers", 2)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert f"{finished} trace(s) were done before" in out and "torn last line" in err
    assert not partial.exists()

    whole = [str(a) for a in args]
    whole[1] = str(tmp_path / "whole.jsonl")
    assert main(["check", *whole, "--workers", "1"]) == 0
    assert normalised(tmp_path / "resumed.jsonl") == normalised(tmp_path / "whole.jsonl")


def test_sigterm_stops_cleanly_and_keeps_finished_traces(gsm8k_test, tmp_path):
    out = tmp_path / "checked.jsonl"
    run = prm("check", gsm8k_test, out, "--limit", 300, "--workers", 1, "--no-progress")
    while lines(partial_path(out)) < 5 and run.poll() is None:
        time.sleep(0.02)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143  # 128 + SIGTERM, as every other command that SIGTERM ends
    assert "Traceback" not in err and "terminated; finished work is kept" in err
    kept = read_traces(partial_path(out))
    assert len(kept) >= 5 and all(len(s.verdicts) == 2 for t in kept for s in t.steps)


def test_a_partial_output_with_other_settings_is_refused(gsm8k_test, tmp_path, capsys):
    first = tmp_path / "first.jsonl"
    assert main(["check", str(gsm8k_test), str(first), "--limit", "6", "--checkers", "sympy"]) == 0
    out = tmp_path / "second.jsonl"
    partial = partial_path(out)
    partial.write_text("".join(first.read_text().splitlines(keepends=True)[:3]))  # as an interrupted run left it
    capsys.readouterr()

    assert main(["check", str(gsm8k_test), str(out), "--limit", "6", "--checkers", "sympy,z3"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other settings" in err
    assert "checkers sympy there, sympy,z3 now" in err and str(partial) in err
    assert main(["check", str(gsm8k_test), str(out), "--limit", "6", "--checkers", "sympy",
                 "--timeout", "2"]) == 1
    assert "sympy seconds 5.0 there, 2.0 now" in capsys.readouterr().err
    assert lines(partial) == 3 and not out.exists()  # nothing was mixed in

    assert main(["check", str(gsm8k_test), str(out), "--limit", "6", "--checkers", "sympy"]) == 0
    assert "3 trace(s) were done before" in capsys.readouterr().out
    assert main(["check", str(gsm8k_test), str(out), "--limit", "6", "--checkers", "z3",
                 "--recheck"]) == 0
    assert {v.checker for t in read_traces(out) for s in t.steps for v in s.verdicts} == {"z3"}


def test_a_partial_output_of_another_input_is_refused(gsm8k_test, tmp_path, capsys):
    out = tmp_path / "checked.jsonl"
    traces = read(gsm8k_test, limit=2)
    traces[0].steps[0].text = "a different first step"
    partial_path(out).write_text("".join(dumps(t) + "\n" for t in traces))
    assert main(["check", str(gsm8k_test), str(out), "--limit", "4"]) == 1
    assert "is not in this input" in capsys.readouterr().err


def test_a_second_run_on_the_same_output_is_refused(gsm8k_test, tmp_path, capsys):
    out = tmp_path / "checked.jsonl"
    with open(partial_path(out), "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # a run in progress holds this lock
        assert main(["check", str(gsm8k_test), str(out), "--limit", "2"]) == 1
    assert "another `prm check` is writing this output" in capsys.readouterr().err


def test_a_step_past_the_time_limit_is_unknown_and_the_run_goes_on(tmp_path, capsys):
    steps = [["48/2 = <<48/2=24>>24 clips", ADVERSARIAL, "2 + 2 = 4"], ["3*4 = 12"], ["5 + 5 = 11"]]
    traces = [Trace(id=f"t{i}", problem="How many?", steps=[Step(text=s) for s in texts])
              for i, texts in enumerate(steps)]
    write_traces(tmp_path / "adversarial.jsonl", traces)
    out = tmp_path / "checked.jsonl"
    assert main(["check", str(tmp_path / "adversarial.jsonl"), str(out), "--checkers", "sympy",
                 "--timeout", "0.05", "--workers", "2"]) == 0
    checked = read_traces(out)
    slow = checked[0].steps[1].verdict("sympy")
    assert slow.status == "unknown" and "time limit" in slow.evidence
    statuses = [[s.verdict("sympy").status for s in t.steps] for t in checked]
    assert statuses == [["verified", "unknown", "verified"], ["verified"], ["refuted"]]


def test_a_check_that_never_answers_is_stopped_and_its_worker_replaced(gsm8k_test):
    traces = read(gsm8k_test, limit=3)
    pool = CheckerPool({"sympy": {}, "z3": {}}, {"sympy": 1.0, "z3": 1.0}, workers=1, grace=0.3,
                       queue=1)
    results = pool.check_traces(traces)
    position, first = next(results)
    assert position == 0 and all(s.verdict("z3") for s in first.steps)
    frozen = pool.worker_pids()
    os.kill(frozen[0], signal.SIGSTOP)  # it will not answer the next trace's first check
    rest = dict(results)
    second = rest[1].steps[0].verdict("sympy")
    assert second.status == "unknown" and "time limit of 1 s exceeded" in second.evidence
    assert rest[1].steps[0].verdict("z3").status == "verified"  # the rest goes on elsewhere
    assert all(s.verdict("sympy").status == "verified" for s in rest[2].steps)
    assert pool.stats.timed_out == 1 and pool.stats.restarts == 1
    assert frozen[0] not in pool.worker_pids()


def test_without_limits_the_pool_keeps_each_checkers_own_seconds(gsm8k_test):
    traces = read(gsm8k_test, limit=2)
    pool = CheckerPool({"sympy": {"seconds": 1.5}}, workers=1, grace=0.3, queue=1)  # limits from the worker
    results = pool.check_traces(traces)
    next(results)
    os.kill(pool.worker_pids()[0], signal.SIGSTOP)
    stopped = dict(results)[1].steps[0].verdict("sympy")
    assert stopped.status == "unknown" and "time limit of 1.5 s exceeded" in stopped.evidence
    assert pool.limits == {"sympy": 1.5} and pool.stats.timed_out == 1


def test_the_fork_servers_warm_up_builds_the_latex_parser_without_error():
    from annotate.checkers import claims, safe_math
    from annotate.checkers.warm import warm_up  # (importing it warms up too: the fork server's preload)

    safe_math._latex_parser.cache_clear()
    claims._cached_claims.cache_clear()  # (else the steps' claims come from the import's run)
    warm_up()  # raises if a warm-up step breaks (the fork server itself swallows the error)
    assert safe_math._latex_parser.cache_info().currsize == 1


def test_a_worker_that_dies_costs_one_check(gsm8k_test):
    traces = read(gsm8k_test, limit=2)
    pool = CheckerPool({"sympy": {}}, {"sympy": 5}, workers=1, queue=1)
    results = pool.check_traces(traces)
    next(results)
    os.kill(pool.worker_pids()[0], signal.SIGKILL)
    second = dict(results)[1]
    assert "worker died" in second.steps[0].verdict("sympy").evidence
    assert [s.verdict("sympy").status for s in second.steps[1:]] == ["verified"] * (len(second.steps) - 1)
    assert pool.stats.worker_deaths == 1


def test_two_workers_keep_input_order_and_verdicts(gsm8k_test, tmp_path):
    traces = read(gsm8k_test, limit=120)
    # one long trace first (the steps of 100 solutions), then 20 short ones: with two workers
    # the first trace is finished after the others
    long = Trace(id="long", problem="p", steps=[s for t in traces[:100] for s in t.steps])
    mixed = [long, *traces[100:]]
    write_traces(tmp_path / "in.jsonl", mixed)
    for workers in (1, 2):
        assert main(["check", str(tmp_path / "in.jsonl"), str(tmp_path / f"w{workers}.jsonl"),
                     "--workers", str(workers), "--no-progress"]) == 0
    one, two = normalised(tmp_path / "w1.jsonl"), normalised(tmp_path / "w2.jsonl")
    assert [r["id"] for r in two] == [t.id for t in mixed]
    assert one == two


def test_an_empty_input_is_an_error_unless_allowed(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["check", str(empty), str(tmp_path / "o.jsonl")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no traces" in err and "--allow-empty" in err
    assert not (tmp_path / "o.jsonl").exists()
    assert main(["check", str(empty), str(tmp_path / "o.jsonl"), "--allow-empty"]) == 0
    assert (tmp_path / "o.jsonl").read_text() == ""


def test_a_folder_without_data_is_one_line(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not traces")
    for path in (folder, tmp_path / "missing"):
        assert main(["check", str(path), str(tmp_path / "o.jsonl")]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and "Traceback" not in err


def test_progress_is_logged_in_lines_when_stderr_is_not_a_terminal(gsm8k_test, tmp_path):
    run = prm("check", gsm8k_test, tmp_path / "o.jsonl", "--limit", 30, "--checkers", "sympy",
              env={**os.environ, "PRM_PROGRESS_SECONDS": "0"})
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0
    logged = [line for line in err.splitlines() if line.startswith("prm check:")]
    assert "\r" not in err and len(logged) >= 2
    assert "30/30" in logged[-1] and "steps/s" in logged[-1]
