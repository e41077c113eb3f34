"""`prm train` as the home of TRL's PRMTrainer users: TRL stepwise datasets read as they are
(a local folder with splits, a saved DatasetDict, a hub name), and PRMConfig's options under
their TRL names (docs/migrating-from-trl.md)."""

import json
import re
from pathlib import Path

import pytest

from prm import formats
from prm.app.cli import main
from prm.reward.model import RewardModel
from helpers.reward_models import gsm8k_with_errors, tiny_gpt2

# Every field PRMConfig declared in trl 1.13.0, its last release (trl/experimental/prm/prm_config.py).
PRM_CONFIG_FIELDS = ("learning_rate", "max_length", "max_completion_length", "disable_dropout",
                     "step_separator", "train_on_last_step_only", "dataset_num_proc")
MIGRATION_PAGE = Path(__file__).resolve().parents[1] / "docs" / "migrating-from-trl.md"


@pytest.fixture(scope="module")
def trl_folder(tmp_path_factory):
    """A dataset folder in TRL's stepwise-supervision layout, as `load_dataset` reads it."""
    root = tmp_path_factory.mktemp("trl")
    folder = root / "stepwise"
    folder.mkdir()
    formats.write(folder / "train.jsonl", gsm8k_with_errors(16, seed=0), "trl")
    formats.write(folder / "test.jsonl", gsm8k_with_errors(6, seed=1, start=100), "trl")
    return {"root": root, "data": folder, "backbone": str(tiny_gpt2(root / "gpt2"))}


def test_trl_rows_in_a_local_dataset_folder_train_with_prmconfig_option_names(trl_folder, tmp_path):
    out = tmp_path / "prm"
    argv = ["train", str(trl_folder["data"]), "--split", "train", "--eval_split", "test",
            "--backbone", trl_folder["backbone"], "--step_separator", "\n", "--train_on_last_step_only",
            "--max_completion_length", "100", "--max_length", "256", "--disable_dropout", "true",
            "--learning_rate", "1e-3", "--epochs", "1", "--batch-size", "8", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    report = summary["train_report"]
    # one training label per trace: the last step's (earlier ones are not counted as unknown)
    assert report["used"] > 0 and report["labeled_steps"] == report["used"]
    assert report["unknown_masked"] == 0
    # steps past 100 completion tokens are dropped whole and counted; a trace that lost its
    # last step has nothing to train on and is counted too
    assert report["dropped_steps"] > 0 and report["skipped_truncated"] > 0
    assert summary["training"]["train_on_last_step_only"] is True
    assert "eval_accuracy" in summary["eval_metrics"]  # evaluation reads every step of the test split
    model = RewardModel.from_pretrained(out)
    assert model.config.max_completion_length == 100


def test_a_saved_dataset_dict_is_read_by_split(trl_folder, tmp_path):
    import datasets

    rows = [json.loads(line) for line in (trl_folder["data"] / "train.jsonl").read_text().splitlines()]
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:10]),
                                   "validation": datasets.Dataset.from_list(rows[10:])})
    splits.save_to_disk(str(tmp_path / "saved"))
    traces = formats.read_dataset(str(tmp_path / "saved"), "validation")
    assert len(traces) == len(rows) - 10
    assert traces[0].steps[0].label_source == "import" and traces[0].problem == rows[10]["prompt"]
    with pytest.raises(ValueError, match="no split 'dev'; its splits: train, validation"):
        formats.read_dataset(str(tmp_path / "saved"), "dev")


def test_a_bad_label_names_the_dataset_split_and_row(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    good = {"prompt": "1+1?", "completions": ["1 + 1 = 2"], "labels": [True]}
    lines = [good, good, {"prompt": "2+2?", "completions": ["2 + 2 = 4"], "labels": [7]}]
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in lines))
    with pytest.raises(ValueError) as caught:
        formats.read_dataset(str(folder), "train")
    assert str(caught.value).startswith(f"{folder} (split train), line 3, field 'labels[0]'")


def test_a_hub_name_that_cannot_be_reached_is_one_line(trl_folder, capsys):
    # tests run offline: the hub path is taken (the name does not exist locally) and fails cleanly
    assert main(["train", "no-such-owner/no-such-dataset", "--backbone", trl_folder["backbone"],
                 "--out", str(trl_folder["root"] / "never")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-owner/no-such-dataset" in err and "hub dataset" in err


def test_prompt_and_completion_limits_keep_the_prompt_end_and_drop_whole_steps(trl_folder):
    model = RewardModel.from_backbone(trl_folder["backbone"])
    model.config.max_prompt_length, model.config.max_completion_length = 5, 12
    model._step_tokenizer = None  # rebuilt from the config
    tokenizer = model.step_tokenizer
    problem, steps = "one two three four five six seven eight", ["a b c", "d e f", "g h i j k l m n"]
    full = RewardModel.from_backbone(trl_folder["backbone"]).step_tokenizer.encode(problem, steps)
    limited = tokenizer.encode(problem, steps)
    assert limited.answer_start == 5 and limited.prompt_truncated == full.answer_start - 5
    assert limited.input_ids[:5] == full.input_ids[full.answer_start - 5:full.answer_start]
    kept_tokens = len(limited.input_ids) - limited.answer_start
    assert kept_tokens <= 12 and limited.dropped >= 1 and limited.kept + limited.dropped == 3
    assert limited.input_ids[5:] == full.input_ids[full.answer_start:full.answer_start + kept_tokens]


def test_every_prmconfig_field_is_a_prm_train_option_or_explained_on_the_migration_page():
    from prm.app.cli import build_parser

    options = {option for action in build_parser("train")._actions for option in action.option_strings}
    page = MIGRATION_PAGE.read_text()
    for name in PRM_CONFIG_FIELDS:
        assert f"`{name}`" in page, f"{name} is not on {MIGRATION_PAGE.name}"
        if name != "dataset_num_proc":  # no dataset.map here: explained on the page instead
            assert f"--{name}" in options, f"prm train has no --{name}"
    assert re.search(r"PRMTrainer\(", page) and "prm train" in page
