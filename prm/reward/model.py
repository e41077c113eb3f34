"""Reward models: a transformer backbone, its tokenizer and one saved config, scoring steps.

`RewardModel` is the family; each kind of reward model is its own class with its own
`forward` and `loss`:

- `HeadRewardModel` (this module): a linear head read at the end of steps.
  - PRM (``head="prm"``): the head is read at the end of every step (see
    `prm.reward.step_tokenizer` for how the positions are found) and trained on every step's label.
  - ORM (``head="orm"``): the same model trained on one label per solution, read at the end
    of its last step. Scoring an ORM still reads every step end: each value is the ORM's
    estimate that the solution will turn out right given the prefix so far, and the solution
    score is the last one (its default aggregation is ``"last"``).
  What the head reads at each step end (hidden state | LM features | step features) is
  written down once, in `HeadInputs`.
- `ImplicitPRM` (this module; its arithmetic: `prm.reward.implicit`), ``head="implicit"``: no
  head; the backbone is a causal LM trained on outcome labels with the reward
  r(y) = beta * log(pi_theta(y) / pi_ref(y)) against a frozen reference LM pi_ref
  (`reference`) held inside the model, and a step's score is sigmoid of the running value q_t.

`RewardModel.from_backbone(name, options)` and `RewardModel.from_pretrained(folder)` build or
load the class that `options.head` names (`reward_model_class`), so callers need not know
which one they get. Code that uses a reward model asks it what it can do instead of reading
its head: `trains_on_step_labels`, `trains_on_pairs`, `loss(...)`, `freeze_backbone()`,
`missing_labels(...)`, and `token_rewards` (`prm.reward.scorer.TokenRewardScorer`, an implicit
PRM's token-level rewards).

The backbone is any Hugging Face causal LM or encoder loaded with `AutoModel` (the base
model without its LM head, so no vocabulary-sized projection is computed), unless
`lm_features` asks for a causal LM's token log-probabilities (`lm_step_features`) or the
model is an implicit PRM. Every class is a `PreTrainedModel`, so
`save_pretrained`/`from_pretrained`, the HF `Trainer`, accelerate, DDP, FSDP and DeepSpeed
handle it with no extra code. The saved folder holds the tokenizer, the weights and one JSON
config (`config.json`, `RewardModelConfig`) recording the head, the step-marking method, the
label type, the objective, the aggregation and the backbone's name and config; every class
reads and writes that same format.

A `RewardModel` is a `prm.reward.scorer.StepScorer`, like the published formats in
`prm.reward.published`, so scoring code does not care which it has.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedConfig,
                          PreTrainedModel)
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import ModelOutput

from prm.aggregate import AGGREGATIONS
from prm.reward.implicit import IMPLICIT_LOSSES, dpo_loss, running_values, token_log_ratios
from prm.reward.prefix_cache import cached_causal_check
from prm.reward.scorer import BatchedStepScorer
from prm.reward.step_features import INITIAL_WEIGHTS, parse_step_features, step_feature_values
from prm.reward.step_tokenizer import (DEFAULT_MARKER_TOKEN, STEP_MARKERS, EncodedSteps, StepTokenizer,
                                     add_marker_token, pad_batch)

logger = logging.getLogger(__name__)

HEADS = ("prm", "orm", "implicit")  # the class of each: `reward_model_class`
LABEL_TYPES = ("hard", "soft")
OBJECTIVES = ("bce", "mse")


# -- the model ------------------------------------------------------------------------------

@dataclass
class RewardModelOptions:
    r"""
    Every setting of a reward model, defined once: `RewardModel.from_backbone` takes it,
    `RewardModelConfig` saves it with the weights, and `prm train` generates its options from it.

    Parameters:
        head (`str`, defaults to `"prm"`):
            `"prm"`: a label at the end of every step. `"orm"`: one label per solution, read at the
            end of its last step. `"implicit"`: an implicit PRM (`prm.reward.implicit`): the causal
            backbone is trained on outcome labels with r(y) = beta * log(pi_theta(y) / pi_ref(y)), and
            every step gets a score from its log-ratios with no step label (no Monte Carlo rollouts).
        label_type (`str`, defaults to `"hard"`):
            Which step labels it is trained on: `"hard"` (`Step.hard_label`, 0/1) or `"soft"`
            (`Step.soft_label`, e.g. the Monte Carlo fraction of correct completions).
        objective (`str`, defaults to `"bce"`):
            `"bce"`: binary cross-entropy against hard or soft targets (for two classes the same
            as the cross-entropy against the target distribution). `"mse"`: a regression head,
            squared error between the predicted probability and the target.
        aggregation (`str` or `None`, defaults to `None`):
            Default step -> solution aggregation (`prm.aggregate.AGGREGATIONS`); `None` means
            `"min"` for a PRM and `"last"` for an ORM.
        prompt_template (`str`, defaults to `"{problem}\n"`):
            How the problem is written before the steps (tiny-gsm's traces:
            `completers.text.PLAIN_TEMPLATE`).
        step_separator (`str`, defaults to `"\n"`):
            Text appended to every step before tokenizing it (`step_marker="last-token"`). If it
            tokenizes to nothing (BERT drops `"\n"`), the tokenizer's sep/eos token is used.
        step_marker (`str`, defaults to `"last-token"`):
            `"last-token"`: the label sits on the last token of `step + separator`.
            `"special-token"`: a dedicated token (`marker_token`) is added to the tokenizer and
            follows every step; the label sits on it.
        marker_token (`str` or `None`, defaults to `None`):
            The marker for `step_marker="special-token"` (default `"<|step|>"`).
        max_length (`int`, defaults to `512`):
            Longest sequence in tokens (prompt + steps). Longer traces lose whole steps from the
            end, counted and reported; those steps get no score.
        max_prompt_length (`int` or `None`, defaults to `None`):
            Longest prompt in tokens; a longer one keeps its last tokens (and a leading special
            token), as TRL's PRMTrainer did. Counted in the data report.
        max_completion_length (`int` or `None`, defaults to `None`):
            Most tokens for the steps together (TRL's PRMConfig option of that name). TRL cut
            the token list mid-step; here whole steps are dropped from the end, counted and
            reported like `max_length`.
        head_dropout (`float`, defaults to `0.0`):
            Dropout before the head.
        lm_features (`bool`, defaults to `False`):
            For a causal-LM backbone: also give the head, per step, the lowest log-probability
            the backbone's LM assigns to a token of the step and of the answer so far
            (`lm_step_features`). A small backbone cannot learn to re-check a calculation from
            a few thousand labels, but a wrong result is an unlikely token to the LM that can
            compute it. With LoRA (`lora_r > 0`) the log-probabilities come from the base LM
            (the backbone with its adapters off, unchanged by training), so the backbone can
            learn without the head losing the LM's judgement.
        lora_r, lora_alpha, lora_dropout, lora_target_modules:
            With `lora_r > 0` the backbone is wrapped in `peft` LoRA adapters (rank `lora_r`,
            scale `lora_alpha / lora_r`, on `lora_target_modules`); the backbone's own weights
            stay frozen and only the adapters and the head train. The saved folder holds the
            adapters with the model; `RewardModel.merge_lora()` folds them into the backbone.
        step_features (`str`, defaults to `""`):
            Comma-separated per-step input features read from the records' checker verdicts
            (`prm.reward.step_features`: refuted, refuted_so_far, verified, checked), given to
            the head next to the hidden state: a hybrid PRM. Training data and scored traces
            must carry `Step.verdicts` (run `prm check` first); score with `score_traces`, or
            pass (problem, steps, feature rows) items to `score_many`.
        reference (`str` or `None`, defaults to `None`):
            `head="implicit"`: the frozen reference LM pi_ref (short name, folder or hub name; it
            must share the backbone's tokenizer). `None`: a frozen copy of the backbone as loaded.
            Its weights are saved with the model, so a saved implicit PRM loads on its own.
        beta (`float`, defaults to `0.1`):
            `head="implicit"`: the scale of the reward, r = beta * (sum of token log-ratios).
        implicit_loss (`str`, defaults to `"ce"`):
            `head="implicit"`: `"ce"`, cross-entropy of sigmoid(r(y)) against each trace's outcome
            label; `"dpo"`, DPO on pairs of a correct and an incorrect solution of the same problem.
    """

    head: str = field(default="prm", metadata={"help": "prm: a score per step; orm: one per solution; implicit: an implicit PRM from outcome labels.",
                                                 "choices": list(HEADS)})
    label_type: str = field(default="hard", metadata={"help": "Train on hard or soft step labels.",
                                                        "choices": list(LABEL_TYPES), "aliases": ["--labels"]})
    objective: str = field(default="bce", metadata={"help": "bce (cross-entropy) or mse (regression).",
                                                      "choices": list(OBJECTIVES)})
    aggregation: str | None = field(default=None, metadata={
        "help": "Step -> solution aggregation saved with the model (default: min for a PRM, last for an ORM).",
        "choices": list(AGGREGATIONS)})
    prompt_template: str = field(default="{problem}\n", metadata={
        "help": "How the problem is written before the steps (tiny-gsm: 'Question: {problem}\\nAnswer:\\n')."})
    step_separator: str = field(default="\n", metadata={"help": "Text appended to every step."})
    step_marker: str = field(default="last-token", metadata={
        "help": "Label on the last token of step+separator, or on an added marker token.",
        "choices": list(STEP_MARKERS)})
    marker_token: str | None = field(default=None, metadata={"help": "Marker for step_marker=special-token."})
    max_length: int = field(default=512, metadata={"help": "Longest sequence; whole steps are dropped beyond it."})
    max_prompt_length: int | None = field(default=None, metadata={
        "help": "Longest prompt in tokens; a longer one keeps its last tokens."})
    max_completion_length: int | None = field(default=None, metadata={
        "help": "Most tokens for all steps together; whole steps beyond it are dropped."})
    head_dropout: float = field(default=0.0, metadata={"help": "Dropout before the head."})
    lm_features: bool = field(default=False, metadata={
        "help": "Causal-LM backbones: the head also reads the LM's token log-probabilities."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank of the backbone's adapters (0: no LoRA)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: str = field(default="all-linear", metadata={
        "help": "Backbone modules that get adapters: 'all-linear' or comma-separated names (q_proj,v_proj)."})
    step_features: str = field(default="", metadata={
        "help": "Checker verdicts as head inputs, read from Step.verdicts (prm check first): comma-separated "
                "from refuted, refuted_so_far, verified, checked."})
    reference: str | None = field(default=None, metadata={
        "help": "head=implicit: the frozen reference LM (default: a frozen copy of the backbone)."})
    beta: float = field(default=0.1, metadata={"help": "head=implicit: reward scale, r = beta * sum of log-ratios."})
    implicit_loss: str = field(default="ce", metadata={
        "help": "head=implicit: ce (outcome-label cross-entropy) or dpo (correct/incorrect pairs per problem).",
        "choices": list(IMPLICIT_LOSSES), "aliases": ["--loss"]})

    def __post_init__(self):
        check_options(self)


def check_options(options) -> None:
    """Raise ValueError naming the field when a setting is not one of its choices."""
    for f in fields(RewardModelOptions):
        allowed = f.metadata.get("choices")
        value = getattr(options, f.name)
        if allowed is not None and value is not None and value not in allowed:
            raise ValueError(f"{f.name} must be one of {tuple(allowed)}, got {value!r}")
    parse_step_features(options.step_features)


class RewardModelConfig(RewardModelOptions, PreTrainedConfig):
    """Everything needed to rebuild a reward model and to use it the way it was trained: the
    `RewardModelOptions`, the backbone's own config (`transformer_config`, nested) and the
    name or path it was initialised from (`backbone_name`)."""

    model_type = "prm-reward-model"
    sub_configs_defaults = {"transformer_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    transformer_config: dict | PreTrainedConfig | None = None
    backbone_name: str | None = None
    reference_config: dict | None = None  # head=implicit with a reference other than the backbone

    def __post_init__(self, **kwargs):
        PreTrainedConfig.__post_init__(self, **kwargs)
        check_options(self)

    @property
    def options(self) -> RewardModelOptions:
        return RewardModelOptions(**{f.name: getattr(self, f.name) for f in fields(RewardModelOptions)})


AutoConfig.register(RewardModelConfig.model_type, RewardModelConfig, exist_ok=True)


@dataclass
class RewardModelOutput(ModelOutput):
    """loss: when labels are given. logits: (batch, steps), one logit per step position."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


# -- labels and the loss that masks them ----------------------------------------------------
# A label tensor holds one entry per step position: a target in [0, 1], or one of these
# negative sentinels, which `step_loss` masks out (`prm.reward.training.build_examples` writes
# them; its metrics tell them apart).

UNKNOWN = -1.0  # a step whose label nobody decided: masked in the loss, kept apart in metrics
PADDING = -100.0  # no step here (padding, or an ORM's or implicit PRM's non-final step)
TRUNCATED = -2.0  # an extra masked entry after the last kept step: this trace lost steps


def step_loss(logits: torch.Tensor, labels: torch.Tensor, objective: str = "bce",
              pos_weight: float | None = None) -> torch.Tensor:
    """Mean loss over labelled steps. Labels < 0 (the sentinels above) are masked out.

    bce: binary cross-entropy with logits against hard (0/1) or soft (fraction) targets; for
    two classes this equals the cross-entropy against the target distribution. mse: squared
    error between sigmoid(logit) and the target. pos_weight scales the loss of the positive
    part of each target (class imbalance).
    """
    mask = labels >= 0
    if not bool(mask.any()):
        return logits.sum() * 0.0
    x, y = logits[mask].float(), labels[mask].float()
    if objective == "bce":
        weight = None if pos_weight is None else torch.tensor(pos_weight, dtype=x.dtype, device=x.device)
        return F.binary_cross_entropy_with_logits(x, y, pos_weight=weight)
    if objective == "mse":
        error = (torch.sigmoid(x) - y) ** 2
        if pos_weight is not None:
            error = error * (1.0 + (pos_weight - 1.0) * y)
        return error.mean()
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def outcome_labels_at_last_step(outcomes: torch.Tensor, step_positions: torch.Tensor) -> torch.Tensor:
    """Per-step labels (batch, steps) from one outcome label per row (batch,): the outcome at
    each row's last step position (the last one that is not padding, -1), PADDING elsewhere."""
    labels = torch.full(step_positions.shape, PADDING, dtype=torch.float, device=step_positions.device)
    last = ((step_positions >= 0).sum(dim=1) - 1).clamp(min=0)
    rows = torch.arange(step_positions.size(0), device=step_positions.device)
    labels[rows, last] = outcomes.to(labels.device, torch.float)
    return labels


# -- the family -----------------------------------------------------------------------------

class RewardModel(BatchedStepScorer, PreTrainedModel):
    """This project's reward models: a backbone, its tokenizer and a `RewardModelConfig`.

    Build one with `RewardModel.from_backbone(name_or_path, RewardModelOptions(...))` and load a
    trained one with `RewardModel.from_pretrained(folder)`: both return the class that the
    options' `head` names (`reward_model_class`: `HeadRewardModel` or `ImplicitPRM`). Written once
    here: building from a pretrained backbone, saving and loading with the tokenizer, LoRA
    adapters, encoding (problem, steps) items and scoring padded batches with `forward`.

    A subclass provides `forward(input_ids, attention_mask, step_positions, labels, answer_start,
    ...)`, returning logits of shape (batch, steps) whose sigmoid is each step's score, and
    answers what the trainer and other users ask instead of reading the head's name:

    - `trains_on_step_labels`: trained on every step's label (True) or on one outcome label per
      solution at its last step (False);
    - `trains_on_pairs`: trained on (chosen, rejected) pairs of solutions (`RewardTrainer` then
      builds `preference_pairs`);
    - `loss(logits, labels, pos_weight=None, pairs=None)`: its training loss on `forward`'s logits;
    - `freeze_backbone()`: train only what sits on the backbone (refused when nothing does);
    - `missing_labels(traces, options)`: why these traces cannot train such a model, or None.
    """

    config_class = RewardModelConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    # the loss is a mean over one micro-batch's labelled steps: let the Trainer divide it by
    # the gradient-accumulation steps (it would not if it thought forward took num_items_in_batch)
    accepts_loss_kwargs = False

    trains_on_step_labels: bool = False
    trains_on_pairs: bool = False

    def __init__(self, config: RewardModelConfig):
        super().__init__(config)
        self.tokenizer = None
        self._step_tokenizer = None

    def _post_init_with_lora(self) -> None:
        """End of a subclass's __init__, once its modules exist: HF's post_init, then the LoRA wrap."""
        self.post_init()
        if self.config.lora_r > 0:
            # after post_init: its weight tying cannot find a Llama's tied embeddings under peft's
            # wrapper (PeftModel.model is the LoraModel's LlamaForCausalLM, not its .model)
            self.backbone = _with_lora(self.backbone, self.config)
            self._rename_tied_weights_under_lora()

    def _rename_tied_weights_under_lora(self) -> None:
        """The tied-weight map (a causal LM's lm_head tied to its embeddings) names the backbone's
        parameters as before the LoRA wrap ("backbone.lm_head.weight"); peft moved them under
        "backbone.base_model.model.", and loading a saved model would look for names that do not
        exist. Rename them to where they are."""
        tied = getattr(self, "all_tied_weights_keys", None)
        if not tied:
            return
        names = set(dict(self.named_parameters(remove_duplicate=False)))

        def where(name: str) -> str:
            moved = name.replace("backbone.", "backbone.base_model.model.", 1)
            return moved if name not in names and moved in names else name

        self.all_tied_weights_keys = {where(target): where(source) for target, source in tied.items()}

    @property
    def aggregation(self) -> str:
        return self.config.aggregation

    def _init_weights(self, module):
        """The backbone (and a reference) arrive with loaded weights; only a head is initialised,
        by the subclass that has one."""

    @property
    def step_feature_names(self) -> list[str]:
        return parse_step_features(self.config.step_features)

    def merge_lora(self) -> "RewardModel":
        """Fold the LoRA adapters into the backbone's weights (same scores, no peft needed to load)."""
        if self.config.lora_r > 0:
            self.backbone = self.backbone.merge_and_unload()
            self.config.lora_r = 0
        return self

    def get_input_embeddings(self):
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.backbone.set_input_embeddings(value)

    # -- what the model can do (see the class docstring) -------------------------------------

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, pos_weight: float | None = None,
             pairs: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def freeze_backbone(self) -> None:
        """Stop the backbone's weights from training."""
        self.backbone.requires_grad_(False)

    @classmethod
    def missing_labels(cls, traces, options: RewardModelOptions) -> tuple[str, str] | None:
        """(reason, record field) when no trace carries a label this kind of model trains on."""
        raise NotImplementedError

    # -- building, saving, loading ---------------------------------------------------------

    @classmethod
    def _pretrained_modules(cls, path: str, options: RewardModelOptions, load_kwargs: dict) -> dict:
        """The pretrained modules of a new model, by constructor argument ("backbone", ...)."""
        raise NotImplementedError

    @classmethod
    def _default_aggregation(cls, options: RewardModelOptions) -> str:
        return "min"

    @classmethod
    def from_backbone(cls, name_or_path: str, options: RewardModelOptions | None = None,
                      **load_kwargs) -> "RewardModel":
        """A new reward model on a pretrained backbone: a short name (`prm.model_names`), a
        folder or a hub name, with `options` (defaults: `RewardModelOptions()`), of the class that
        `options.head` names. A head starts untrained. `load_kwargs` go to the backbone's
        `from_pretrained`."""
        from prm.model_names import resolve_model

        options = replace(options or RewardModelOptions())
        model_class = reward_model_class(options.head)
        if not issubclass(model_class, cls):
            raise ValueError(f"head={options.head!r} is a {model_class.__name__}, not a {cls.__name__}")
        path = resolve_model(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        modules = model_class._pretrained_modules(path, options, load_kwargs)
        backbone = modules["backbone"]
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
        if options.step_marker == "special-token":
            options.marker_token = options.marker_token or DEFAULT_MARKER_TOKEN
            if add_marker_token(tokenizer, options.marker_token):
                for module in modules.values():
                    module.resize_token_embeddings(len(tokenizer))
        positions = _max_positions(backbone.config, tokenizer)
        if positions is not None and options.max_length > positions:
            logger.warning("max_length %d exceeds the backbone's %d positions; using %d",
                           options.max_length, positions, positions)
            options.max_length = positions
        options.aggregation = options.aggregation or model_class._default_aggregation(options)
        reference = modules.get("reference")
        reference_config = reference.config.to_dict() if reference is not None and options.reference else None
        config = RewardModelConfig(transformer_config=backbone.config, backbone_name=name_or_path,
                                   attn_implementation=backbone.config._attn_implementation,
                                   reference_config=reference_config, **asdict(options))
        for module in modules.values():
            for part in module.modules():
                part._is_hf_initialized = True  # loaded weights: keep them out of post_init's initialisation
        model = model_class(config, **modules)
        model.tokenizer = tokenizer
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> "RewardModel":
        """A saved reward model (folder or hub name), as the class its saved `head` names."""
        config = kwargs.get("config")
        if not isinstance(config, RewardModelConfig):
            config = RewardModelConfig.from_pretrained(pretrained_model_name_or_path)
        model_class = reward_model_class(config.head)
        if cls is RewardModel:
            return model_class.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if not issubclass(model_class, cls):
            raise ValueError(f"{pretrained_model_name_or_path} holds a {model_class.__name__} (head={config.head!r}), "
                             f"not a {cls.__name__}; load it with RewardModel.from_pretrained")
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model.tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path)
        model.eval()
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.tokenizer is not None and kwargs.get("is_main_process", True):
            self.tokenizer.save_pretrained(save_directory)

    # -- encoding and scoring ---------------------------------------------------------------

    @property
    def step_tokenizer(self) -> StepTokenizer:
        if self.tokenizer is None:
            raise ValueError("this RewardModel has no tokenizer; set model.tokenizer")
        if self._step_tokenizer is None or self._step_tokenizer.tokenizer is not self.tokenizer:
            c = self.config
            self._step_tokenizer = StepTokenizer(
                self.tokenizer, prompt_template=c.prompt_template, step_separator=c.step_separator,
                step_marker=c.step_marker, marker_token=c.marker_token, max_length=c.max_length,
                max_prompt_length=c.max_prompt_length, max_completion_length=c.max_completion_length)
        return self._step_tokenizer

    def _encode_many(self, items):
        """(problem, steps) items, or (problem, steps, feature rows) for a model with step_features."""
        encoded = self.step_tokenizer.encode_many([(item[0], item[1]) for item in items])
        if self.step_feature_names:
            for item, enc in zip(items, encoded):
                if len(item) < 3 or len(item[2]) != len(item[1]):
                    raise ValueError(f"this model reads step features ({self.config.step_features}): give "
                                     "(problem, steps, one feature row per step) items, or score Trace "
                                     "records carrying checker verdicts with score_traces")
                enc.features = [list(row) for row in item[2][:enc.kept]]
        return encoded

    def score_traces(self, traces, batch_size=None, progress=False):
        """Fill `Step.score`; a model with step_features reads them from each step's verdicts."""
        names = self.step_feature_names
        if not names:
            return super().score_traces(traces, batch_size, progress)
        items = [(t.problem, t.step_texts, step_feature_values(t.steps, names)) for t in traces]
        for trace, values in zip(traces, self.score_many(items, batch_size, progress)):
            for step, value in zip(trace.steps, values):
                step.score = value
        return traces

    def score_prefixes(self, items, parents=None, batch_size=None):
        was_training = self.training
        self.eval()
        try:
            return super().score_prefixes(items, parents, batch_size)
        finally:
            if was_training:
                self.train()

    @torch.inference_mode()
    def _step_probabilities(self, batch: list[EncodedSteps]) -> list[list[float]]:
        was_training = self.training
        self.eval()
        inputs = pad_batch(batch, self.tokenizer.pad_token_id, answer_start=True)
        device = self.device
        logits = self(**{k: v.to(device) for k, v in inputs.items()}).logits.float()
        probs = torch.sigmoid(logits).cpu().tolist()
        if was_training:
            self.train()
        return [row[:e.kept] for row, e in zip(probs, batch)]


def reward_model_class(head: str) -> type[RewardModel]:
    """The class of a head: `HeadRewardModel` for "prm" and "orm", `ImplicitPRM` for "implicit".
    The one place where a head's name (saved in config.json) picks the code that runs it."""
    classes = {"prm": HeadRewardModel, "orm": HeadRewardModel, "implicit": ImplicitPRM}
    if head not in classes:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    return classes[head]


def _last_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Step positions (batch, 1) of the last real token of each row: `forward` without step_positions."""
    last = (attention_mask.sum(1) - 1) if attention_mask is not None else \
        torch.full((input_ids.size(0),), input_ids.size(1) - 1, device=input_ids.device)
    return last.view(-1, 1)


# -- PRM and ORM heads ----------------------------------------------------------------------

LM_FEATURES = ("step_min_logprob", "answer_min_logprob")


@dataclass(frozen=True)
class HeadInputs:
    """What a `HeadRewardModel`'s linear head reads at each step position, in this order, one
    weight column per number:

        [ hidden state (`hidden`) | LM features (`lm`: `LM_FEATURES`, with lm_features) |
          step features (`step`: the `step_features` names, in their order) ]

    The head is sized by `width`, `_init_weights` starts the `lm_columns` and `step_columns` at
    their chosen weights, and `forward` joins the inputs with `concat`: a saved head's weight is
    read in this layout, so it is written here and nowhere else."""

    hidden: int
    lm: int = 0
    step: int = 0

    @classmethod
    def of(cls, config: RewardModelConfig) -> "HeadInputs":
        return cls(hidden=_hidden_size(config.transformer_config),
                   lm=len(LM_FEATURES) if config.lm_features else 0,
                   step=len(parse_step_features(config.step_features)))

    @property
    def width(self) -> int:
        return self.hidden + self.lm + self.step

    @property
    def lm_columns(self) -> slice:
        return slice(self.hidden, self.hidden + self.lm)

    @property
    def step_columns(self) -> slice:
        return slice(self.hidden + self.lm, self.width)

    def concat(self, hidden: torch.Tensor, lm: torch.Tensor | None = None,
               step: torch.Tensor | None = None) -> torch.Tensor:
        """The head's input (..., width) from its parts (each (..., its count)), in layout order."""
        parts = [hidden] + [part.to(hidden.dtype) for part, width in ((lm, self.lm), (step, self.step)) if width]
        return torch.cat(parts, dim=-1) if len(parts) > 1 else hidden


class HeadRewardModel(RewardModel):
    """A PRM or ORM: a backbone (`AutoModel`) and a linear head giving one logit per step position.

    `forward` takes input_ids, attention_mask and step_positions (padding -1), and with
    `lm_features` answer_start, with `step_features` the feature rows; it returns logits of
    shape (batch, steps). The head reads `HeadInputs`.
    """

    def __init__(self, config: RewardModelConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        if backbone is None:
            auto = AutoModelForCausalLM if config.lm_features else AutoModel
            backbone = auto.from_config(config.transformer_config)
        self.backbone = backbone
        if getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None  # an encoder's [CLS] pooler is unused: skip its compute and weights
        self.dropout = nn.Dropout(config.head_dropout)
        self.head_inputs = HeadInputs.of(config)
        self.head = nn.Linear(self.head_inputs.width, 1)
        self._post_init_with_lora()

    @classmethod
    def _pretrained_modules(cls, path, options, load_kwargs):
        auto = AutoModelForCausalLM if options.lm_features else AutoModel
        return {"backbone": auto.from_pretrained(path, **load_kwargs)}

    @classmethod
    def _default_aggregation(cls, options):
        return "last" if options.head == "orm" else "min"

    def _init_weights(self, module):
        if module is not getattr(self, "head", None):
            return
        std = getattr(self.config.transformer_config, "initializer_range", 0.02)
        nn.init.normal_(module.weight, mean=0.0, std=std)
        nn.init.zeros_(module.bias)
        layout = self.head_inputs
        with torch.no_grad():
            # Start from the LM's own surprise (an unlikely token lowers the score); an optimizer's
            # steps of about lr each would take thousands of steps to get there.
            module.weight[0, layout.lm_columns] = 1.0
            # a refutation starts as evidence of a bad step (INITIAL_WEIGHTS)
            module.weight[0, layout.step_columns] = torch.tensor([INITIAL_WEIGHTS[n] for n in self.step_feature_names])

    # -- what the model can do --

    @property
    def trains_on_step_labels(self) -> bool:
        return self.config.head == "prm"

    def loss(self, logits, labels, pos_weight=None, pairs=None):
        """`step_loss` with the model's objective over the labelled step positions."""
        if pairs is not None:
            raise ValueError("a PRM or ORM head is not trained on preference pairs")
        return step_loss(logits, labels, self.config.objective, pos_weight)

    @classmethod
    def missing_labels(cls, traces, options):
        if options.head == "orm":
            has = any(t.outcome_label is not None or all(s.hard_label is not None for s in t.steps) for t in traces)
            if options.label_type == "soft":
                has = has or any(t.steps[-1].soft_label is not None for t in traces)
            field_name = "outcome_label"
        else:
            field_name = "hard_label" if options.label_type == "hard" else "soft_label"
            has = any(getattr(s, field_name) is not None for t in traces for s in t.steps)
            field_name = f"steps[].{field_name}"
        if has:
            return None
        return f"no record has a {options.label_type} label to train a {options.head.upper()} on", field_name

    def merge_lora(self) -> "HeadRewardModel":
        if self.config.lora_r > 0 and self.config.lm_features:
            raise ValueError("this model reads LM features from the backbone without its adapters; "
                             "merging them would change its scores")
        return super().merge_lora()

    # -- forward --

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                step_positions: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                answer_start: torch.Tensor | None = None, step_features: torch.Tensor | None = None,
                **kwargs) -> RewardModelOutput:
        if step_positions is None:
            step_positions = _last_positions(input_ids, attention_mask)
        if self.config.lm_features:
            output = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            hidden = output.hidden_states[-1]
        else:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        index = step_positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        features = self.dropout(hidden.gather(1, index))
        lm = None
        if self.config.lm_features:
            if answer_start is None:
                answer_start = torch.zeros(input_ids.size(0), dtype=torch.long, device=input_ids.device)
            lm = lm_step_features(self._base_lm_logits(output, input_ids, attention_mask), input_ids,
                                  step_positions, answer_start,
                                  include_end=self.config.step_marker != "special-token")
        if self.step_feature_names and step_features is None:
            raise ValueError(f"this model reads step features ({self.config.step_features}); "
                             "pass step_features (from Step.verdicts, see prm.reward.step_features)")
        logits = self.head(self.head_inputs.concat(features, lm, step_features)).squeeze(-1)
        loss = self.loss(logits, labels) if labels is not None else None
        return RewardModelOutput(loss=loss, logits=logits)

    def _base_lm_logits(self, output, input_ids, attention_mask) -> torch.Tensor:
        """The logits the LM features are read from: the backbone's own, except under LoRA, where
        they come from the base LM, the backbone with its adapters switched off. The adapters then
        shape the hidden state the head reads while the log-probabilities stay those of the
        unchanged LM (fine-tuning them away was what made full fine-tuning with LM features fail).
        (Not an implicit PRM's reference: that is a separate, frozen model.)"""
        if self.config.lora_r <= 0:
            return output.logits
        with torch.no_grad(), self.backbone.disable_adapter():
            return self.backbone(input_ids=input_ids, attention_mask=attention_mask).logits

    # -- incremental prefix scoring (prm.reward.prefix_cache) --

    def _causal_backbone(self):
        """The backbone, when it is causal and the head reads only its hidden states (no
        lm_features, no step_features): then search reuses each prefix's KV cache."""
        if self.config.lm_features or self.step_feature_names:
            return None
        return self.backbone if cached_causal_check(self, self.backbone) else None

    def _step_head(self, hidden):
        return torch.sigmoid(self.head(hidden).squeeze(-1))  # eval mode: dropout is the identity


# -- implicit PRMs --------------------------------------------------------------------------

class ImplicitPRM(RewardModel):
    r"""An implicit PRM (``head="implicit"``; the arithmetic and why: `prm.reward.implicit`).

    Two causal LMs in one model: `backbone`, pi_theta, the one that trains, and `reference`,
    pi_ref, frozen (never trained, always in eval mode), so one forward pass computes both
    models' log-probabilities on the same batch. There is no head.

    `forward(input_ids, attention_mask=None, step_positions=None, labels=None, answer_start=None)`
    returns as logits the running values q_t (batch, steps), beta times the sum of the token
    log-ratios up to each step position (default: the last real token of each row), so a
    step's score is sigmoid(q_t) and q at the last step is the outcome reward r(y). Tokens
    before `answer_start` (the prompt; default: all but the first token count) are left out.
    With `labels` the output also has the loss (`loss`): labels per step position (batch,
    steps), the outcome at the last step and sentinels elsewhere as `RewardTrainer` builds
    them, or one outcome label per row (batch,), 0/1 or soft, applied to r(y). An online
    trainer (PRIME) thus needs only

        out = prm(input_ids, attention_mask, answer_start=prompt_lengths, labels=outcomes)
        out.loss.backward()  # cross-entropy of sigmoid(r(y)) against the outcome labels
        with torch.no_grad():  # dense token rewards for the policy: beta * log(pi_theta / pi_ref)
            rewards = prm.token_log_ratios(input_ids, attention_mask, prompt_lengths) * prm.beta
    """

    def __init__(self, config: RewardModelConfig, backbone: PreTrainedModel | None = None,
                 reference: PreTrainedModel | None = None):
        super().__init__(config)
        self.reference = reference if reference is not None else _reference_from_config(config)
        self.reference.requires_grad_(False)
        self.reference.eval()
        self.backbone = backbone if backbone is not None else \
            AutoModelForCausalLM.from_config(config.transformer_config)
        self._post_init_with_lora()

    @classmethod
    def _pretrained_modules(cls, path, options, load_kwargs):
        backbone = AutoModelForCausalLM.from_pretrained(path, **load_kwargs)
        return {"backbone": backbone, "reference": _load_reference(options.reference, backbone, load_kwargs)}

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> "ImplicitPRM":
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model.reference.requires_grad_(False)  # loading puts new parameters in place: pi_ref stays frozen
        return model

    @property
    def beta(self) -> float:
        return self.config.beta

    def train(self, mode: bool = True):
        super().train(mode)
        self.reference.eval()  # pi_ref is fixed: never dropout
        return self

    # -- what the model can do --

    @property
    def trains_on_pairs(self) -> bool:
        return self.config.implicit_loss == "dpo"

    def loss(self, logits, labels, pos_weight=None, pairs=None):
        """Outcome cross-entropy: `step_loss` (bce) of the running values at the labelled
        positions. With `pairs` (DPO): the first `pairs` rows are chosen solutions, the next
        `pairs` their rejected partners, and r(y) is read at each row's one labelled position."""
        if pairs is None:
            return step_loss(logits, labels, "bce", pos_weight)
        rewards = torch.where(labels >= 0, logits, torch.zeros_like(logits)).sum(dim=1)
        return dpo_loss(rewards[:pairs], rewards[pairs:])

    def freeze_backbone(self) -> None:
        raise ValueError("an implicit PRM has no head: freeze_backbone would leave nothing to train")

    @classmethod
    def missing_labels(cls, traces, options):
        """Outcome labels only (no step label, no rollout); DPO also needs a problem with both outcomes."""
        if not any(t.outcome_label is not None for t in traces):
            return f"no record has a {options.label_type} label to train a {options.head.upper()} on", "outcome_label"
        if options.implicit_loss == "dpo":
            outcomes: dict[str, set] = {}
            for t in traces:
                outcomes.setdefault(t.problem, set()).add(t.outcome_label)
            if not any({0, 1} <= seen for seen in outcomes.values()):
                return ("--loss dpo needs a problem with both a correct and an incorrect solution; no problem has both",
                        "outcome_label")
        return None

    # -- forward --

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                step_positions: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                answer_start: torch.Tensor | None = None, **kwargs) -> RewardModelOutput:
        if step_positions is None:
            step_positions = _last_positions(input_ids, attention_mask)
        values = running_values(self.token_log_ratios(input_ids, attention_mask, answer_start), step_positions,
                                self.config.beta)
        loss = None
        if labels is not None:
            if labels.dim() == 1:  # one outcome label per row
                labels = outcome_labels_at_last_step(labels, step_positions)
            loss = self.loss(values, labels)
        return RewardModelOutput(loss=loss, logits=values)

    def token_log_ratios(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         answer_start: torch.Tensor | None = None) -> torch.Tensor:
        """log pi_theta - log pi_ref of every response token (0 elsewhere), (batch, length), with
        the reference's log-probabilities computed on the same batch (no gradient)."""
        logits = self.backbone(input_ids=input_ids, attention_mask=attention_mask).logits
        with torch.no_grad():
            reference_logits = self.reference(input_ids=input_ids, attention_mask=attention_mask).logits
        return token_log_ratios(logits, reference_logits, input_ids, answer_start, attention_mask)

    @torch.inference_mode()
    def token_rewards(self, items, batch_size: int | None = None) -> list[list[list[tuple[int, float]]]]:
        """The token-level process rewards beta * log(pi_theta / pi_ref) of every step
        (`prm.reward.scorer.TokenRewardScorer`).

        For each (problem, steps) item, one list per kept step of (end, reward) pairs, one per
        token of the step (and its separator): `end` is the offset in the step's text just after
        the token's last character (capped at the step's length, so separator tokens sit on its
        end). A step's rewards sum to its step reward q_t - q_{t-1}. Needs a fast tokenizer."""
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("token_rewards needs a fast tokenizer (character offsets)")
        was_training = self.training
        self.eval()
        items = [(item[0], list(item[1])) for item in items]
        encoded = self.step_tokenizer.encode_many(items)
        suffix = self.config.step_separator if self.config.step_marker == "last-token" else ""
        results = []
        size = batch_size or self.batch_size
        for first in range(0, len(items), size):
            batch = encoded[first:first + size]
            inputs = {k: v.to(self.device) for k, v in pad_batch(batch, self.tokenizer.pad_token_id,
                                                                answer_start=True).items()}
            ratios = self.token_log_ratios(inputs["input_ids"], inputs["attention_mask"],
                                           inputs["answer_start"]).float().cpu() * self.config.beta
            for row, (enc, (_, steps)) in enumerate(zip(batch, items[first:first + size])):
                steps_out, start = [], enc.answer_start
                for step, end in zip(steps, enc.step_positions):
                    offsets = self.tokenizer(step + suffix, add_special_tokens=False,
                                             return_offsets_mapping=True)["offset_mapping"]
                    values = ratios[row, start:end + 1].tolist()
                    ends = [min(stop, len(step)) for _, stop in offsets]
                    ends += [len(step)] * (len(values) - len(ends))  # appended marker/sep tokens
                    steps_out.append(list(zip(ends[:len(values)], values)))
                    start = end + 1
                results.append(steps_out)
        if was_training:
            self.train()
        return results




def lm_step_features(lm_logits: torch.Tensor, input_ids: torch.Tensor, step_positions: torch.Tensor,
                     answer_start: torch.Tensor, include_end: bool = True) -> torch.Tensor:
    """Per step, the lowest log-probability the LM gave to a token of that step, and to a
    token of the answer up to the end of that step (so a step after a wrong one still
    sees it). Shape (batch, steps, 2); padded steps get 0.

    A calculator result the model would not have written is an unlikely token: these two
    numbers make the LM's own arithmetic available to the head without the head having to
    re-learn it. include_end=False leaves out the token a step's label is read at (an added
    marker token, which the LM never learned to predict).
    """
    logp = torch.log_softmax(lm_logits[:, :-1].float(), dim=-1)
    logp = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    logp = F.pad(logp, (1, 0)).detach()  # the first token has no prediction; a fixed signal
    position = torch.arange(input_ids.size(1), device=input_ids.device)
    ends = (step_positions if include_end else step_positions - 1).unsqueeze(-1)
    starts = torch.cat([answer_start.view(-1, 1), step_positions[:, :-1] + 1], dim=1).unsqueeze(-1)
    in_step = (position >= starts) & (position <= ends)
    in_answer = (position >= answer_start.view(-1, 1, 1)) & (position <= ends)
    values = logp.unsqueeze(1)
    step_min = torch.where(in_step, values, torch.zeros_like(values)).min(dim=-1).values
    answer_min = torch.where(in_answer, values, torch.zeros_like(values)).min(dim=-1).values
    return torch.stack([step_min, answer_min], dim=-1)


def _load_reference(name: str | None, backbone: PreTrainedModel, load_kwargs: dict) -> PreTrainedModel:
    """The frozen reference LM of an implicit PRM: a copy of the freshly loaded backbone, or
    the causal LM `name` (which must share the backbone's vocabulary)."""
    import copy

    if name is None:
        return copy.deepcopy(backbone)
    from prm.model_names import resolve_model

    reference = AutoModelForCausalLM.from_pretrained(resolve_model(name), **load_kwargs)
    ours, theirs = backbone.get_input_embeddings().num_embeddings, reference.get_input_embeddings().num_embeddings
    if ours != theirs:
        raise ValueError(f"the reference {name} has {theirs} token embeddings and the backbone {ours}: an "
                         "implicit PRM's reference must use the backbone's tokenizer")
    return reference


def _reference_from_config(config: RewardModelConfig) -> PreTrainedModel:
    """An empty reference LM of the saved shape (its weights are loaded with the model's)."""
    if config.reference_config:
        reference_config = dict(config.reference_config)
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(reference_config.pop("model_type"),
                                                                     **reference_config))
    return AutoModelForCausalLM.from_config(config.transformer_config)


def _with_lora(backbone, config: RewardModelConfig):
    """The backbone wrapped in LoRA adapters (`peft`, imported only when asked for)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("lora_r > 0 needs peft: pip install 'prm-toolkit[lora]'") from error
    targets = config.lora_target_modules
    if targets != "all-linear":
        targets = [name.strip() for name in targets.split(",") if name.strip()]
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets)
    return get_peft_model(backbone, lora)


def _hidden_size(config) -> int:
    for name in ("hidden_size", "n_embd", "d_model", "dim"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot tell the hidden size of a {type(config).__name__}")


def _max_positions(config, tokenizer) -> int | None:
    """The longest input the backbone takes (its position table, or the tokenizer's limit)."""
    limits = [getattr(config, name, None) for name in ("max_position_embeddings", "n_positions")]
    limits.append(getattr(tokenizer, "model_max_length", None))
    limits = [v for v in limits if isinstance(v, int) and 0 < v < 1_000_000]
    return min(limits) if limits else None
