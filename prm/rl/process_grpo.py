"""Process-supervised GRPO on TRL: per-token advantages from a PRM's step scores.

    from trl import GRPOConfig, GRPOTrainer                      # before
    trainer = GRPOTrainer(model=policy, reward_funcs=ProcessReward(scorer, outcome_weight=1.0), ...)

    from prm.rl import ProcessGRPOConfig, ProcessGRPOTrainer     # after
    trainer = ProcessGRPOTrainer(model=policy, reward_funcs=outcome_reward(), scorer=scorer,
                                 args=ProcessGRPOConfig(..., credit="min"), ...)

TRL's `GRPOTrainer` does everything as usual (generation, including vLLM; the rewards of
`reward_funcs` and their group-normalised advantage, called here the outcome advantage;
logging; every GRPOConfig option). One method is overridden, `_generate_and_score_completions`:
after TRL has generated and scored a batch, the completions' steps are scored by `scorer` (any
`StepScorer`), mapped onto the policy's tokens with `prm.rl.dense`, and turned into per-token
advantages (`prm.rl.credit`: `credit="sum"`, DeepSeekMath; `credit="min"`, PURE), then

    advantage[token] = process_weight * process_advantage[token] + outcome_weight * outcome_advantage

TRL's loss accepts (batch, tokens) advantages as they are (`_compute_loss` unsqueezes only 1-D ones).

Online PRM (PRIME, `online_prm=True`): an implicit PRM (`prm.reward.model.ImplicitPRM`,
initialised from `online_prm_model`, by default the policy's own weights, with a frozen copy as
its reference) takes one optimiser step per batch on the batch's outcome labels (cross-entropy
of sigmoid(r(y)), `answer_column` graded like `prm.rl.rewards.outcome_reward`), then its token
rewards beta * log(pi_phi / pi_ref) on the policy's tokens are the dense rewards (one unit per
token). Updating before scoring means the policy is rewarded by a PRM that has just seen the
outcomes of these very completions, so a completion that looks good to last step's PRM but is
wrong cannot keep its reward. The PRM and its optimiser are saved in every checkpoint
(`checkpoint-N/online_prm`) and by `save_model`, and loaded on `resume_from_checkpoint`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch
import trl
from accelerate.utils import gather_object
from packaging.version import Version
from trl import GRPOConfig, GRPOTrainer

from prm.reward.scorer import StepScorer
from prm.rl.credit import CREDITS, mix_advantages, process_advantages
from prm.rl.dense import dense_rewards
from prm.rl.rewards import outcome_reward, scorer_template
from prm.rl.text import completion_text, problem_from_prompt

# The TRL releases whose GRPOTrainer this override was read against (the advantages computed
# at the end of `_generate_and_score_completions`, (B, T) advantages accepted by `_compute_loss`).
SUPPORTED_TRL = (Version("1.16.0"), Version("1.17.0"))
ONLINE_PRM_FOLDER = "online_prm"


def check_trl_version(version: str = trl.__version__) -> None:
    if not SUPPORTED_TRL[0] <= Version(version) < SUPPORTED_TRL[1]:
        raise RuntimeError(f"ProcessGRPOTrainer supports trl >={SUPPORTED_TRL[0]},<{SUPPORTED_TRL[1]}; "
                           f"trl {version} is installed")


@dataclass
class ProcessGRPOConfig(GRPOConfig):
    """`GRPOConfig` plus how step scores become per-token advantages (see the module docstring)."""

    credit: str = field(default="sum", metadata={"help": "sum (DeepSeekMath) or min (PURE)"})
    process_weight: float = field(default=1.0, metadata={"help": "weight of the process advantage"})
    outcome_weight: float = field(default=1.0, metadata={"help": "weight of TRL's advantage from reward_funcs"})
    step_separator: str = field(default="\n", metadata={"help": "what separates the completion's steps"})
    problem_column: str = field(default="problem", metadata={"help": "dataset column with the bare problem"})
    scorer_batch_size: int | None = field(default=None, metadata={"help": "the scorer's batch size"})
    online_prm: bool = field(default=False, metadata={"help": "PRIME: update an implicit PRM on outcome labels"})
    online_prm_model: str | None = field(default=None, metadata={"help": "its initial weights (default: the policy's)"})
    online_prm_beta: float = field(default=0.05, metadata={"help": "the implicit PRM's beta"})
    online_prm_learning_rate: float = field(default=1e-6, metadata={"help": "the implicit PRM's learning rate"})
    answer_column: str = field(default="answer", metadata={"help": "reference answers (online PRM's labels)"})

    def __post_init__(self):
        super().__post_init__()
        if self.credit not in CREDITS:
            raise ValueError(f"credit must be one of {CREDITS}, got {self.credit!r}")


class ProcessGRPOTrainer(GRPOTrainer):
    """TRL's `GRPOTrainer` with per-token process advantages; `scorer`: any `StepScorer`
    (not needed with `online_prm=True`). Other arguments are `GRPOTrainer`'s."""

    def __init__(self, model, reward_funcs=None, args: ProcessGRPOConfig | None = None, *,
                 scorer: StepScorer | None = None, **kwargs):
        check_trl_version()
        if not isinstance(args, ProcessGRPOConfig):
            raise TypeError("ProcessGRPOTrainer needs args=ProcessGRPOConfig(...)")
        if args.process_weight and scorer is None and not args.online_prm:
            raise ValueError("pass scorer=<a StepScorer>, or set online_prm=True")
        if scorer is not None and args.online_prm:
            raise ValueError("pass either a scorer or online_prm=True, not both")
        super().__init__(model, reward_funcs, args, **kwargs)
        self.scorer = scorer
        self.online_prm = self.online_prm_optimizer = None
        if args.online_prm:
            if self.accelerator.num_processes > 1:
                raise ValueError("online_prm=True runs on one process (the implicit PRM is not sharded)")
            self._build_online_prm()

    # -- the one override --------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        # Overrides GRPOTrainer._generate_and_score_completions only to replace its output's
        # "advantages" (one per completion) by per-token ones; generation, rewards and logging
        # are TRL's own.
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        started = time.perf_counter()
        units = self._process_units(inputs, output)
        seconds = time.perf_counter() - started
        everything = gather_object(units)  # groups may span processes: normalise over the whole batch
        local = slice(self.accelerator.process_index * len(units), (self.accelerator.process_index + 1) * len(units))
        process = process_advantages(everything, output["completion_ids"].size(1), group_size,
                                     self.args.credit)[local].to(output["advantages"].device)
        output["advantages"] = mix_advantages(process, output["advantages"], self.args.process_weight,
                                              self.args.outcome_weight)
        rewards = [reward for row in units for _, reward in row]
        self._metrics[mode]["process/reward_mean"].append(sum(rewards) / len(rewards) if rewards else 0.0)
        self._metrics[mode]["process/units_per_completion"].append(len(rewards) / max(len(units), 1))
        self._metrics[mode]["process/prm_seconds"].append(seconds)
        return output

    # -- process rewards -----------------------------------------------------------------------

    def _process_units(self, inputs: list[dict], output: dict) -> list[list[tuple[int, float]]]:
        """Each local completion's (token, reward) units."""
        responses = [ids[mask.bool()].tolist() for ids, mask in zip(output["completion_ids"], output["completion_mask"])]
        if not self.args.process_weight:
            return [[] for _ in responses]
        if self.online_prm is not None:
            return self._online_prm_units(inputs, output, responses)
        template = scorer_template(self.scorer)
        problems = [str(x[self.args.problem_column]) if self.args.problem_column in x
                    else problem_from_prompt(x["prompt"], template) for x in inputs]
        dense = dense_rewards(self.scorer, self.processing_class, problems, response_ids=responses,
                              step_separator=self.args.step_separator, batch_size=self.args.scorer_batch_size)
        return [[(t, s) for t, s in (d.token_values or zip(d.end_tokens, d.scores)) if s is not None] for d in dense]

    # -- online PRM (PRIME) ----------------------------------------------------------------------

    def _build_online_prm(self) -> None:
        from prm.reward.model import RewardModel, RewardModelOptions

        name = self.args.online_prm_model or self.accelerator.unwrap_model(self.model).config._name_or_path
        self.online_prm = RewardModel.from_backbone(name, RewardModelOptions(head="implicit",
                                                                             beta=self.args.online_prm_beta))
        self.online_prm.to(self.accelerator.device)
        self.online_prm_optimizer = torch.optim.AdamW(
            [p for p in self.online_prm.parameters() if p.requires_grad], lr=self.args.online_prm_learning_rate)
        self._outcome = outcome_reward(answer_column=self.args.answer_column)

    def _online_prm_units(self, inputs, output, responses) -> list[list[tuple[int, float]]]:
        """One PRM update on this batch's outcomes, then its token rewards on the policy's tokens."""
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(output["prompt_ids"], output["prompt_mask"])]
        texts = [completion_text(self.processing_class.decode(r, skip_special_tokens=True)) for r in responses]
        answers = [x.get(self.args.answer_column) for x in inputs]
        outcomes = torch.tensor(self._outcome([x["prompt"] for x in inputs], texts,
                                              **{self.args.answer_column: answers}))
        pad = self.processing_class.pad_token_id or 0
        rows = [p + r for p, r in zip(prompts, responses)]  # right padding, as the implicit PRM assumes
        width = max(len(row) for row in rows)
        device = self.online_prm.device
        input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows], device=device)
        attention_mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows], device=device)
        starts = torch.tensor([len(p) for p in prompts], device=device)
        self.online_prm.train()
        self.online_prm_optimizer.zero_grad()
        loss = self.online_prm(input_ids, attention_mask, answer_start=starts, labels=outcomes.to(device)).loss
        loss.backward()
        self.online_prm_optimizer.step()
        self.online_prm.eval()
        with torch.no_grad():
            rewards = (self.online_prm.token_log_ratios(input_ids, attention_mask, starts) * self.online_prm.beta).cpu()
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["process/online_prm_loss"].append(loss.item())
        return [[(k, rewards[i, len(p) + k].item()) for k in range(len(r))]
                for i, (p, r) in enumerate(zip(prompts, responses))]

    # -- checkpoints: the online PRM is saved and loaded with the policy -------------------------

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.online_prm is not None and self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            self._save_online_prm(folder)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call)
        if self.online_prm is not None and not _internal_call and self.args.should_save:
            self._save_online_prm(output_dir or self.args.output_dir)

    def _save_online_prm(self, folder: str) -> None:
        path = os.path.join(folder, ONLINE_PRM_FOLDER)
        self.online_prm.save_pretrained(path)
        torch.save(self.online_prm_optimizer.state_dict(), os.path.join(path, "optimizer.pt"))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, ONLINE_PRM_FOLDER) if checkpoint else None
        if self.online_prm is not None and path and os.path.isdir(path):
            from prm.reward.model import RewardModel

            self.online_prm.load_state_dict(RewardModel.from_pretrained(path).state_dict())
            self.online_prm_optimizer.load_state_dict(torch.load(os.path.join(path, "optimizer.pt")))
