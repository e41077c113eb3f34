"""Reward models: the `StepScorer` interface, this project's reward models (`prm.reward.model`:
the `RewardModel` family, with `HeadRewardModel` for PRM and ORM heads on a transformer backbone
and `ImplicitPRM` for implicit PRMs), their trainer, and scorers for published PRM formats.

Sits above the records base (`prm.records`, `prm.io`, `prm.formats`) and beside `completers`;
`annotate`, `evals` and the app import it, never the other way round.
"""
