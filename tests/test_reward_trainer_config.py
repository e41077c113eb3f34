"""`RewardTrainerConfig.in_memory`: the one way the demo, the benches and scripts set up a
trainer whose model the caller keeps (no checkpoints, no evaluation, no loggers, no bar)."""

from prm.reward.training import RewardTrainerConfig


def test_in_memory_saves_evaluates_and_reports_nothing(tmp_path):
    args = RewardTrainerConfig.in_memory(tmp_path / "run", learning_rate=1e-3, num_train_epochs=2)
    assert (args.output_dir, args.learning_rate, args.num_train_epochs) == (str(tmp_path / "run"), 1e-3, 2)
    assert args.save_strategy == "no" and args.eval_strategy == "no"
    assert args.report_to == [] and args.disable_tqdm is True


def test_in_memory_settings_override_its_defaults(tmp_path):
    args = RewardTrainerConfig.in_memory(tmp_path, disable_tqdm=False, save_strategy="epoch")
    assert args.disable_tqdm is False and args.save_strategy == "epoch"
