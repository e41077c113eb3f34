"""Process rewards for RL trainers.

- `prm.rl.rewards.ProcessReward`: a TRL `GRPOTrainer` reward function built from any step
  scorer (split into steps, score, aggregate, optional outcome reward and format penalty).
- `prm.rl.dense`: per-step scores placed on the token where each step ends (token-level
  rewards, e.g. for verl's reward managers).
- `prm.rl.server.RewardServer`: an HTTP reward server speaking OpenRLHF's remote
  reward-model protocol, with dynamic batching (`prm serve-reward`).
- `prm.rl.text`: how prompts, completions and OpenRLHF queries become (problem, steps).

Nothing here imports TRL: the reward function is a plain callable with TRL's signature.
"""
