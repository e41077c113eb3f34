"""Training reward models on labelled traces, with the Hugging Face `Trainer`.

`RewardTrainer` is a thin `transformers.Trainer`: it turns `Trace` records into examples
(one label per step position, see `prm.reward.step_tokenizer`), pads each batch to its own longest
sequence, computes a masked loss and reports step-level metrics. Everything else — the
optimiser, schedules, checkpoints, `resume_from_checkpoint`, evaluation during training,
early stopping, logging, and scaling with accelerate / torchrun / DDP / FSDP / DeepSpeed —
is the `Trainer`'s own, driven by one documented dataclass, `RewardTrainerConfig`.

Labels come from the records: `Step.hard_label` or `Step.soft_label` (``labels="hard"|"soft"``);
soft labels stay floats (TRL's PRMTrainer casts them to int, turning 0.75 into 0). A step
whose label is unknown (None) is masked out of the loss, never read as 0. An ORM is
trained on one label per solution at its last step position (`outcome_label`, or "all
steps good"). The positive rate of the training labels is reported and can be balanced with
``balance_classes`` / ``pos_weight``.

`step_metrics` (accuracy, AUROC, recall of bad steps, first-error accuracy, Brier score) is
the one metric function used during training, by `prm train` and by the benchmark.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments, set_seed

from prm.records import Trace, first_error
from prm.reward.implicit import dpo_loss
from prm.reward.model import RewardModel, RewardModelOptions, step_loss
from prm.reward.step_features import step_feature_values
from prm.reward.step_tokenizer import EncodedSteps, pad_batch

logger = logging.getLogger(__name__)

ORM_LABELS = ("outcome", "all-steps")
UNKNOWN = -1.0  # a step whose label nobody decided: masked in the loss, kept apart in metrics
PADDING = -100.0  # no step here (padding, or an ORM's non-final step)
TRUNCATED = -2.0  # an extra masked entry after the last kept step: this trace lost steps


@dataclass
class RewardTrainerConfig(TrainingArguments):
    r"""
    Configuration of [`RewardTrainer`]. Only the fields specific to reward models are listed
    here; every [`~transformers.TrainingArguments`] field (batch size, epochs, schedules,
    checkpointing, evaluation, distributed training, ...) works as usual. Parse it from the
    command line with [`~transformers.HfArgumentParser`].

    Parameters:
        > Model: every reward-model setting (head, labels, objective, prompt template, step
        > marker, max length, LM features, ...) is a field of `RewardModelOptions`, passed to the
        > trainer as `model_options` when it builds the model from a backbone name.

        freeze_backbone (`bool`, defaults to `False`):
            Train the head only. With `lm_features` this keeps the LM whose log-probabilities
            the head reads as it was (fine-tuning would change them).

        > Labels and loss

        orm_label (`str`, defaults to `"outcome"`):
            ORM target: `"outcome"` (`Trace.outcome_label`, or, when it is unknown, whether every
            step is labelled good) or `"all-steps"` (always whether every step is labelled good).
            With `labels="soft"` the last step's soft label is used when present.
        balance_classes (`bool`, defaults to `False`):
            Weight the loss so that good and bad steps count equally (`pos_weight` = bad / good
            in the training labels).
        pos_weight (`float` or `None`, defaults to `None`):
            An explicit weight for the positive (good) part of every target; overrides
            `balance_classes`.
        train_on_last_step_only (`bool`, defaults to `False`):
            PRM head: train on the last step's label only; earlier steps are left out of the
            loss (not counted as unknown). Evaluation still reads every step. TRL's PRMConfig
            option of that name.
        threshold (`float`, defaults to `0.5`):
            A step is predicted good when its probability is at least this (metrics only).
        disable_dropout (`bool`, defaults to `True`):
            Turn off dropout in the backbone (as TRL does); usually better for small reward data.

        > Early stopping

        early_stopping_patience (`int` or `None`, defaults to `None`):
            Stop after this many evaluations without improvement of `metric_for_best_model`
            (default `"loss"`); turns on `load_best_model_at_end` and saving at each evaluation.
        early_stopping_threshold (`float`, defaults to `0.0`):
            The least change that counts as an improvement.

    > [!NOTE]
    > Defaults different from [`~transformers.TrainingArguments`]:
    > - `learning_rate`: `5e-5` (unchanged) - `logging_steps`: `10` instead of `500`.
    > - `train_sampling_strategy`: `"group_by_length"` instead of `"random"` (batches of similar
    >   lengths: with per-batch padding, much less padding to compute).
    > - `remove_unused_columns`: `False` (examples are already model inputs).
    > - `save_strategy`: `"epoch"` instead of `"steps"`; `save_total_limit`: `2`.
    > - `activation_checkpointing` (`gradient_checkpointing`) stays `False`: for small backbones recomputing activations
    >   costs about a third of the training time and memory is not the limit.
    """

    freeze_backbone: bool = field(default=False, metadata={"help": "Train the head only."})
    orm_label: str = field(default="outcome", metadata={"help": "ORM target: outcome or all-steps.",
                                                        "choices": list(ORM_LABELS)})
    balance_classes: bool = field(default=False, metadata={"help": "Weight good and bad steps equally."})
    pos_weight: float | None = field(default=None, metadata={"help": "Loss weight of the positive class."})
    train_on_last_step_only: bool = field(default=False, metadata={
        "help": "PRM: train on the last step's label only (evaluation reads every step)."})
    threshold: float = field(default=0.5, metadata={"help": "Probability at which a step counts as good."})
    disable_dropout: bool = field(default=True, metadata={"help": "Turn off dropout in the backbone."})
    early_stopping_patience: int | None = field(default=None, metadata={
        "help": "Stop after this many evaluations without improvement.", "aliases": ["--early-stopping"]})
    early_stopping_threshold: float = field(default=0.0, metadata={"help": "Least change that counts."})

    # TrainingArguments fields with other defaults or a short name on the command line
    output_dir: str | None = field(default=None, metadata={"help": "Folder for the model, checkpoints and logs.",
                                                          "aliases": ["--out"]})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Training epochs.", "aliases": ["--epochs"]})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate.", "aliases": ["--lr"]})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Traces per batch and device.",
                                                                  "aliases": ["--batch-size"]})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Gradient accumulation steps.",
                                                                  "aliases": ["--grad-accum"]})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})
    train_sampling_strategy: str = field(default="group_by_length", metadata={"help": "Training sampler."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Examples are already model inputs."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save checkpoints."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})

    def __post_init__(self):
        if self.orm_label not in ORM_LABELS:
            raise ValueError(f"orm_label must be one of {ORM_LABELS}, got {self.orm_label!r}")
        if self.early_stopping_patience is not None:
            self.load_best_model_at_end = True
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "loss"
            if self.eval_strategy in ("no", None):
                self.eval_strategy = "epoch"
            self.save_strategy = self.eval_strategy
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # nothing to pin for on CPU
        super().__post_init__()

    @classmethod
    def in_memory(cls, output_dir: str, **settings) -> RewardTrainerConfig:
        """A run whose model is used (or saved) by the caller: no checkpoints, no evaluation
        during training, no loggers, no progress bar; `settings` override any of these. The
        demo, the benches and the tests train this way."""
        defaults = dict(save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True)
        return cls(output_dir=str(output_dir), **{**defaults, **settings})


# -- examples -----------------------------------------------------------------------------

@dataclass
class DataReport:
    """What became of the training records: counts reported in the log, never silent."""

    traces: int = 0
    used: int = 0
    skipped_unlabeled: int = 0  # no step (or outcome) label of the chosen kind
    skipped_truncated: int = 0  # every labelled step (for an ORM: the solution's end) was cut off
    labeled_steps: int = 0
    positive: float = 0.0  # sum of targets (soft labels count fractionally)
    unknown_masked: int = 0
    dropped_steps: int = 0  # steps beyond max_length
    truncated_traces: int = 0

    @property
    def positive_rate(self) -> float | None:
        return self.positive / self.labeled_steps if self.labeled_steps else None

    def summary(self, name: str = "train") -> str:
        rate = "n/a" if self.positive_rate is None else f"{self.positive_rate:.3f}"
        text = (f"{name}: {self.used}/{self.traces} traces, {self.labeled_steps} labelled positions, "
                f"positive rate {rate}, {self.unknown_masked} unknown label(s) masked")
        if self.skipped_unlabeled:
            text += f", {self.skipped_unlabeled} trace(s) without labels skipped"
        if self.dropped_steps:
            text += (f", {self.dropped_steps} step(s) in {self.truncated_traces} trace(s) dropped "
                     "by truncation (max_length, max_completion_length)")
        if self.skipped_truncated:
            text += f", {self.skipped_truncated} trace(s) skipped: their labelled steps did not fit"
        return text


def trace_targets(trace: Trace, labels: str = "hard", head: str = "prm",
                  orm_label: str = "outcome") -> list[float | None]:
    """The training target of every step: a float, or None (unknown or not trained on)."""
    values = trace.hard_labels if labels == "hard" else trace.soft_labels
    if head == "prm":
        return [None if v is None else float(v) for v in values]
    outcome = None
    if labels == "soft" and values[-1] is not None:
        outcome = float(values[-1])
    elif orm_label == "outcome" and trace.outcome_label is not None:
        outcome = float(trace.outcome_label)
    elif all(v is not None for v in trace.hard_labels):
        outcome = float(all(v == 1 for v in trace.hard_labels))
    return [None] * (len(values) - 1) + [outcome]


def build_examples(model: RewardModel, traces: list[Trace], *, labels: str = "hard",
                   orm_label: str = "outcome", last_step_only: bool = False) -> tuple[list[dict], DataReport]:
    """Tokenize traces into training examples: input_ids, step_positions and labels
    (target, UNKNOWN for an unknown label, PADDING for an ORM's non-final steps, and with
    `last_step_only` for every PRM step but the last). A PRM trace that lost steps to
    truncation gets one more masked entry, TRUNCATED, so that metrics can leave its first
    error out."""
    head = model.config.head
    report = DataReport(traces=len(traces))
    encoded = model.step_tokenizer.encode_many([(t.problem, t.step_texts) for t in traces])
    feature_names = model.step_feature_names
    if feature_names and traces and not any(step.verdicts for t in traces for step in t.steps):
        raise ValueError(f"the model reads step features ({', '.join(feature_names)}) from checker verdicts, "
                         "but no step of these traces has a verdict: run `prm check` on them first")
    examples = []
    for trace, enc in zip(traces, encoded):
        targets = trace_targets(trace, labels, head, orm_label)
        if last_step_only and head == "prm":
            targets = [None] * (len(targets) - 1) + targets[-1:]
        if all(t is None for t in targets):
            report.skipped_unlabeled += 1
            continue
        if enc.dropped:
            report.dropped_steps += enc.dropped
            report.truncated_traces += 1
        kept = targets[:enc.kept]
        if head in ("orm", "implicit") or last_step_only:
            values = [PADDING] * (enc.kept - 1) + [kept[-1]] if enc.dropped == 0 else []
        else:
            values = [UNKNOWN if t is None else t for t in kept]
        known = [v for v in values if v >= 0]
        if not known:
            if enc.dropped:
                report.skipped_truncated += 1
            else:
                report.skipped_unlabeled += 1
            continue
        report.used += 1
        report.labeled_steps += len(known)
        report.positive += sum(known)
        report.unknown_masked += sum(v == UNKNOWN for v in values)
        positions = list(enc.step_positions)
        if enc.dropped and head == "prm":
            positions.append(positions[-1])
            values.append(TRUNCATED)
        example = {"input_ids": enc.input_ids, "step_positions": positions, "labels": values,
                   "answer_start": enc.answer_start, "problem": trace.problem}
        if feature_names:  # checker verdicts as inputs (prm.reward.step_features)
            rows = step_feature_values(trace.steps, feature_names)[:enc.kept]
            example["step_features"] = rows + [[0.0] * len(feature_names)] * (len(positions) - len(rows))
        examples.append(example)
    return examples, report


def preference_pairs(examples: list[dict]) -> list[dict]:
    """DPO pairs for an implicit PRM: within each problem, correct solutions (outcome 1) paired
    with incorrect ones (outcome 0), round robin, as many pairs as the larger side has
    solutions so every solution takes part. A pair is the chosen example with the rejected
    one under "rejected"; problems whose solutions are all right or all wrong give none."""
    groups: dict[str, tuple[list, list]] = {}
    for example in examples:
        outcome = max(example["labels"])  # one known label per implicit/ORM example, at its last step
        if outcome in (0.0, 1.0):
            groups.setdefault(example["problem"], ([], []))[int(outcome == 0.0)].append(example)
    pairs = []
    for right, wrong in groups.values():
        for i in range(max(len(right), len(wrong)) if right and wrong else 0):
            pairs.append({**right[i % len(right)], "rejected": wrong[i % len(wrong)]})
    return pairs


class StepCollator:
    """Pads a batch of examples to its own longest sequence (dynamic padding). Preference pairs
    (examples with a "rejected" example) become one batch: the chosen rows, then the rejected
    ones, and "pairs" (how many)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        pairs = None
        if features and "rejected" in features[0]:
            pairs = len(features)
            features = list(features) + [f["rejected"] for f in features]
        batch = [EncodedSteps(f["input_ids"], f["step_positions"], len(f["step_positions"]),
                              answer_start=f.get("answer_start", 0), features=f.get("step_features"))
                 for f in features]
        padded = pad_batch(batch, self.pad_token_id, labels=[f["labels"] for f in features], answer_start=True)
        if pairs is not None:
            padded["pairs"] = pairs
        return padded


# -- metrics ------------------------------------------------------------------------------

def step_metrics(probabilities: list[list[float]], targets: list[list[float | None]],
                 threshold: float = 0.5, complete: list[bool] | None = None) -> dict[str, float]:
    """Step-level metrics of predicted probabilities against targets (None = unknown).

    accuracy: (p >= threshold) against (target >= 0.5). auroc: scikit-learn's ROC AUC of p
    for good steps. bad_step_recall: share of bad steps predicted bad. brier: mean squared
    error against the (possibly soft) targets. first_error_accuracy: share of traces whose
    first predicted-bad step is the first bad step (or both none); traces whose first error
    is unknown (an unknown label before any bad one) or that lost steps to truncation
    (`complete` False) are left out; also reported separately for traces with and without
    an error.
    """
    from sklearn.metrics import roc_auc_score

    p_all, t_all = [], []
    hits = {"all": [], "with_error": [], "without_error": []}
    for index, (probs, tgts) in enumerate(zip(probabilities, targets)):
        pairs = [(p, t) for p, t in zip(probs, tgts) if t is not None]
        p_all += [p for p, _ in pairs]
        t_all += [t for _, t in pairs]
        if complete is not None and not complete[index]:
            continue
        gold = first_error([None if t is None else int(t >= 0.5) for t in tgts])
        if gold is None:
            continue
        predicted = next((i for i, p in enumerate(probs) if p < threshold), -1)
        hits["all"].append(predicted == gold)
        hits["with_error" if gold >= 0 else "without_error"].append(predicted == gold)
    if not t_all:
        return {"steps": 0}
    p, t = np.asarray(p_all, dtype=float), np.asarray(t_all, dtype=float)
    good = t >= 0.5
    predicted_good = p >= threshold
    metrics = {
        "steps": int(len(t)),
        "accuracy": float(np.mean(predicted_good == good)),
        "auroc": float(roc_auc_score(good, p)) if 0 < good.sum() < len(good) else float("nan"),
        "bad_step_recall": float(np.mean(~predicted_good[~good])) if (~good).any() else float("nan"),
        "positive_rate": float(np.mean(good)),
        "predicted_positive_rate": float(np.mean(predicted_good)),
        "brier": float(np.mean((p - t) ** 2)),
    }
    for name, key in (("all", "first_error_accuracy"), ("with_error", "first_error_accuracy_with_error"),
                      ("without_error", "first_error_accuracy_without_error")):
        metrics[key] = float(np.mean(hits[name])) if hits[name] else float("nan")
    return metrics


def _metrics_from_eval(eval_pred, threshold: float, head: str) -> dict:
    logits = np.asarray(eval_pred.predictions, dtype=float)
    labels = np.asarray(eval_pred.label_ids, dtype=float)
    probs, targets, complete = [], [], []
    for row_logits, row_labels in zip(logits, labels):
        steps = (row_labels != PADDING) & (row_labels != TRUNCATED)
        probs.append((1.0 / (1.0 + np.exp(-row_logits[steps]))).tolist())
        targets.append([None if v == UNKNOWN else float(v) for v in row_labels[steps]])
        complete.append(not bool((row_labels == TRUNCATED).any()))
    metrics = step_metrics(probs, targets, threshold, complete)
    if head in ("orm", "implicit"):
        metrics = {k: v for k, v in metrics.items() if not k.startswith("first_error")}
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}


# -- the trainer --------------------------------------------------------------------------

class RewardTrainer(Trainer):
    """`transformers.Trainer` for `RewardModel` on `Trace` records.

    model: a `RewardModel` (trained with its own `config.options`: head, label type,
    objective, ...), or a backbone name/path, built with `model_options` after the seed is set
    (so the same seed gives the same head). train_traces / eval_traces: labelled traces (eval
    may also be a dict of name -> traces). After construction, `train_report` /
    `eval_report` say what was used.
    """

    def __init__(self, model: RewardModel | str, args: RewardTrainerConfig | None = None,
                 train_traces: list[Trace] | None = None,
                 eval_traces: list[Trace] | dict[str, list[Trace]] | None = None,
                 callbacks: list[TrainerCallback] | None = None,
                 model_options: RewardModelOptions | None = None, **kwargs):
        args = args or RewardTrainerConfig(output_dir="reward_model")
        if not train_traces:
            raise ValueError("train_traces is required")
        if isinstance(model, str):
            set_seed(args.seed)  # the new head's initialisation is part of the run
            model = RewardModel.from_backbone(model, model_options)
        elif model_options is not None:
            raise ValueError("model_options are for a backbone name; a RewardModel keeps its own config.options")
        labels = model.config.label_type
        implicit = model.config.head == "implicit"
        if args.freeze_backbone:
            if implicit:
                raise ValueError("an implicit PRM has no head: freeze_backbone would leave nothing to train")
            model.backbone.requires_grad_(False)
        if args.disable_dropout:
            for module in model.backbone.modules():
                if isinstance(module, nn.Dropout):
                    module.p = 0.0

        train_set, self.train_report = build_examples(model, train_traces, labels=labels, orm_label=args.orm_label,
                                                      last_step_only=args.train_on_last_step_only)
        if not train_set:
            raise ValueError(f"no trace has {labels} labels to train on ({self.train_report.summary()})")
        _log_report(self.train_report, "train")
        self.pairs = None
        if implicit and model.config.implicit_loss == "dpo":
            train_set = preference_pairs(train_set)
            self.pairs = len(train_set)
            if not train_set:
                raise ValueError("implicit_loss=dpo needs problems with both a correct and an incorrect solution "
                                 f"among the training traces; none has both ({self.train_report.summary()})")
            logger.info("DPO: %d preference pairs", self.pairs)
        self.eval_report = None
        eval_set = None
        if isinstance(eval_traces, dict):
            eval_set = {name: build_examples(model, traces, labels=labels, orm_label=args.orm_label)[0]
                        for name, traces in eval_traces.items()}
        elif eval_traces:
            eval_set, self.eval_report = build_examples(model, eval_traces, labels=labels, orm_label=args.orm_label)
            _log_report(self.eval_report, "eval")

        self.pos_weight = args.pos_weight
        if self.pos_weight is None and args.balance_classes:
            good = self.train_report.positive
            bad = self.train_report.labeled_steps - good
            self.pos_weight = bad / good if good > 0 else None

        callbacks = list(callbacks or []) + [SingleClassWarning()]
        if args.early_stopping_patience is not None:
            callbacks.append(EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold))
        threshold, head = args.threshold, model.config.head
        super().__init__(
            model=model, args=args, data_collator=StepCollator(model.tokenizer.pad_token_id),
            train_dataset=train_set, eval_dataset=eval_set, processing_class=model.tokenizer,
            compute_metrics=lambda pred: _metrics_from_eval(pred, threshold, head),
            callbacks=callbacks, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        pairs = inputs.pop("pairs", None)
        outputs = model(**inputs)
        if pairs is not None:  # implicit PRM, DPO: r(y) sits at each row's one labelled position
            rewards = torch.where(labels >= 0, outputs.logits, torch.zeros_like(outputs.logits)).sum(dim=1)
            loss = dpo_loss(rewards[:pairs], rewards[pairs:])
        else:
            objective = "bce" if self.model.config.head == "implicit" else self.model.config.objective
            loss = step_loss(outputs.logits, labels, objective, self.pos_weight)
        return (loss, outputs) if return_outputs else loss

    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint:  # the data report is already in the logs of the first run
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        report = self.train_report
        if self.pairs is not None:
            self.log({"train_pairs": self.pairs})
        self.log({"train_traces": report.used, "train_labeled_steps": report.labeled_steps,
                  "train_positive_rate": report.positive_rate or 0.0,
                  "train_unknown_masked": report.unknown_masked,
                  "train_dropped_steps": report.dropped_steps,
                  "pos_weight": self.pos_weight if self.pos_weight is not None else 1.0})
        return super().train(**kwargs)


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` in `folder` that was saved completely, or None.

    The `Trainer` writes a checkpoint's `trainer_state.json` last, so a checkpoint whose state
    file is missing or unreadable was cut short (a kill during the save); it is skipped, with a
    warning, in favour of the previous one.
    """
    folder = Path(folder)
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
        suffix = path.name.removeprefix("checkpoint-")
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            return str(path)
        except (OSError, ValueError):
            logger.warning("%s was not saved completely (no readable trainer_state.json); skipping it", path)
    return None


def _log_report(report: DataReport, name: str) -> None:
    lost = report.dropped_steps or report.skipped_unlabeled or report.skipped_truncated
    logger.log(logging.WARNING if lost else logging.INFO, report.summary(name))


class SingleClassWarning(TrainerCallback):
    """Warns loudly when an evaluation finds the model predicting one class for every step:
    a reward model that calls every step good has learned nothing a user can use, and its
    accuracy alone (the share of good steps) hides it."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        for key, rate in (metrics or {}).items():
            if key.endswith("predicted_positive_rate") and rate in (0.0, 1.0):
                name = key.removesuffix("predicted_positive_rate").removeprefix("eval_").rstrip("_") or "eval"
                message = (f"WARNING: on the {name} data the model predicts every step "
                           f"{'good' if rate == 1.0 else 'bad'} (threshold {args.threshold}); it has not "
                           "learned to tell steps apart yet (try more epochs, a higher learning rate, "
                           "balance_classes, or lm_features)")
                logger.warning(message)
                print(message, file=sys.stderr, flush=True)


class JsonlLogCallback(TrainerCallback):
    """Appends every log record (loss, learning rate, eval metrics, ...) to a JSONL file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"step": state.global_step, "epoch": state.epoch, **logs}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")
