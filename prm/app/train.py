"""`prm train`: fit a PRM or ORM head on labelled traces.

    prm train DATA --backbone NAME_OR_PATH --head prm|orm --labels hard|soft --out DIR
              [--eval DATA] [--epochs N] [--batch-size N] [--lr X] [--max-length N] [--seed N]
              [--resume] ...

DATA is a trace file (JSONL, Parquet or a `datasets` folder; convert other formats with
`prm convert`). The backbone is a short name (tiny-gsm, minilm-l6, smollm2-135m), a model
folder or a hub name. DIR receives the trained model (a `RewardModel` folder), checkpoints
(`DIR/checkpoint-N`, one per epoch by default), `DIR/metrics.jsonl` (every log record: loss,
learning rate, positive rate, eval metrics) and `DIR/train_summary.json`. An interrupted
run continues from its last checkpoint with `--resume`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from prm.errors import RecordError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="labelled traces to train on")
    parser.add_argument("--backbone", required=True, metavar="NAME_OR_PATH",
                        help="tiny-gsm, minilm-l6, smollm2-135m, a model folder or a hub name")
    parser.add_argument("--head", choices=["prm", "orm"], default="prm",
                        help="prm: a score per step; orm: one per solution (default prm)")
    parser.add_argument("--labels", choices=["hard", "soft"], default="hard",
                        help="train on Step.hard_label or Step.soft_label (default hard)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--eval", metavar="DATA", help="held-out traces, evaluated after every epoch")
    parser.add_argument("--epochs", type=float, default=1.0, help="training epochs (default 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="traces per batch (default 8)")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)")
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default 5e-5)")
    parser.add_argument("--max-length", type=int, default=512,
                        help="longest sequence in tokens; whole steps beyond it are dropped and counted")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in DIR")
    parser.add_argument("--objective", choices=["bce", "mse"], default="bce",
                        help="bce: cross-entropy against hard or soft targets; mse: regression (default bce)")
    parser.add_argument("--orm-label", choices=["outcome", "all-steps"], default="outcome",
                        help="ORM target: outcome_label, or whether every step is good (default outcome)")
    parser.add_argument("--balance-classes", action="store_true",
                        help="weight the loss so that good and bad steps count equally")
    parser.add_argument("--step-marker", choices=["last-token", "special-token"], default="last-token",
                        help="label on the last token of step+separator, or on an added <|step|> token")
    parser.add_argument("--aggregation", choices=["min", "prod", "last", "mean"],
                        help="default step -> solution aggregation saved with the model")
    parser.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                        help="stop after PATIENCE evaluations without a better eval loss (needs --eval)")
    parser.add_argument("--save-steps", type=int, metavar="N",
                        help="also checkpoint every N optimiser steps (default: once per epoch)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations to save memory (slower; for large backbones)")
    parser.add_argument("--prompt-template", default="{problem}\n",
                        help="how the problem is written before the steps (tiny-gsm: 'Question: {problem}\\nAnswer:\\n')")
    parser.add_argument("--lm-features", action="store_true",
                        help="causal-LM backbones: the head also reads the LM's token log-probabilities")
    parser.add_argument("--freeze-backbone", action="store_true", help="train the head only")


def run(args: argparse.Namespace) -> int:
    from transformers.trainer_utils import get_last_checkpoint

    from prm.reward.training import JsonlLogCallback, RewardTrainer, RewardTrainerConfig, config_dict

    out = Path(args.out)
    checkpoint = get_last_checkpoint(str(out)) if out.is_dir() else None
    if checkpoint and not args.resume:
        raise RecordError(f"{out} already holds checkpoints; pass --resume to continue, or choose another --out")
    if args.resume and checkpoint is None:
        print(f"prm train: no checkpoint in {out}; starting from the beginning")
    if args.early_stopping is not None and not args.eval:
        raise RecordError("--early-stopping needs --eval DATA")
    train = _read(args.data)
    held_out = _read(args.eval) if args.eval else None
    _check_labels(train, args, args.data)

    logging.getLogger("prm").setLevel(logging.INFO)
    config = RewardTrainerConfig(
        output_dir=str(out), head=args.head, labels=args.labels, objective=args.objective,
        orm_label=args.orm_label, balance_classes=args.balance_classes, step_marker=args.step_marker,
        aggregation=args.aggregation, max_length=args.max_length, num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=max(16, args.batch_size),
        gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr, seed=args.seed,
        eval_strategy="epoch" if held_out else "no",
        save_strategy="steps" if args.save_steps else "epoch", save_steps=args.save_steps or 500,
        early_stopping_patience=args.early_stopping, activation_checkpointing=args.gradient_checkpointing,
        prompt_template=args.prompt_template.replace("\\n", "\n"), lm_features=args.lm_features,
        freeze_backbone=args.freeze_backbone, disable_tqdm=False, logging_first_step=True)
    trainer = RewardTrainer(args.backbone, config, train_traces=train, eval_traces=held_out,
                            callbacks=[JsonlLogCallback(out / "metrics.jsonl")])
    print(trainer.train_report.summary("train"))
    if trainer.eval_report is not None:
        print(trainer.eval_report.summary("eval"))
    result = trainer.train(resume_from_checkpoint=checkpoint if args.resume else None)
    trainer.save_model(str(out))
    summary = {"config": config_dict(config), "backbone": args.backbone, "train_data": args.data,
               "eval_data": args.eval, "train_report": vars(trainer.train_report),
               "train_metrics": result.metrics}
    if held_out:
        summary["eval_metrics"] = trainer.evaluate()
        print("eval: " + ", ".join(f"{k.removeprefix('eval_')} {v:.4g}" for k, v in summary["eval_metrics"].items()
                                   if isinstance(v, float)))
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"prm train: model saved to {out} (metrics log: {out / 'metrics.jsonl'})")
    return 0


def _read(path: str):
    from prm.io import read_traces

    if not os.path.exists(path):
        raise RecordError("no such file", path=path)
    return read_traces(path)


def _check_labels(traces, args, path: str) -> None:
    """Refuse data with no label of the requested kind, naming the file and the field."""
    if args.head == "orm":
        has = any(t.outcome_label is not None or all(s.hard_label is not None for s in t.steps) for t in traces)
        if args.labels == "soft":
            has = has or any(t.steps[-1].soft_label is not None for t in traces)
        field = "outcome_label"
    else:
        field = "hard_label" if args.labels == "hard" else "soft_label"
        has = any(getattr(s, field) is not None for t in traces for s in t.steps)
        field = f"steps[].{field}"
    if not has:
        raise RecordError(f"no record has a {args.labels} label to train a {args.head.upper()} on", path=path,
                          field=field)
