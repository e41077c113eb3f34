"""`prm train`: fit a PRM or ORM head, or an implicit PRM, on labelled traces.

    prm train DATA --backbone NAME_OR_PATH --head prm|orm --labels hard|soft --out DIR
              [--eval DATA] [--epochs N] [--batch-size N] [--lr X] [--resume] ...
    prm train DATA --backbone CAUSAL_LM --head implicit [--reference MODEL] [--beta B] [--loss ce|dpo] --out DIR

`--head implicit` trains the causal LM itself on the traces' outcome labels (`outcome_label`,
e.g. from `prm convert` of graded solutions; no step label, no rollout) against a frozen
reference (`--reference`, default a copy of the backbone); see docs/reward_models.md.

The options are generated from three dataclasses, so each is defined once: `TrainInputs`
(below: data, backbone, held-out data, resume), `prm.reward.model.RewardModelOptions` (every
reward-model setting) and `prm.reward.training.RewardTrainerConfig` (a `TrainingArguments`:
every field of the Hugging Face `Trainer` works, e.g. `--deepspeed ds.json`, `--fsdp ...`,
`--bf16`, `--save_strategy steps --save_steps 500`). `prm train --help` lists them all.

DATA is a trace file in any format `prm convert` reads, or a Hugging Face dataset: with
`--split NAME` (and `--eval_split NAME` for held-out data), DATA is read with
`datasets.load_dataset(DATA, split=NAME)`, so a hub name (`trl-lib/math_shepherd`), a local
folder with `train.jsonl`/`test.jsonl`, or a `DatasetDict` folder all work; a DATA that does
not exist locally and reads as `owner/name` is taken as a hub name with split "train". TRL
stepwise-supervision data (`prompt`, `completions`, `labels`) is read as it is, and PRMConfig's
options keep their names (docs/migrating-from-trl.md). The backbone is a short name
(tiny-gsm, minilm-l6, smollm2-135m), a model folder or a hub name. DIR receives the trained
model (a `RewardModel` folder), checkpoints (`DIR/checkpoint-N`, one per epoch by default),
`DIR/metrics.jsonl` (every log record: loss, learning rate, positive rate, eval metrics) and
`DIR/train_summary.json`. An interrupted run continues from its last complete checkpoint
with `--resume`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from prm.errors import RecordError, opening_model
from prm.reward.model import RewardModelOptions, reward_model_class
from prm.reward.training import RewardTrainerConfig


@dataclass
class TrainInputs:
    """What to train on and from (the positional DATA is added by `add_arguments`)."""

    backbone: str = field(metadata={"help": "tiny-gsm, minilm-l6, smollm2-135m, a model folder or a hub name"})
    eval: str | None = field(default=None, metadata={"help": "held-out traces, evaluated after every epoch"})
    split: str | None = field(default=None, metadata={
        "help": "read DATA as a Hugging Face dataset (hub name or local folder) and train on this split"})
    eval_split: str | None = field(default=None, metadata={
        "help": "held-out split of the dataset DATA (or of --eval), e.g. test"})
    resume: bool = field(default=False, metadata={"help": "continue from the last complete checkpoint in --out"})
    merge_lora: bool = field(default=False, metadata={
        "help": "with --lora_r: save the model with its LoRA adapters folded into the backbone"})


# The parser is generated from these (see prm.app.cli); TrainingArguments' own defaults that
# differ for this command are set in `defaults`.
CONFIGS = (TrainInputs, RewardModelOptions, RewardTrainerConfig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="labelled traces to train on (any format prm convert reads)")
    parser.set_defaults(num_train_epochs=1.0, logging_first_step=True, disable_tqdm=False, report_to="none")


def from_args(cls, args: argparse.Namespace):
    """An instance of dataclass `cls` from the parsed options (only its init fields)."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if f.init and hasattr(args, f.name)})


def run(args: argparse.Namespace) -> int:
    from transformers import set_seed

    from prm.reward.model import RewardModel
    from prm.reward.training import JsonlLogCallback, RewardTrainer, last_complete_checkpoint

    inputs, options = from_args(TrainInputs, args), from_args(RewardModelOptions, args)
    if not args.output_dir:
        raise RecordError("--out DIR is required")
    out = Path(args.output_dir)
    from prm.io import refuse_output_over_inputs

    refuse_output_over_inputs(out, [args.data, inputs.eval, inputs.backbone])
    checkpoint = last_complete_checkpoint(out)
    if checkpoint and not inputs.resume:
        raise RecordError(f"{out} already holds checkpoints; pass --resume to continue, or choose another --out")
    if inputs.resume and checkpoint is None:
        print(f"prm train: no checkpoint in {out}; starting from the beginning")
    if args.early_stopping_patience is not None and not (inputs.eval or inputs.eval_split):
        raise RecordError("--early-stopping needs --eval DATA")
    if inputs.merge_lora and options.lm_features and options.lora_r > 0:
        raise RecordError("--merge_lora with --lm_features: the LM features are read from the backbone without "
                          "its adapters, so merging them would change the scores; save with the adapters")
    train = _read(args.data, inputs.split)
    if inputs.eval:
        held_out = _read(inputs.eval, inputs.eval_split)
    elif inputs.eval_split:
        held_out = _read(args.data, inputs.eval_split)
    else:
        held_out = None
    _check_labels(train, options, args.data)

    if held_out:
        args.eval_strategy = "epoch" if args.eval_strategy in (None, "no") else args.eval_strategy
        args.per_device_eval_batch_size = max(16, args.per_device_train_batch_size)
    options.prompt_template = options.prompt_template.replace("\\n", "\n")
    logging.getLogger("prm").setLevel(logging.INFO)
    config = from_args(RewardTrainerConfig, args)
    set_seed(config.seed)  # before the new head is initialised
    with opening_model(inputs.backbone):
        model = RewardModel.from_backbone(inputs.backbone, options)
    trainer = RewardTrainer(model, config, train_traces=train, eval_traces=held_out,
                            callbacks=[JsonlLogCallback(out / "metrics.jsonl")])
    print(trainer.train_report.summary("train"))
    if trainer.eval_report is not None:
        print(trainer.eval_report.summary("eval"))
    result = trainer.train(resume_from_checkpoint=checkpoint if inputs.resume else None)
    if inputs.merge_lora:
        trainer.model.merge_lora()
    trainer.save_model(str(out))
    summary = {"model": asdict(trainer.model.config.options), "backbone": inputs.backbone,
               "training": {name: getattr(config, name) for name in (
                   "learning_rate", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
                   "seed", "orm_label", "balance_classes", "pos_weight", "freeze_backbone",
                   "train_on_last_step_only")},
               "train_data": args.data, "eval_data": inputs.eval, "train_report": vars(trainer.train_report),
               "train_metrics": result.metrics}
    if held_out:
        summary["eval_metrics"] = trainer.evaluate()
        print("eval: " + ", ".join(f"{k.removeprefix('eval_')} {v:.4g}" for k, v in summary["eval_metrics"].items()
                                   if isinstance(v, float)))
    if trainer.is_world_process_zero():
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"prm train: model saved to {out} (metrics log: {out / 'metrics.jsonl'})")
    _leave_process_group()
    return 0


HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _read(path: str, split: str | None = None):
    """Traces from a file or folder, or from one split of a Hugging Face dataset."""
    from prm import formats

    if split is not None:
        return formats.read_dataset(path, split)
    if not os.path.exists(path):
        if HUB_NAME.fullmatch(path):
            try:
                return formats.read_dataset(path, "train")
            except RecordError as err:
                raise RecordError(f"no such file or folder, nor a readable hub dataset ({err.reason})",
                                  path=path) from None
        raise RecordError("no such file", path=path)
    return formats.read(path)


def _check_labels(traces, options: RewardModelOptions, path: str) -> None:
    """Refuse data with no label of the kind the chosen model trains on, naming the file and the field
    (the model class says what it needs: `RewardModel.missing_labels`)."""
    problem = reward_model_class(options.head).missing_labels(traces, options)
    if problem is not None:
        reason, field_name = problem
        raise RecordError(reason, path=path, field=field_name)


def _leave_process_group() -> None:
    """Under torchrun, end the process once every rank has written its outputs. Left to the
    interpreter's exit, torch's gloo process group can deadlock in its destructor (it joins a
    thread that waits for the GIL the destructor holds) or abort the process; nothing is left
    to run here, so the process exits without running destructors."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
