"""The options of an annotation run, in one place.

`AnnotateConfig` is the one source of every annotation setting and its default: `prm
annotate` builds its command-line options from it, the runner stores `settings()` in each
output trace's meta and compares them on resume, and both labelling methods
(`annotate.monte_carlo`, `annotate.binary_search`) read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

METHODS = {"mc": "monte-carlo", "binary": "binary-search", "judge": "judge"}
BINARY_ONLY = ("after_error", "skip_correct", "probe_first")


@dataclass
class JudgeConfig:
    """How an LLM judge (`annotate.judge`) critiques a trace; shared by `prm annotate --method
    judge` and the `judge:` step scorer of `prm score` / `prm eval`.

    samples: critiques per trace (k); the earliest-error index is a majority vote over them.
    temperature, top_p: sampling of each critique. The default, one greedy critique, is
        ProcessBench's critic setting; its voting setting is k = 8 at temperature 1, top_p 0.9.
    max_new_tokens: tokens per critique at most; a critique cut before its `\\boxed{}`
        answer is recorded as unparseable (give reasoning models room).
    seed: run seed; each trace's critiques use a seed derived from (seed, trace id).
    template: a packaged critic template (`processbench`, `processbench-chatml`) or the path
        of the user's own file (see `annotate.judge_templates`).
    """

    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    seed: int = 0
    template: str = "processbench"

    def __post_init__(self):
        for name in ("samples", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"judge {name} must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("judge temperature must be >= 0 and top_p in (0, 1]")

    def settings(self) -> dict:
        """The settings, with a digest of the template's text (an edited template is noticed)."""
        from annotate.judge_templates import template_digest

        return {**asdict(self), "template_sha256": template_digest(self.template)}


@dataclass
class AnnotateConfig:
    """Options of an annotation run (stored in each output trace's meta, checked on resume).

    method: "mc" (per-step Monte Carlo) or "binary" (binary search for the first error).
    n: completions per step (mc) or per probed prefix (binary).
    temperature, top_p, max_new_tokens: sampling of each completion. Temperature 1.0 samples
        from the model's own distribution, the distribution the labels estimate (the chance
        that the policy reaches the answer from a prefix); bench/README.md measured 1.0 at
        least as good as 0.7 and better than 0.5 against gold labels.
    seed: run seed; each trace's calls use seeds derived from (seed, trace id).
    max_rollouts, max_tokens: per-trace budget (None = no cap), never exceeded. Under a cap,
        mc spreads the rollouts it may start evenly over the steps (earlier steps get the
        remainder), binary search stops when a probe cannot be completed; steps left without
        evidence get unknown labels (None).
    keep_texts: keep the full text of every completion in `Rollouts.texts`.
    reuse_rollouts: count rollouts already in the input steps as evidence (only new ones
        are sampled, up to n per step/probe). Off: ignore them and sample afresh.
    after_error (binary): label of the steps after the first error: "negative" (default:
        a prefix that contains a wrong step reaches the answer only by luck, the convention
        of the gold labels and of Math-Shepherd's per-step labels on such traces) or
        "unknown" (None, as in PRM800K where rating stops at the first error). Steps with
        their own rollouts are labelled from them either way.
    skip_correct (binary): a trace whose own final answer equals the reference is labelled
        all positive without any rollout (OmegaPRM searches only wrong solutions: the trace
        itself is a completion that reaches the answer from every one of its prefixes).
    probe_first: completions in a probe's first call; the rest of the n are sampled only
        if none of these reaches the answer (one success settles a probe). None: ceil(n / 4).
        Set it to n for one call of n per probe. Monte Carlo samples in the same two rounds
        (`annotate.rollouts.rollout_rounds`), so both methods see the same completions.
    min_successes (mc): a step's hard label is 1 when at least this many of its completions
        reach the answer (1: Math-Shepherd's "any"; stricter values label more steps bad; on
        the demo's training traces they agree less with gold, see bench/README.md).
    grading_timeout: seconds per answer comparison.
    judge (judge): the LLM judge's settings (`JudgeConfig`); its seed is `seed`. The judge
        reads neither n nor the sampling options above, and needs no reference answer.
        after_error applies to its labels as to binary search's.
    """

    method: str = "mc"
    n: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    max_rollouts: int | None = None
    max_tokens: int | None = None
    keep_texts: bool = False
    reuse_rollouts: bool = True
    after_error: str = "negative"
    skip_correct: bool = True
    probe_first: int | None = None
    min_successes: int = 1
    grading_timeout: float = 5.0
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {self.method!r}")
        if self.after_error not in ("negative", "unknown"):
            raise ValueError(f"after_error must be 'negative' or 'unknown', got {self.after_error!r}")
        for name in ("n", "max_new_tokens", "min_successes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.method == "mc" and self.min_successes > self.n:
            raise ValueError(f"min_successes ({self.min_successes}) is more than n ({self.n}): "
                             "no step could ever be labelled good")
        for name in ("max_rollouts", "max_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    def run_judge(self) -> JudgeConfig:
        """The judge's settings with this run's seed (`--seed` seeds every method)."""
        return JudgeConfig(**{**asdict(self.judge), "seed": self.seed})

    @property
    def label_source(self) -> str:
        return METHODS[self.method]

    def settings(self) -> dict:
        """What decides the labels (compared on resume); the grading timeout does not."""
        if self.method == "judge":
            return {"method": self.method, "seed": self.seed, "after_error": self.after_error,
                    "judge": self.run_judge().settings()}
        data = asdict(self)
        data.pop("grading_timeout")
        data.pop("judge")
        if self.min_successes == 1 or self.method != "mc":  # the default: outputs made before it existed resume
            data.pop("min_successes")
        if self.method == "mc":
            for name in BINARY_ONLY:
                if name != "probe_first" or self.probe_first is None:  # it sets mc's rounds too
                    data.pop(name)
        return data
