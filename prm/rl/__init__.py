"""Process rewards for RL trainers.

- `prm.rl.rewards.ProcessReward`: a TRL `GRPOTrainer` reward function built from any step
  scorer (split into steps, score, aggregate, optional outcome reward and format penalty).
- `prm.rl.dense`: per-step scores placed on the token where each step ends (token-level
  rewards, e.g. for verl's reward managers).
- `prm.rl.server.RewardServer`: an HTTP reward server speaking OpenRLHF's remote
  reward-model protocol, with dynamic batching (`prm serve-reward`).
- `prm.rl.text`: how prompts, completions and OpenRLHF queries become (problem, steps).
- `prm.rl.process_grpo.ProcessGRPOTrainer` / `ProcessGRPOConfig`: TRL's GRPOTrainer with
  per-token advantages from step scores (`prm.rl.credit`: DeepSeekMath's sum, PURE's min) and
  an online implicit PRM (PRIME); importing them here loads TRL only when they are asked for.
- `prm.rl.verl_manager`: verl reward managers "prm" filling verl's token-level reward tensor.
- `prm.rl.remote.RemoteStepScorer`: a step scorer backed by the reward server over HTTP.

Only `prm.rl.process_grpo` imports TRL: the reward function is a plain callable with TRL's signature.
"""


def __getattr__(name: str):
    if name in ("ProcessGRPOConfig", "ProcessGRPOTrainer"):
        from prm.rl import process_grpo

        return getattr(process_grpo, name)
    raise AttributeError(f"module 'prm.rl' has no attribute {name!r}")
