"""Scorers for published PRM checkpoints, one module per family, each in the family's own format.

Every scorer is a `prm.reward.scorer.StepScorer` (most are `BatchedStepScorer`s), so scoring
and evaluation code does not care which it has. `prm.reward.loading.load_scorer` opens a
folder or hub name with the right one.

- `math_shepherd.MathShepherdScorer`: causal LM, ``+``/``-`` at the ``ки`` step tag.
- `token_classification.TokenClassificationScorer`: TRL's PRMTrainer models.
- `qwen_prm.QwenPRMScorer`: Qwen2.5-Math-PRM (two-class head read at ``<extra_0>``), built
  from this project's code: no `trust_remote_code`.
- `skywork.SkyworkPRMScorer`: Skywork-o1-Open-PRM (value head on Qwen2.5-Math, sigmoid at
  each step's end).
- `rlhflow.RLHFlowScorer`: RLHFlow PRMs (chat: step = user turn, assistant answers ``+``/``-``).

Modules are imported only when a family is used, so this package is light to import.
"""
