"""Every command that reads traces reads every format `prm convert` reads: here a GSM8K file
(question/answer rows, no `id` field), which a reader of native records alone would refuse."""

import pytest

from prm.app.cli import main
from prm.io import read_traces


@pytest.fixture()
def gsm8k_file(shared_data, tmp_path):
    lines = (shared_data / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    path = tmp_path / "gsm8k_three.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_check_score_inspect_and_convert_read_a_gsm8k_file(gsm8k_file, tmp_path, capsys):
    assert main(["check", str(gsm8k_file), str(tmp_path / "checked.jsonl"), "--checkers", "sympy",
                 "--workers", "1"]) == 0
    assert len(read_traces(tmp_path / "checked.jsonl")) == 3
    assert main(["score", "checker:sympy", str(gsm8k_file), str(tmp_path / "scored.jsonl")]) == 0
    assert all(s.score is not None for t in read_traces(tmp_path / "scored.jsonl") for s in t.steps)
    assert main(["inspect", str(gsm8k_file)]) == 0
    assert main(["convert", str(gsm8k_file), str(tmp_path / "native.jsonl"), "--from", "gsm8k", "--to",
                 "native"]) == 0


def test_train_and_eval_read_a_gsm8k_file(gsm8k_file, tmp_path):
    # GSM8K's reference solutions are read as human-labelled good steps
    assert main(["train", str(gsm8k_file), "--backbone", "tiny-gsm", "--out", str(tmp_path / "m"),
                 "--max_steps", "1", "--save_strategy", "no"]) == 0
    assert main(["score", str(tmp_path / "m"), str(gsm8k_file), str(tmp_path / "scored.jsonl")]) == 0
    assert main(["eval", str(tmp_path / "m"), "--data", str(gsm8k_file), "--gold", "labels", "--threshold", "0.5",
                 "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.md").exists()
