"""The runner's streaming output, resume, shards, merge and bad-input errors (scripted completer;
the SIGKILL test with a real model is in test_annotate_integration.py)."""

import json

import pytest

from annotate.merge import MergeError, merge
from annotate.config import AnnotateConfig
from annotate.runner import load_input, read_finished, run, select_shard, shard_of
from prm.errors import RecordError
from prm.io import write_traces
from helpers.completers import ScriptedCompleter, make_trace

CONFIG = AnnotateConfig(n=3)


def traces(count=12):
    return [make_trace(2 + i % 5, first_error=(i % 4) - 1, trace_id=f"trace-{i}") for i in range(count)]


def normalised(path):
    """The output's records without wall-clock times (the only thing that differs between runs)."""
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    for record in records:
        record["meta"]["annotation"].pop("seconds")
        for step in record["steps"]:
            if step["rollouts"]:
                step["rollouts"].pop("seconds")
    return records


def annotate(items, out, **kwargs):
    kwargs.setdefault("completer_spec", "scripted")
    return run(items, out, ScriptedCompleter(p=0.6), kwargs.pop("config", CONFIG), progress=False, **kwargs)


def test_output_is_streamed_one_finished_trace_per_line(tmp_path):
    out = tmp_path / "out.jsonl"
    seen = []

    def check_file(trace):  # each trace is on disk, complete, as soon as it is reported
        seen.append(trace.id)
        assert [t.id for t in read_finished(out)[0]] == seen

    summary = run(traces(5), out, ScriptedCompleter(), CONFIG, completer_spec="scripted", progress=False,
                  on_trace=check_file)
    assert seen == [f"trace-{i}" for i in range(5)]
    assert summary.annotated == summary.output_traces == 5 and summary.rollouts == 3 * summary.steps
    assert sum(summary.labels.values()) == summary.steps
    assert "5 trace(s)" in summary.text() and "positive" in summary.text()


def test_resume_after_a_torn_write_equals_an_uninterrupted_run(tmp_path):
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    annotate(traces(), full)
    lines = full.read_bytes().splitlines(keepends=True)
    part.write_bytes(b"".join(lines[:5]) + lines[5][: len(lines[5]) // 2])  # killed mid-write
    summary = annotate(traces(), part)
    assert summary.already_done == 5 and summary.annotated == 7
    assert normalised(part) == normalised(full)
    again = annotate(traces(), part)  # nothing left: no duplicates
    assert again.annotated == 0 and normalised(part) == normalised(full)


def test_resume_refuses_an_output_made_with_other_settings_or_inputs(tmp_path):
    out = tmp_path / "out.jsonl"
    annotate(traces(3), out)
    with pytest.raises(RecordError, match="other settings.*n") as err:
        annotate(traces(3), out, config=AnnotateConfig(n=4))
    assert err.value.line == 1 and str(out) in str(err.value)
    with pytest.raises(RecordError, match="other settings.*completer"):
        annotate(traces(3), out, completer_spec="another-model")
    with pytest.raises(RecordError, match="not in this run's input"):
        annotate(traces(12)[5:], out)


def test_a_corrupt_line_in_the_middle_of_the_output_is_an_error_not_skipped(tmp_path):
    out = tmp_path / "out.jsonl"
    annotate(traces(3), out)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + "{broken\n" + "".join(lines[1:]))
    with pytest.raises(RecordError) as err:
        annotate(traces(3), out)
    assert err.value.line == 2


def test_shards_split_stably_and_merge_to_the_unsharded_run(tmp_path):
    items = traces(20)
    write_traces(tmp_path / "in.jsonl", items)
    parts = [select_shard(items, (i, 3)) for i in range(3)]
    assert sorted(t.id for p in parts for t in p) == sorted(t.id for t in items)
    assert all(parts) and shard_of("trace-7", 3) == shard_of("trace-7", 3)
    annotate(items, tmp_path / "single.jsonl")
    shard_files = []
    for i in range(3):
        shard_files.append(str(tmp_path / f"shard{i}.jsonl"))
        annotate(items, shard_files[-1], shard=(i, 3))
    report = merge(str(tmp_path / "merged.jsonl"), shard_files, str(tmp_path / "in.jsonl"))
    assert "0 missing, 0 duplicated" in report
    assert normalised(tmp_path / "merged.jsonl") == normalised(tmp_path / "single.jsonl")


def test_merge_refuses_missing_or_duplicated_traces_with_counts(tmp_path):
    items = traces(10)
    write_traces(tmp_path / "in.jsonl", items)
    shards = []
    for i in range(2):
        shards.append(str(tmp_path / f"shard{i}.jsonl"))
        annotate(items, shards[-1], shard=(i, 2))
    out = tmp_path / "merged.jsonl"
    with pytest.raises(MergeError, match=r"missing") as err:
        merge(str(out), shards[:1], str(tmp_path / "in.jsonl"))
    missing = len(select_shard(items, (1, 2)))
    assert f"{missing} missing" in str(err.value) and not out.exists()
    with pytest.raises(MergeError, match=r"[1-9]\d* duplicated"):
        merge(str(out), shards + shards[:1], str(tmp_path / "in.jsonl"))
    # a shard killed mid-write: its torn trace counts as missing
    data = open(shards[1], "rb").read()
    open(shards[1], "wb").write(data[:-10])
    with pytest.raises(MergeError, match="1 missing"):
        merge(str(out), shards, str(tmp_path / "in.jsonl"))
    assert not out.exists()


def test_bad_input_names_file_line_and_field(tmp_path):
    good = make_trace(2).to_dict()
    path = tmp_path / "in.jsonl"
    no_reference = dict(good, id="b", reference_answer=None)
    path.write_text(json.dumps(good) + "\n" + json.dumps(no_reference) + "\n")
    with pytest.raises(RecordError) as err:
        load_input(path)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 2, "reference_answer")

    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    with pytest.raises(RecordError, match="duplicate id") as err:
        load_input(path)
    assert (err.value.line, err.value.field) == (3, "id")

    path.write_text(json.dumps(good) + "\n" + '{"id": "x", "problem": "p", "steps": []}\n')
    with pytest.raises(RecordError) as err:
        load_input(path)
    assert (err.value.line, err.value.field) == (2, "steps")

    path.write_text(json.dumps(good) + "\n" + '{"id": "x", "problem": \n')
    with pytest.raises(RecordError, match="malformed JSON") as err:
        load_input(path)
    assert err.value.line == 2

    with pytest.raises(RecordError, match="no such file"):
        load_input(tmp_path / "missing.jsonl")
    with pytest.raises(RecordError, match="JSONL"):
        annotate(traces(2), tmp_path / "out.parquet")


def test_datasets_folder_input(tmp_path):
    items = traces(4)
    write_traces(tmp_path / "in_ds", items)
    loaded = load_input(tmp_path / "in_ds")
    assert [t.id for t in loaded] == [t.id for t in items]
    annotate(loaded, tmp_path / "out.jsonl")
    assert len(read_finished(tmp_path / "out.jsonl")[0]) == 4


def test_workers_write_every_trace_once(tmp_path):
    out = tmp_path / "out.jsonl"
    summary = annotate(traces(), out, workers=3)
    assert summary.annotated == 12
    annotate(traces(), tmp_path / "single.jsonl")
    by_id = {r["id"]: r for r in normalised(out)}
    assert len(by_id) == 12
    assert [by_id[r["id"]] for r in normalised(tmp_path / "single.jsonl")] == normalised(tmp_path / "single.jsonl")
