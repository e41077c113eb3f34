"""`prm train` and `prm score` end to end, in process, on real GSM8K records."""

import json
import shutil

import pytest
import torch

from prm.app.cli import main
from prm.io import read_traces, write_traces
from prm.reward.model import RewardModel
from helpers.reward_models import gsm8k_with_errors, tiny_bert


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_traces(root / "train.jsonl", gsm8k_with_errors(20, seed=0))
    write_traces(root / "eval.jsonl", gsm8k_with_errors(6, seed=1, start=100))
    return {"root": root, "backbone": str(tiny_bert(root / "bert")),
            "train": str(root / "train.jsonl"), "eval": str(root / "eval.jsonl")}


def test_train_writes_a_model_a_metrics_log_and_resumes(files, capsys):
    out = files["root"] / "prm"
    argv = ["train", files["train"], "--backbone", files["backbone"], "--head", "prm", "--labels", "hard",
            "--out", str(out), "--eval", files["eval"], "--epochs", "1", "--batch-size", "8", "--lr", "1e-3"]
    assert main(argv) == 0
    assert "positive rate" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert saved["head"] == "prm" and saved["label_type"] == "hard" and saved["backbone_name"] == files["backbone"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0 < records[0]["train_positive_rate"] < 1
    assert any("eval_first_error_accuracy" in r for r in records)
    steps_after_one_epoch = max(r["step"] for r in records)

    assert main(argv) == 1  # checkpoints exist: refuses to start over silently
    assert "--resume" in capsys.readouterr().err
    # a kill during the next checkpoint's save leaves a folder without trainer_state.json
    torn = out / f"checkpoint-{10 * steps_after_one_epoch}"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\x00" * 10)
    assert main(argv[:-6] + ["--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--resume"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == 2 * steps_after_one_epoch
    assert sum("train_positive_rate" in r for r in records) == 1  # the data report is logged once
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["train_report"]["used"] == len(read_traces(files["train"]))


def test_orm_trains_and_score_writes_step_scores_into_the_records(files, tmp_path, capsys):
    out = tmp_path / "orm"
    assert main(["train", files["train"], "--backbone", files["backbone"], "--head", "orm", "--labels", "hard",
                 "--out", str(out), "--epochs", "1", "--batch-size", "8"]) == 0
    scored = tmp_path / "scored.jsonl"
    assert main(["score", str(out), files["eval"], str(scored), "--batch-size", "4"]) == 0
    assert "scored" in capsys.readouterr().out
    traces = read_traces(scored)
    model = RewardModel.from_pretrained(out)
    assert model.config.head == "orm"
    for trace in traces[:3]:
        assert trace.scores == pytest.approx(model.score(trace.problem, trace.step_texts), abs=1e-5)
        assert trace.meta["solution_score"] == pytest.approx(trace.scores[-1])  # an ORM reads the end
        assert trace.meta["reward_model"]["aggregation"] == "last"
    assert not (tmp_path / "scored.jsonl.partial.jsonl").exists()


def test_training_on_missing_labels_names_the_file_and_field(files, capsys):
    code = main(["train", files["train"], "--backbone", files["backbone"], "--labels", "soft",
                 "--out", str(files["root"] / "soft")])
    assert code == 1
    err = capsys.readouterr().err
    assert files["train"] in err and "soft_label" in err


def test_the_same_seed_trains_the_same_model(files, tmp_path):
    from safetensors.torch import load_file

    weights = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(["train", files["train"], "--backbone", files["backbone"], "--out", str(out),
                     "--epochs", "1", "--batch-size", "8", "--seed", "3", "--save_strategy", "no"]) == 0
        weights.append(load_file(out / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_missing_or_corrupt_backbone_is_one_line_naming_it(files, tmp_path, capsys):
    argv = ["train", files["train"], "--out", str(tmp_path / "out"), "--backbone"]
    assert main(argv + [str(tmp_path / "no-such-model")]) == 1
    assert "no such model folder" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    shutil.copytree(files["backbone"], corrupt, dirs_exist_ok=True)
    weights = next(corrupt.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(argv + [str(corrupt)]) == 1
    err = capsys.readouterr().err
    assert "corrupt or truncated" in err and weights.name in err and "Traceback" not in err
