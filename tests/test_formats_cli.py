"""`prm convert` and `prm inspect` through the CLI, format guessing, and bad input errors."""

import json

import pytest

from prm.app.cli import main
from prm.formats import guess_format, read


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("relative, expected", [
    ("gsm8k/train.jsonl", "gsm8k"), ("gsm8k/test.jsonl", "gsm8k"),
    ("gsm8k/example_model_solutions.jsonl", "gsm8k"), ("math500/test.jsonl", "math500"),
    ("prmbench-train", "prmbench"), ("samples/math-shepherd.sample.jsonl", "math-shepherd"),
    ("samples/prm800k.sample.jsonl", "prm800k"),
])
def test_format_is_guessed_from_real_files(shared_data, relative, expected):
    assert guess_format(shared_data / relative) == expected


def test_convert_gsm8k_to_native_trl_and_parquet(shared_data, tmp_path, capsys):
    source = str(shared_data / "gsm8k" / "test.jsonl")
    code, out, _ = run(capsys, "convert", source, str(tmp_path / "g.jsonl"))
    assert code == 0 and "(gsm8k)" in out and "wrote 1319 record(s)" in out
    native = read(tmp_path / "g.jsonl")
    assert len(native) == 1319 and guess_format(tmp_path / "g.jsonl") == "native"

    code, out, _ = run(capsys, "convert", str(tmp_path / "g.jsonl"), str(tmp_path / "g-trl.parquet"),
                       "--to", "trl")
    assert code == 0
    assert guess_format(tmp_path / "g-trl.parquet") == "trl"
    trl = read(tmp_path / "g-trl.parquet")
    assert [t.step_texts for t in trl] == [t.step_texts for t in native]
    assert [t.hard_labels for t in trl] == [t.hard_labels for t in native]


def test_convert_prmbench_folder_to_trl_reports_dropped_traces(shared_data, tmp_path, capsys):
    code, out, err = run(capsys, "convert", str(shared_data / "prmbench-train"),
                         str(tmp_path / "prmbench-trl.jsonl"), "--to", "trl")
    assert code == 0
    assert "read 3203 trace(s), wrote 3191 record(s), dropped 12" in out
    assert "has no label" in err  # the reasons, never a silent drop
    rows = [json.loads(line) for line in (tmp_path / "prmbench-trl.jsonl").read_text().splitlines()]
    assert len(rows) == 3191 and not all(all(row["labels"]) for row in rows)


def test_convert_prmbench_to_native_datasets_folder_and_back(shared_data, tmp_path, capsys):
    source = shared_data / "prmbench-train" / "prm800k_train_p1_first400_4o_deception.jsonl"
    code, _, _ = run(capsys, "convert", str(source), str(tmp_path / "folder"), "--include-original")
    assert code == 0
    traces = read(tmp_path / "folder")
    assert len(traces) == 2 * 399 and traces == read(source, "prmbench", include_original=True)


def test_convert_refuses_an_unwritable_target_and_a_misplaced_option(shared_data, tmp_path, capsys):
    source = str(shared_data / "samples" / "prm800k.sample.jsonl")
    code, _, err = run(capsys, "convert", source, str(tmp_path / "x.jsonl"), "--to", "prmbench")
    assert code == 1 and "cannot be written" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "convert", source, str(tmp_path / "x.jsonl"), "--soft")
    assert code == 1 and "soft" in err and len(err.strip().splitlines()) == 1


def test_inspect_gsm8k_prints_counts_histogram_and_labels(shared_data, capsys):
    code, out, _ = run(capsys, "inspect", str(shared_data / "gsm8k" / "test.jsonl"))
    assert code == 0
    assert "traces: 1319" in out and "steps: 4819" in out
    assert "step length (words)" in out and "#" in out
    assert "step labels: 1 4819 (100.0%), 0 0 (0.0%), unknown 0 (0.0%)" in out


def test_inspect_prmbench_counts_error_classes_and_label_balance(shared_data, capsys):
    code, out, _ = run(capsys, "inspect", str(shared_data / "prmbench-train"), "--json", "--unit", "chars")
    assert code == 0
    summary = json.loads(out)
    assert summary["traces"] == 3203
    assert set(summary["error_classes"]) == {"circular", "confidence", "counterfactual", "deception",
                                             "domain_inconsistency", "missing_condition", "redundency",
                                             "step_contradiction"}
    labels = summary["hard_labels"]
    assert labels["0"] > 0 and labels["1"] > labels["0"] and labels["unknown"] > 0
    assert sum(labels.values()) == summary["steps"]
    assert sum(b["count"] for b in summary["step_length"]["histogram"]) == summary["steps"]


def test_inspect_native_file_shows_soft_labels_sources_and_outcomes(shared_data, tmp_path, capsys):
    run(capsys, "convert", str(shared_data / "samples" / "prm800k.sample.jsonl"), str(tmp_path / "p.jsonl"))
    code, out, _ = run(capsys, "inspect", str(tmp_path / "p.jsonl"))
    assert code == 0 and "(native)" in out
    assert "soft labels: 45 steps" in out and "label sources: human 45" in out
    assert "first wrong step: no wrong step 5, has a wrong step 1" in out


def test_inspect_model_solutions_shows_outcome_balance(shared_data, capsys):
    code, out, _ = run(capsys, "inspect", str(shared_data / "gsm8k" / "example_model_solutions.jsonl"),
                       "--limit", "400")
    assert code == 0 and "traces: 400" in out
    assert "outcome labels: " in out and "unknown 0" not in out.split("outcome labels: ")[1].splitlines()[0]


# -- bad input through the CLI --------------------------------------------------------------

GSM8K_GOOD = json.dumps({"question": "q", "answer": "a\n#### 1"})
TRL_GOOD = json.dumps({"prompt": "p", "completions": ["a"], "labels": [True]})

BAD_INPUT = [
    # (name, content, format, expected pieces of the one-line message)
    ("malformed.jsonl", GSM8K_GOOD + "\n" + '{"question": "q", "answer": \n', "gsm8k",
     ["malformed.jsonl", "line 2", "malformed JSON"]),
    ("missing.jsonl", GSM8K_GOOD + "\n" + '{"question": "q"}\n', "gsm8k",
     ["missing.jsonl", "line 2", "field 'answer'", "missing"]),
    ("empty.jsonl", TRL_GOOD + "\n" + json.dumps({"prompt": "p", "completions": [], "labels": []}) + "\n",
     "trl", ["empty.jsonl", "line 2", "field 'completions'", "empty step list"]),
    ("length.jsonl", TRL_GOOD + "\n" + json.dumps({"prompt": "p", "completions": ["a", "b"],
                                                    "labels": [True]}) + "\n",
     "trl", ["length.jsonl", "line 2", "field 'labels'", "1 labels for 2 steps"]),
    ("latin1.jsonl", GSM8K_GOOD + "\n" + '{"question": "caf\xe9", "answer": "a\\n#### 1"}\n', "gsm8k",
     ["latin1.jsonl", "line 2", "not valid UTF-8"]),
]


def write_bad(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1"))
    return path


@pytest.mark.parametrize("name, content, fmt, pieces", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
@pytest.mark.parametrize("command", ["convert", "inspect"])
def test_bad_input_gives_one_line_naming_file_line_and_field(tmp_path, capsys, name, content, fmt,
                                                             pieces, command):
    path = write_bad(tmp_path, name, content)
    argv = [command, str(path)] + ([str(tmp_path / "out.jsonl")] if command == "convert" else [])
    code, out, err = run(capsys, *argv)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    for piece in pieces:
        assert piece in lines[0]
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written


@pytest.mark.parametrize("name, content, fmt, pieces", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_skip_invalid_converts_the_rest_and_says_what_was_skipped(tmp_path, capsys, name, content, fmt,
                                                                  pieces):
    path = write_bad(tmp_path, name, content)
    code, out, err = run(capsys, "convert", str(path), str(tmp_path / "out.jsonl"), "--from", fmt,
                         "--skip-invalid")
    assert code == 0
    assert "read 1 trace(s)" in out
    assert "skipped 1 invalid input record(s)" in err and pieces[-1] in err
    assert len(read(tmp_path / "out.jsonl")) == 1


def test_convert_of_a_file_with_no_valid_record_fails(tmp_path, capsys):
    path = write_bad(tmp_path, "all-bad.jsonl", TRL_GOOD.replace("[true]", "[true, false]") + "\n")
    code, _, err = run(capsys, "convert", str(path), str(tmp_path / "out.jsonl"), "--from", "trl",
                       "--skip-invalid")
    assert code == 1 and "no records read" in err and "2 labels for 1 steps" in err


def test_unknown_layout_asks_for_the_format(tmp_path, capsys):
    path = write_bad(tmp_path, "odd.jsonl", json.dumps({"colour": "blue"}) + "\n")
    code, _, err = run(capsys, "inspect", str(path))
    assert code == 1 and "cannot tell the format" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["convert", "inspect"])
def test_help_describes_the_options(capsys, command):
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "--skip-invalid" in out and ("--to" in out if command == "convert" else "--unit" in out)
