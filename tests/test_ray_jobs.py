"""`--ray` on prm annotate, check, score and eval --benchmark, on a local Ray cluster started
here (2 CPUs, loopback only, one cluster for the whole module): a Ray run writes what one
process writes, resumes a partial output, and an actor killed mid-run loses no trace and
writes none twice."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from completers.world import generate_problems
from prm.app.cli import main
from prm.io import write_traces

FAST_ANNOTATION = ["--completer", "tiny-gsm", "--n", "2", "--max-new-tokens", "24", "--no-progress"]


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray of 2 CPUs on this machine for the module; the commands find it already running."""
    ray = pytest.importorskip("ray", reason='Ray is the "ray" extra, installed by `make test`')
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             object_store_memory=100 * 1024 ** 2, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def gsm8k(shared_data):
    return str(shared_data / "gsm8k" / "test.jsonl")


def drop_seconds(value):
    if isinstance(value, dict):
        return {k: drop_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [drop_seconds(v) for v in value]
    return value


def records(path):
    """The records of a JSONL file by id, without wall-clock `seconds` (the one field allowed
    to differ between runs); the ids in file order too, to see duplicates."""
    found, order = {}, []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = drop_seconds(json.loads(line))
        order.append(record["id"])
        found[record["id"]] = record
    return found, order


def without_timed_out_checks(first: dict, second: dict) -> tuple[dict, dict, int]:
    """Both runs' records with every step whose check hit a time limit in either run masked
    (on a loaded machine that one outcome depends on timing), and how many steps were masked."""
    masked = 0
    for trace_id in first.keys() & second.keys():
        for a, b in zip(first[trace_id]["steps"], second[trace_id]["steps"]):
            if "time limit" in json.dumps(a["verdicts"]) + json.dumps(b["verdicts"]):
                a["verdicts"] = b["verdicts"] = "timed out"
                masked += 1
    return first, second, masked


def keep_first_lines_and_a_torn_one(source, target, lines):
    """`target` as a run killed mid-write leaves it: `lines` whole lines of `source`, half the next."""
    raw = Path(source).read_bytes().splitlines(keepends=True)
    Path(target).write_bytes(b"".join(raw[:lines]) + raw[lines][: len(raw[lines]) // 2])


# -- without Ray ------------------------------------------------------------------------------------

def test_ray_missing_is_one_line_saying_how_to_install_it(monkeypatch, gsm8k, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    code = main(["check", gsm8k, str(tmp_path / "out.jsonl"), "--limit", "2", "--no-progress", "--ray"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert 'pip install "prm-toolkit[ray]"' in err


def test_ray_flags_without_ray_are_refused(gsm8k, tmp_path, capsys):
    assert main(["check", gsm8k, str(tmp_path / "out.jsonl"), "--limit", "2", "--actors", "2"]) == 1
    assert "--actors apply to a Ray run: add --ray" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before any file was made


def test_an_address_where_nothing_listens_is_one_line_not_minutes_of_retries(gsm8k, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = tmp_path / "out.jsonl"
    try:  # Ray alone retries "Failed to connect to GCS" until killed
        done = subprocess.run([sys.executable, "-m", "prm.app.cli", "check", gsm8k, str(out), "--limit", "2",
                               "--no-progress", "--ray", "--ray-address", "127.0.0.1:1"],
                              capture_output=True, text=True, env=env, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("--ray-address 127.0.0.1:1 was still retrying after 90 s")
    err = done.stderr.strip()
    assert done.returncode == 1 and len(err.splitlines()) == 1, err
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in err and "--ray-address" in err
    assert not out.exists()


DRIVER = """
import json, sys, time
import psutil
from prm.app.ray_jobs import connect
connect(None)
time.sleep(5)  # the raylet starts its agents, the watcher notes them
print(json.dumps({p.pid: " ".join(p.cmdline())[:60] for p in psutil.Process().children(recursive=True)}), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_killed_driver_leaves_no_ray_process_running(tmp_path):
    """SIGKILL the driver of a local Ray (`--ray` with no address): every process that Ray
    started ends with it, the dashboard and runtime-env agents too (they used to stay)."""
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, env=env,
                              start_new_session=True)
    started = {}
    try:
        started = {int(pid): name for pid, name in json.loads(driver.stdout.readline()).items()}
        assert any(name.startswith("ray::DashboardAgent") for name in started.values()), started
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()

        def running():
            alive = {}
            for pid, name in started.items():
                try:
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        alive[pid] = name
                except psutil.NoSuchProcess:
                    pass
            return alive

        for _ in range(60):  # the agents used to stay for good; the watcher ends them within seconds
            if not running():
                break
            time.sleep(1)
        assert running() == {}
    finally:
        driver.kill()
        for pid in started:  # whatever is left is this test's own: end it
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


# -- faults -----------------------------------------------------------------------------------------

def test_a_killed_actor_has_its_traces_checked_by_another_none_lost_none_twice(ray_cluster, gsm8k):
    from annotate.checkers.parallel import CheckerPool
    from prm.app.ray_jobs import RayCheckerPool, RayOptions
    from prm.formats import read

    options, limits = {"sympy": {"seconds": 5.0}}, {"sympy": 5.0}
    expected = {t.id: t for _, t in CheckerPool(options, limits, workers=1).check_traces(read(gsm8k, limit=8))}

    pool = RayCheckerPool(options, limits, RayOptions(actors=2))
    seen = {}
    for position, trace in pool.check_traces(read(gsm8k, limit=8)):
        if not seen:  # both actors hold work now: kill the first one's process
            os.kill(pool.pool.pids()["a1"], signal.SIGKILL)
        assert trace.id not in seen  # none twice
        seen[trace.id] = drop_seconds(trace.to_dict())
    assert pool.pool.deaths == 1 and pool.pool.retried >= 1  # a1's traces went to another actor
    on_ray, alone, masked = without_timed_out_checks(seen, {i: drop_seconds(t.to_dict()) for i, t in expected.items()})
    assert len(on_ray) == 8 and masked <= 2 and on_ray == alone  # none lost, each with the verdicts one process gives


# -- the commands -----------------------------------------------------------------------------------

def test_check_on_ray_resumes_a_partial_output_and_writes_what_one_process_writes(ray_cluster, gsm8k, tmp_path,
                                                                                  monkeypatch, capsys):
    common = ["--checkers", "sympy", "--limit", "8"]
    single, on_ray = tmp_path / "single.jsonl", tmp_path / "ray.jsonl"
    assert main(["check", gsm8k, str(single), *common, "--workers", "1", "--no-progress"]) == 0
    keep_first_lines_and_a_torn_one(single, str(on_ray) + ".partial", 3)  # a killed driver's output
    monkeypatch.setenv("PRM_PROGRESS_SECONDS", "0")  # a progress line on every trace
    capsys.readouterr()
    assert main(["check", gsm8k, str(on_ray), *common, "--ray", "--actors", "2"]) == 0
    captured = capsys.readouterr()
    assert "5 trace(s)" in captured.out and "were done before" in captured.out
    assert "of 2 actors" in captured.err  # the progress line says which actors are busy
    (ray_records, ray_order), (single_records, single_order) = records(on_ray), records(single)
    assert ray_order == single_order  # input order, each trace once
    on_ray_masked, single_masked, masked = without_timed_out_checks(ray_records, single_records)
    assert masked <= 2 and on_ray_masked == single_masked


def test_annotate_on_ray_resumes_and_writes_what_one_process_writes(ray_cluster, tmp_path):
    source = tmp_path / "world.jsonl"
    write_traces(source, [p.to_trace() for p in generate_problems(4, seed=3)])
    single, on_ray = tmp_path / "single.jsonl", tmp_path / "ray.jsonl"
    assert main(["annotate", str(source), str(single), *FAST_ANNOTATION]) == 0  # 1 torch thread (conftest)
    keep_first_lines_and_a_torn_one(single, on_ray, 1)
    assert main(["annotate", str(source), str(on_ray), *FAST_ANNOTATION, "--ray", "--actors", "2"]) == 0
    ray_records, ray_order = records(on_ray)
    assert len(ray_order) == len(set(ray_order)) == 4
    assert ray_records == records(single)[0]  # the same labels, rollouts and tokens, trace by trace
    in_order = tmp_path / "ray.sorted.jsonl"  # appended as finished; prm merge restores input order
    assert main(["merge", str(in_order), str(on_ray), "--input", str(source)]) == 0
    assert records(in_order) == records(single)


def test_score_and_benchmark_on_ray_write_what_one_process_writes(ray_cluster, gsm8k, shared_data, tmp_path):
    traces = tmp_path / "gsm8k.jsonl"
    assert main(["convert", gsm8k, str(traces), "--limit", "6"]) == 0
    single, on_ray = tmp_path / "single.jsonl", tmp_path / "ray.jsonl"
    scorer = ["checker:sympy", str(traces)]
    assert main(["score", *scorer, str(single), "--chunk", "3"]) == 0
    assert main(["score", *scorer, str(on_ray), "--chunk", "3", "--ray", "--actors", "2"]) == 0
    assert records(on_ray) == records(single)  # the same records in the same order

    data = tmp_path / "prmbench.jsonl"
    lines = (shared_data / "prmbench-train" / "prm800k_train_p1_first400_4o_confidence.jsonl").read_text().splitlines()
    data.write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    bench = ["eval", "--benchmark", "prmbench", "--scorer", "checker:sympy", "--data", str(data), "--chunk", "2"]
    assert main([*bench, "--out", str(tmp_path / "one")]) == 0
    assert main([*bench, "--out", str(tmp_path / "ray"), "--ray", "--actors", "2"]) == 0
    assert records(tmp_path / "ray" / "scored.jsonl") == records(tmp_path / "one" / "scored.jsonl")
    assert (tmp_path / "ray" / "report.md").read_text() == (tmp_path / "one" / "report.md").read_text()


def test_a_model_an_actor_cannot_load_is_one_line_naming_it(ray_cluster, gsm8k, tmp_path, capsys):
    traces = tmp_path / "gsm8k.jsonl"
    assert main(["convert", gsm8k, str(traces), "--limit", "2"]) == 0
    missing = str(tmp_path / "no-such-model")
    assert main(["score", missing, str(traces), str(tmp_path / "out.jsonl"), "--ray", "--actors", "1"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("scoring:")]
    assert len(errors) == 1 and errors[0].startswith("prm score: error:") and "no-such-model" in errors[0]
