"""Inputs that used to end in a traceback or be silently accepted (issue 18): closed pipes,
an encoder as a completer, search and annotate settings that cannot work, a plain causal LM
as a PRM, the duplicate-id hint, and JSON error texts."""

import json
import os
import subprocess
import sys

import pytest

from prm.app.cli import main
from prm.io import read_traces

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
RECORD = {"id": "a", "problem": "What is 2+3?", "steps": ["2+3 = 5", "The answer is 5"], "reference_answer": "5"}


def shell(command: str, cwd) -> subprocess.CompletedProcess:
    """`command` in bash (for pipes), with `prm` meaning this checkout's CLI; prints the
    status of the pipeline's first command last."""
    prm = f"{sys.executable} -m prm.app.cli"
    return subprocess.run(["bash", "-c", command.replace("prm ", prm + " ", 1) + '; echo "status ${PIPESTATUS[0]}"'],
                          capture_output=True, text=True, cwd=cwd, env=ENV, timeout=600, check=False)


@pytest.fixture
def gsm8k_part(shared_data, tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    lines = (shared_data / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:20]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_check_into_a_closed_pipe_finishes_its_output_quietly(gsm8k_part, tmp_path):
    result = shell(f"prm check {gsm8k_part} out.jsonl --checkers sympy --workers 1 2>&1 | head -1", tmp_path)
    assert "Traceback" not in result.stdout + result.stderr and "Exception ignored" not in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "status 141"  # 128 + SIGPIPE, as `yes | head -1`
    assert len(read_traces(tmp_path / "out.jsonl")) == 20  # the work is finished, not lost
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_inspect_into_a_closed_pipe_exits_quietly(gsm8k_part, tmp_path):
    result = shell(f"prm inspect {gsm8k_part} | true", tmp_path)
    assert result.stderr == "" and result.stdout.strip() == "status 141"


@pytest.mark.parametrize("command", ["annotate", "search"])
def test_an_encoder_as_completer_is_one_line(command, tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps(RECORD) + "\n")
    extra = ["--strategy", "majority"] if command == "search" else []
    assert main([command, str(data), str(tmp_path / "out.jsonl"), "--completer", "minilm-l6", "--no-progress",
                 *extra]) == 1
    err = capsys.readouterr().err
    assert "is an encoder (BertModel), which cannot sample" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("option, value, needle", [
    ("--tokens-per-solution", "0", "must be above 0"),
    ("--lookahead", "-1", "must be >= 0"),
    ("--temperature", "-1", "must be >= 0"),
    ("--top-p", "1.5", "must be in (0, 1]"),
])
def test_search_settings_that_cannot_work_are_refused(option, value, needle, tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps(RECORD) + "\n")
    with pytest.raises(SystemExit) as stopped:
        main(["search", str(data), str(tmp_path / "out.jsonl"), "--strategy", "majority", option, value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {needle}" in err and "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()


def test_annotate_refuses_more_successes_than_completions(tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps(RECORD) + "\n")
    assert main(["annotate", str(data), str(tmp_path / "out.jsonl"), "--n", "2", "--min-successes", "9"]) == 1
    assert "--min-successes 9 is more than --n 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["annotate", str(data), str(tmp_path / "out.jsonl"), "--temperature", "-1"])


@pytest.mark.parametrize("model", ["tiny-gsm", "smollm2-135m"])
def test_score_refuses_a_plain_causal_lm_unless_the_family_is_given(model, tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps(RECORD) + "\n")
    assert main(["score", model, str(data), str(tmp_path / "out.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "plain causal language model" in err and "--family math-shepherd" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_score_takes_a_causal_lm_when_the_family_is_given(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps(RECORD) + "\n")
    assert main(["score", "tiny-gsm", str(data), str(tmp_path / "out.jsonl"), "--family", "math-shepherd",
                 "--threads", "1"]) == 0
    assert all(s.score is not None for s in read_traces(tmp_path / "out.jsonl")[0].steps)


@pytest.mark.parametrize("argv", [
    ["check", "{IN}", "{OUT}", "--checkers", "sympy", "--workers", "1"],
    ["score", "checker:sympy", "{IN}", "{OUT}"],
    ["annotate", "{IN}", "{OUT}"],
    ["search", "{IN}", "{OUT}", "--strategy", "majority"],
    ["eval", "{IN}", "--out", "{OUT}"],
])
def test_the_duplicate_id_error_names_only_options_that_exist(argv, tmp_path, capsys):
    data = tmp_path / "dup.jsonl"
    data.write_text(json.dumps(RECORD) + "\n" + json.dumps(RECORD) + "\n")
    names = {"{IN}": str(data), "{OUT}": str(tmp_path / "out.jsonl")}
    assert main([names.get(a, a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert "duplicate id 'a'" in err
    assert "--keep-duplicates" not in err or "`prm convert` and `prm inspect` keep both with --keep-duplicates" in err
    # the option it names is one of the commands it names
    assert main(["convert", str(data), str(tmp_path / "kept.jsonl"), "--keep-duplicates"]) == 0
    assert main(["inspect", str(data), "--keep-duplicates"]) == 0


@pytest.mark.parametrize("text, message", [('{"id": "a", "problem": "p', "Unterminated string starting at column 24"),
                                           ('{"id": "a", "problem": "p\n', "Invalid control character at column 26")])
def test_json_errors_that_end_in_at_read_once(text, message, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text)
    assert main(["inspect", str(bad)]) == 1
    err = capsys.readouterr().err
    assert message in err and "at at" not in err
