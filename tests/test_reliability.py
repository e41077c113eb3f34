"""What breaks when the toolkit is pushed (issue 11): malformed records, duplicate ids, NaN,
kills during a Parquet write, file modes, two runs on one output, resuming another model's
partial output, empty inputs, and models that are missing or corrupt. Every failure must be
one line naming the file (and line and field), never a traceback and never a silent mix.

The HTTP cases (responses cut short, prompts too long, a server down or late) are in
test_completers_openai.py, against the real loopback server."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.completers import write_search_problems

from prm.app.cli import main
from prm.errors import RecordError
from prm.formats import read
from prm.io import ReadReport, dumps, output_lock, read_traces, write_traces
from prm.records import Trace

GOOD = {"id": "a", "problem": "What is 2+3?", "steps": ["2+3 = 5", "The answer is 5"], "reference_answer": "5"}


def record(**changes) -> str:
    return json.dumps({**GOOD, **changes})


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    """`prm ARGV` in its own process (as a user runs it: a traceback would show on stderr)."""
    return subprocess.run([sys.executable, "-m", "prm.app.cli", *argv], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result.stderr


# -- records that used to pass validation, or crash it ------------------------------------------

@pytest.mark.parametrize("changes, field", [
    ({"meta": "oops"}, "meta"),
    ({"reference_answer": 8}, "reference_answer"),
    ({"final_answer": [5]}, "final_answer"),
    ({"steps": [{"text": "2+3 = 5", "rollouts": {"correct": "x", "total": 4}}]}, "steps[0].rollouts.correct"),
    ({"steps": [{"text": "2+3 = 5", "rollouts": {"correct": 5, "total": 4}}]}, "steps[0].rollouts.correct"),
    ({"steps": [{"text": "2+3 = 5", "rollouts": {"correct": 1, "total": 4, "answers": "5"}}]},
     "steps[0].rollouts.answers"),
    ({"steps": [{"text": "2+3 = 5", "score": "high"}]}, "steps[0].score"),
    ({"steps": [{"text": "2+3 = 5", "verdicts": [{"checker": "sympy", "status": "verified", "seconds": "1"}]}]},
     "steps[0].verdicts.seconds"),
])
def test_a_field_of_the_wrong_type_is_one_error_naming_file_line_and_field(tmp_path, changes, field):
    path = write_lines(tmp_path / "bad.jsonl", record(id="first"), record(**changes))
    with pytest.raises(RecordError) as caught:
        read_traces(path)
    assert (caught.value.path, caught.value.line, caught.value.field) == (str(path), 2, field)


def test_a_numeric_reference_answer_stops_annotate_before_any_work(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", record(reference_answer=8))
    one_line_error(run_cli("annotate", str(path), str(tmp_path / "out.jsonl"), "--no-progress"),
                   f"{path}, line 1, field 'reference_answer'")
    assert not (tmp_path / "out.jsonl").exists()


def test_json_nested_100000_deep_is_one_error_naming_the_line(tmp_path):
    path = write_lines(tmp_path / "deep.jsonl", record(), '{"id": "b", "problem": "p", "steps": ["s"], "meta": '
                       + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(RecordError, match="nested too deeply") as caught:
        read_traces(path)
    assert caught.value.line == 2
    with pytest.raises(RecordError, match="nested too deeply"):
        read(path)  # format guessed from the first record, then read
    first = write_lines(tmp_path / "deep-first.jsonl", "[" * 100_000 + "]" * 100_000)
    one_line_error(run_cli("inspect", str(first)), str(first), "nested too deeply")


def test_nan_is_neither_written_nor_read_as_json(tmp_path):
    trace = Trace.from_dict(GOOD)
    trace.steps[1].score = float("nan")
    with pytest.raises(RecordError, match=r"NaN.*steps\[1\]\.score"):
        dumps(trace)
    out = write_lines(tmp_path / "out.jsonl", record(id="old"))
    with pytest.raises(RecordError):
        write_traces(out, [trace])
    assert [t.id for t in read_traces(out)] == ["old"]  # the file is left as it was
    path = write_lines(tmp_path / "nan.jsonl", record().replace('"reference_answer": "5"', '"score_x": NaN'))
    with pytest.raises(RecordError, match="NaN is not a JSON value") as caught:
        read_traces(path)
    assert caught.value.line == 1


# -- duplicate ids --------------------------------------------------------------------------------

def test_duplicate_ids_are_refused_naming_both_places_unless_kept(tmp_path):
    path = write_lines(tmp_path / "dup.jsonl", record(id="x"), record(id="y"), record(id="x"))
    with pytest.raises(RecordError, match=rf"duplicate id 'x' \(first at {path} line 1\)") as caught:
        read_traces(path)
    assert (caught.value.line, caught.value.field) == (3, "id")
    assert [t.id for t in read_traces(path, keep_duplicates=True)] == ["x", "y", "x"]
    report = ReadReport()
    assert [t.id for t in read_traces(path, skip_invalid=True, report=report)] == ["x", "y"]
    assert report.skipped[0].line == 3
    with pytest.raises(RecordError, match="duplicate id 'x'"):
        read(path)  # every reader: prm.formats too
    assert len(read(path, keep_duplicates=True)) == 3


def test_duplicate_ids_across_the_files_of_a_folder_and_in_parquet(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    write_lines(folder / "a.jsonl", record(id="x"))
    second = write_lines(folder / "b.jsonl", record(id="y"), record(id="x"))
    with pytest.raises(RecordError) as caught:
        read(folder)
    assert (caught.value.path, caught.value.line) == (str(second), 2)
    traces = read_traces(write_lines(tmp_path / "d.jsonl", record(id="x"), record(id="x")), keep_duplicates=True)
    write_traces(tmp_path / "d.parquet", traces)
    with pytest.raises(RecordError, match="duplicate id") as caught:
        read_traces(tmp_path / "d.parquet")
    assert caught.value.line == 2


def test_gsm8k_gives_unique_ids(shared_data):
    assert len(read(shared_data / "gsm8k" / "test.jsonl")) == 1319  # real data passes the check


# -- writing: atomic Parquet, the user's file mode ----------------------------------------------------

WRITER = """
import random, sys
from prm.io import write_traces
from prm.records import Step, Trace
rng = random.Random(0)
text = lambda n: "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(n))
traces = [Trace(id=f"t{i}", problem=text(100), steps=[Step(text(300)) for _ in range(20)]) for i in range(400)]
print("ready", flush=True)
write_traces(sys.argv[1], traces)
"""


@pytest.mark.parametrize("name", ["out.parquet", "out-folder"])
def test_a_kill_during_a_parquet_or_datasets_write_leaves_no_unreadable_output(tmp_path, name):
    target = tmp_path / name
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        deadline = time.time() + 120
        # kill as soon as anything of the output shows up in the folder: the write has begun
        while not any(p.name.startswith((name, f".{name}")) for p in tmp_path.iterdir()):
            assert time.time() < deadline and process.poll() is None, "the writer never started writing"
            time.sleep(0.0002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    if target.exists():  # either complete, or not there at all
        assert len(read_traces(target)) == 400
    write_traces(target, [Trace.from_dict(GOOD)])  # the next write is not disturbed by leftovers
    assert [t.id for t in read_traces(target)] == ["a"]


def test_written_files_get_the_users_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        for name in ("new.jsonl", "new.parquet"):
            write_traces(tmp_path / name, [Trace.from_dict(GOOD)])
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
        os.chmod(tmp_path / "new.jsonl", 0o640)  # an existing file keeps its own mode
        write_traces(tmp_path / "new.jsonl", [Trace.from_dict(GOOD)])
        assert (tmp_path / "new.jsonl").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


# -- one writer per output --------------------------------------------------------------------------

HOLDER = """
import sys, time
from prm.io import output_lock
with output_lock(sys.argv[1], "test holder"):
    print("locked", flush=True)
    time.sleep(120)
"""


def hold_lock(path: Path) -> subprocess.Popen:
    """Another process holding the output lock of `path` (as a running `prm annotate` would)."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_of_the_same_output_is_refused(tmp_path, capsys):
    out = tmp_path / "labelled.jsonl"
    data = write_lines(tmp_path / "in.jsonl", record())
    holder = hold_lock(out)
    try:
        assert main(["annotate", str(data), str(out), "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert "another process is writing this output (test holder" in err and str(out) in err
        assert not out.exists() or out.read_text() == ""
        with pytest.raises(RecordError, match="another process"), output_lock(out):
            pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(out):  # released when the holder died, however it died
        pass
    assert not (tmp_path / f".{out.name}.lock").exists()


@pytest.mark.slow  # three tiny-gsm searches in their own processes
def test_two_concurrent_searches_of_the_same_output_leave_each_problem_once(tmp_path):
    """`prm search` takes the output lock (issue 18: two runs 2 s apart both wrote, 16 lines for
    8 problems, and every later run was refused)."""
    problems = write_search_problems(tmp_path / "problems.jsonl", 8)
    out = tmp_path / "out.jsonl"
    argv = ["search", str(problems), str(out), "--strategy", "majority", "--budget", "4x",
            "--tokens-per-solution", "70", "--chunk-size", "1", "--no-progress"]
    first = subprocess.Popen([sys.executable, "-m", "prm.app.cli", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lock = tmp_path / f".{out.name}.lock"
    deadline = time.monotonic() + 300
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_cli(*argv)  # while the first one holds the lock
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    one_line_error(second, "another process is writing this output", "prm search")
    ids = [t.meta["problem_id"] for t in read_traces(out)]
    assert len(ids) == 8 == len(set(ids))
    assert run_cli(*argv).returncode == 0  # a later run resumes (nothing left to do)


def test_search_refuses_a_second_run_on_the_same_out(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    data = write_lines(tmp_path / "in.jsonl", record())
    holder = hold_lock(out)  # as a running `prm search` holds it
    try:
        assert main(["search", str(data), str(out), "--strategy", "majority", "--no-progress"]) == 1
        assert "another process is writing this output (test holder" in capsys.readouterr().err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()


def test_eval_benchmark_refuses_a_second_run_on_the_same_out(tmp_path, capsys):
    rows = [{"original_question": "q", "modified_question": "q", "original_process": ["2+3 = 5"],
             "modified_process": ["2+3 = 6"], "error_steps": [1], "classification": "circular", "idx": "1"}]
    data = write_lines(tmp_path / "prmbench.jsonl", *[json.dumps(r) for r in rows])
    out = tmp_path / "pb"
    holder = hold_lock(out / "scored.jsonl")  # as a running `prm eval --benchmark` holds it
    try:
        assert main(["eval", "--benchmark", "prmbench", "--scorer", "checker:sympy", "--data", str(data),
                     "--out", str(out), "--threads", "1"]) == 1
        assert "another process is writing this output (test holder" in capsys.readouterr().err
        assert not (out / "scored.partial.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["eval", "--benchmark", "prmbench", "--scorer", "checker:sympy", "--data", str(data),
                 "--out", str(out), "--threads", "1"]) == 0


# -- prm score: resume checks, empty input, NaN, bad paths, corrupt models -----------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two small reward models (A and B), a copy of A with a truncated weights file, one whose
    head gives NaN, and scoring data."""
    import torch
    from helpers.reward_models import gsm8k_with_errors, tiny_bert

    from prm.reward.model import RewardModel

    root = tmp_path_factory.mktemp("score-models")
    backbone = tiny_bert(root / "bert")
    folders = {}
    for name, seed in (("A", 0), ("B", 1)):
        torch.manual_seed(seed)
        RewardModel.from_backbone(str(backbone)).save_pretrained(root / name)
        folders[name] = root / name
    model = RewardModel.from_pretrained(root / "A")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    model.save_pretrained(root / "nan")
    folders["nan"] = root / "nan"
    corrupt = root / "corrupt"
    corrupt.mkdir()
    for file in (root / "A").iterdir():
        data = file.read_bytes()
        (corrupt / file.name).write_bytes(data[:len(data) // 2] if file.suffix == ".safetensors" else data)
    folders["corrupt"] = corrupt
    write_traces(root / "data.jsonl", gsm8k_with_errors(3))
    folders["data"] = root / "data.jsonl"
    return {k: str(v) for k, v in folders.items()}


def test_score_refuses_to_resume_another_models_partial_output(models, tmp_path):
    full = tmp_path / "full.jsonl"
    assert main(["score", models["A"], models["data"], str(full), "--chunk", "2"]) == 0
    out = tmp_path / "out.jsonl"
    partial = Path(str(out) + ".partial.jsonl")
    lines = full.read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:2]) + lines[2][:40])  # what a kill after one chunk leaves
    result = run_cli("score", models["B"], models["data"], str(out))
    one_line_error(result, str(partial), "line 1", "other settings", "model")
    assert not out.exists()
    assert main(["score", models["A"], models["data"], str(out), "--chunk", "2"]) == 0  # same model: resumes
    assert read_traces(out) == read_traces(full)
    assert main(["score", models["A"], models["data"], str(tmp_path / "other.jsonl"), "--aggregation", "last"]) == 0


def test_score_refuses_a_second_run_on_the_same_output(models, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    holder = hold_lock(out)
    try:
        assert main(["score", models["A"], models["data"], str(out)]) == 1
        assert "another process is writing this output" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_score_of_an_empty_input_is_an_error_unless_allowed(models, tmp_path, capsys):
    empty = write_lines(tmp_path / "empty.jsonl")
    assert main(["score", models["A"], str(empty), str(tmp_path / "out.jsonl")]) == 1
    assert "holds no records" in capsys.readouterr().err and not (tmp_path / "out.jsonl").exists()
    assert main(["score", models["A"], str(empty), str(tmp_path / "out.jsonl"), "--allow-empty"]) == 0
    assert "holds no records" in capsys.readouterr().out and read_traces(tmp_path / "out.jsonl") == []


def test_score_refuses_nan_scores(models, tmp_path):
    result = run_cli("score", models["nan"], models["data"], str(tmp_path / "out.jsonl"))
    one_line_error(result, "non-finite score")
    assert not (tmp_path / "out.jsonl").exists()


def test_a_folder_as_input_is_one_error(models, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    one_line_error(run_cli("score", models["A"], str(folder), str(tmp_path / "out.jsonl")), str(folder), "folder")


def test_a_corrupt_weights_file_is_named_by_every_command_that_loads_a_model(models, tmp_path):
    weights = str(Path(models["corrupt"]) / "model.safetensors")
    one_line_error(run_cli("score", models["corrupt"], models["data"], str(tmp_path / "s.jsonl")),
                   weights, "corrupt or truncated")
    one_line_error(run_cli("eval", models["corrupt"], "--data", models["data"], "--out", str(tmp_path / "e")),
                   weights, "corrupt or truncated")
    one_line_error(run_cli("annotate", models["data"], str(tmp_path / "a.jsonl"), "--completer", models["corrupt"],
                           "--no-progress"), weights)


def test_a_missing_model_path_is_one_error(models, tmp_path):
    missing = str(tmp_path / "no-such-model")
    one_line_error(run_cli("eval", missing, "--data", models["data"], "--out", str(tmp_path / "e")), missing)
    one_line_error(run_cli("score", missing, models["data"], str(tmp_path / "s.jsonl")), missing)


def test_convert_and_inspect_refuse_duplicate_ids_unless_asked(tmp_path, capsys):
    path = write_lines(tmp_path / "dup.jsonl", record(id="x"), record(id="x"))
    assert main(["convert", str(path), str(tmp_path / "out.jsonl")]) == 1
    assert f"{path}, line 2, field 'id': duplicate id 'x'" in capsys.readouterr().err
    assert main(["convert", str(path), str(tmp_path / "out.jsonl"), "--keep-duplicates"]) == 0
    assert len(read_traces(tmp_path / "out.jsonl", keep_duplicates=True)) == 2
    assert main(["inspect", str(path)]) == 1
    assert main(["inspect", str(path), "--keep-duplicates"]) == 0
