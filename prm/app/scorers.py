"""One string names any step scorer the CLI, search and evaluation can use: `load_step_scorer(spec)`.

    checker:sympy            checkers alone (annotate.checkers.scorer.CheckerScorer):
    checker:sympy,z3         refuted 0.0, verified 1.0, anything else 0.5
    MODEL+checker:sympy      MODEL's scores with checker-refuted steps set to 0.0
                             (annotate.checkers.scorer.CheckerAwareScorer)
    MODEL                    a model folder, short name or hub name (prm.reward.loading.load_scorer)
    vllm-pooling:MODEL@URL   MODEL's family scored by vLLM servers (prm.reward.vllm_pooling); URL may
                             be several, comma-separated; the key in VLLM_API_KEY
    judge:MODEL_OR_URL       an LLM judge (annotate.judge.JudgeScorer): a completer (tiny-gsm,
                             smollm2-135m, a folder, http://host:port/v1, vllm:MODEL) writes
                             critiques; step score = share of them putting the first error later

`options` go to `prm.reward.loading.load_scorer` (family, device, dtype, max_batch_tokens,
max_length, step_tag, ...); options left as None are dropped. A checker-only spec takes no
model options.
"""

from __future__ import annotations

from prm.errors import RecordError, opening_model
from prm.reward.scorer import StepScorer

CHECKER_PREFIX = "checker:"
JUDGE_PREFIX = "judge:"
CHECKER_JOIN = "+checker:"


def is_judge(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(JUDGE_PREFIX)


def parse_spec(spec: str) -> tuple[str | None, list[str]]:
    """(model or None, checker names) of a scorer spec (a judge spec is its own model)."""
    if is_judge(spec):
        if not spec[len(JUDGE_PREFIX):].strip():
            raise RecordError(f"no model or URL after 'judge:' in scorer {spec!r}")
        return spec, []
    if spec.startswith(CHECKER_PREFIX):
        model, names = None, spec[len(CHECKER_PREFIX):]
    elif CHECKER_JOIN in spec:
        model, names = spec.rsplit(CHECKER_JOIN, 1)
        if not model:
            raise RecordError(f"no model before '+checker:' in scorer {spec!r}")
    else:
        return spec, []
    checkers = [name.strip() for name in names.split(",") if name.strip()]
    if not checkers:
        raise RecordError(f"no checker named in scorer {spec!r} (e.g. checker:sympy or checker:sympy,z3)")
    return model, checkers


def loads_model(spec: str | None) -> bool:
    """Whether the spec loads a model or a judge's completer (and so torch); a checker-only
    spec does not, and its commands skip torch's seconds of import. A malformed spec counts
    as loading one (the error comes where the spec is read)."""
    try:
        return bool(spec) and parse_spec(spec)[0] is not None
    except RecordError:
        return True


def check_spec(spec: str) -> tuple[str | None, list[str]]:
    """`parse_spec`, refusing unknown checker names (cheap: nothing is loaded)."""
    from annotate.checkers import CHECKERS

    model, checkers = parse_spec(spec)
    unknown = [name for name in checkers if name not in CHECKERS]
    if unknown:
        raise RecordError(f"unknown checker {unknown[0]!r} in scorer {spec!r}; choose from {', '.join(CHECKERS)}")
    return model, checkers


def load_step_scorer(spec: str, judge=None, workers: int | None = None, **options) -> StepScorer:
    """The step scorer a spec names (see the module docstring). A model that cannot be
    opened is a `RecordError` naming it. `judge`: the `JudgeConfig` of a judge: spec.
    `workers`: the checkers run on that many worker processes (`prm check`'s pool; None: in
    this process)."""
    from annotate.checkers.scorer import CheckerAwareScorer, CheckerScorer

    if is_judge(spec):
        return load_judge_scorer(spec[len(JUDGE_PREFIX):].strip(), judge)

    model, checkers = check_spec(spec)
    if model is None:
        return CheckerScorer(checkers, workers=workers)
    base = load_model_scorer(model, **options)
    return CheckerAwareScorer(base, checkers, workers=workers) if checkers else base


def load_model_scorer(model: str, **options) -> StepScorer:
    """`prm.reward.loading.load_scorer`, with errors opening the model as one `RecordError`
    naming it (a missing folder, a corrupt weights file)."""
    from prm.reward.loading import load_scorer

    options = {k: v for k, v in options.items() if v is not None}
    with opening_model(model):
        return load_scorer(model, **options)


def load_judge_scorer(model: str, config=None) -> StepScorer:
    """An LLM judge over the completer `model` names (see `completers.loading.load_completer`)."""
    from annotate.judge import JudgeScorer
    from completers.loading import load_completer

    if model.startswith(("http://", "https://")):
        completer = load_completer(model)
    else:
        with opening_model(model):
            completer = load_completer(model)
    return JudgeScorer(completer, config, name=model)
