"""`prm demo`: the whole job on the embedded world, on a CPU, with no download.

1. generate GSM8K-style problems (`completers.world`), split into train / validation / test;
2. sample solutions with the tiny completer `tiny-gsm` (gold step labels come from the
   world's program);
3. label the training traces with Monte Carlo completions (Math-Shepherd) and, for
   comparison, with binary search for the first error (OmegaPRM); add sympy checker
   verdicts and let a refutation override the Monte Carlo label;
4. train a PRM (a score per step) on those automatic labels and an ORM (a score per
   solution) on the outcome labels, both on the `tiny-gsm` backbone; and an implicit PRM
   (`head="implicit"`): tiny-gsm itself fine-tuned on the outcome labels only, zero
   rollouts, on `train_traces` sampled solutions (the step-labelled ones plus solutions of
   fresh problems: the verifier that improves with labels, `bench/scaling.py`);
5. score the held-out traces and evaluate against gold: step-level accuracy, ProcessBench
   first-error F1, best-of-N (PRM vs majority vote vs ORM), label quality;
6. search the test problems step by step: beam search at the tokens of `eval_samples`
   solutions, guided by the PRM with sympy-refuted steps scored 0 (`prm.search`);
7. write `OUT/report.md` (the summary) and `OUT/eval/` (full report, plots, metrics.json).

Every stage writes its output under OUT and is skipped when that output exists, and
annotation resumes trace by trace: an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from annotate.config import AnnotateConfig
from prm.errors import RecordError
from prm.io import atomic_write, read_traces, refuse_output_over_inputs, write_traces
from prm.markdown import MISSING, number, percent, table_lines
from prm.records import Trace


# The implicit PRM's recipe on the embedded world (docs/reward_models.md, bench/implicit.py,
# bench/scaling.py: it climbs with outcome-labelled traces, one epoch from 2,400 traces on)
TRAIN_TRACES, IMPLICIT_BETA, IMPLICIT_LOSS, IMPLICIT_LR, IMPLICIT_EPOCHS = 4800, 0.1, "ce", 1e-3, 1.0


@dataclass
class DemoConfig:
    """Sizes and settings of the demo; the defaults take about 5 minutes on 2 CPU cores.
    `prm demo --help` lists the fields with their help (generated from this class)."""

    out: str = field(default="demo_out", metadata={"help": "folder for every output (re-running with it resumes)"})
    train_problems: int = field(default=150, metadata={"help": "training problems"})
    val_problems: int = field(default=40, metadata={"help": "validation problems (they choose the thresholds)"})
    test_problems: int = field(default=80, metadata={"help": "test problems (only measured)"})
    train_samples: int = field(default=4, metadata={"help": "solutions sampled per training problem"})
    eval_samples: int = field(default=8, metadata={
        "help": "solutions per validation/test problem (best-of-N goes up to this N)"})
    mc_n: int = field(default=8, metadata={"help": "completions per step prefix for Monte Carlo labels"})
    binary_traces: int = field(default=120, metadata={
        "help": "training traces also labelled by binary search (to compare labels and rollout cost)"})
    temperature: float = field(default=AnnotateConfig.temperature,
                               metadata={"help": "sampling temperature of solutions and completions"})
    labels: str = field(default="hard", metadata={"help": "which Monte Carlo label the PRM learns",
                                                  "choices": ["hard", "soft"]})
    epochs: float = field(default=8.0, metadata={"help": "reward-model training epochs"})
    batch_size: int = field(default=16, metadata={"help": "reward-model training batch size"})
    learning_rate: float = field(default=5e-3, metadata={"help": "reward-model learning rate"})
    lm_features: bool = field(default=True, metadata={
        "help": "give the reward heads tiny-gsm's token log-probabilities and train the heads only; without "
                "them a PRM fine-tuned on this 1M-parameter backbone scores steps by position and template"})
    implicit: bool = field(default=True, metadata={
        "help": "also train an implicit PRM on the outcome labels only (zero rollouts) and report it beside the PRM"})
    train_traces: int = field(default=TRAIN_TRACES, metadata={
        "help": "outcome-labelled traces the implicit PRM trains on: the step-labelled training traces plus "
                "`train_samples` solutions of each of as many fresh world problems as it takes (sampling is "
                "cheap and needs no rollouts; the implicit PRM improves with them: bench/scaling.py)"})
    implicit_beta: float = field(default=IMPLICIT_BETA, metadata={"help": "the implicit PRM's beta"})
    implicit_loss: str = field(default=IMPLICIT_LOSS, metadata={"help": "the implicit PRM's loss",
                                                                "choices": ["ce", "dpo"]})
    implicit_learning_rate: float = field(default=IMPLICIT_LR, metadata={"help": "the implicit PRM's learning rate"})
    implicit_epochs: float = field(default=IMPLICIT_EPOCHS, metadata={"help": "the implicit PRM's training epochs"})
    threads: int = field(default=0, metadata={"help": "torch threads for training and scoring (0: the machine's cores)"})
    sample_threads: int = field(default=1, metadata={
        "help": "torch threads while sampling and labelling (0: the machine's cores); one is fastest for "
                "tiny-gsm, whose many small matrix products a second thread slows (bench/annotate.py)"})
    seed: int = field(default=0, metadata={"help": "everything random derives from it"})
    model: str = field(default="tiny-gsm", metadata={"help": "the completer and reward-model backbone"})

    @classmethod
    def quick(cls, **given) -> "DemoConfig":
        """A small run for tests (about a minute): same stages, fewer problems. `given`
        settings win over `QUICK`'s, which win over the defaults above."""
        return cls(**{**QUICK, **given})


# What `--quick` changes; every other setting keeps DemoConfig's default.
QUICK = dict(train_problems=12, val_problems=6, test_problems=8, train_samples=2, eval_samples=4, mc_n=4,
             binary_traces=8, epochs=1.0, train_traces=48, implicit_epochs=1.0)

# The parser is generated from DemoConfig's fields (see prm.app.cli).
CONFIGS = (DemoConfig,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    # An option left out is left out of `args` (no parser default), so that DemoConfig, with
    # --quick's overrides, decides it: its defaults are written once, in the dataclass.
    names = {f.name for f in fields(DemoConfig)}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list of its options
        if action.dest in names:
            action.default = argparse.SUPPRESS


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """The settings given on the command line over `QUICK` (with --quick) over DemoConfig's defaults."""
    given = {f.name: getattr(args, f.name) for f in fields(DemoConfig) if hasattr(args, f.name)}
    return DemoConfig.quick(**given) if args.quick else DemoConfig(**given)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    summary = run_demo(config)
    print(f"\nreport: {Path(config.out) / 'report.md'}")
    for line in summary_lines(summary):
        print(line)
    return 0


# -- the stages ---------------------------------------------------------------------------

# Settings a resumed demo may change: where it writes, threads, and whether it adds the implicit PRM.
RESUME_MAY_CHANGE = ("out", "threads", "sample_threads", "implicit")


def check_resumable(config: DemoConfig, path: Path) -> None:
    """A demo folder resumes only with the settings that made it (recorded in `path`): every
    stage reuses what it finds there, so other settings would silently mix two runs."""
    settings = {k: v for k, v in asdict(config).items() if k not in RESUME_MAY_CHANGE}
    if path.exists():
        made = json.loads(path.read_text())
        changed = [k for k, v in settings.items() if made.get(k) != v]
        if changed:
            raise RecordError(f"this demo folder was made with {', '.join(f'--{k} {made.get(k)}' for k in changed)}"
                              f"; run with those settings to resume, or use another --out",
                              path=str(path), field=changed[0])
        return
    with atomic_write(path) as handle:
        json.dump(settings, handle, indent=2)


def run_demo(config: DemoConfig) -> dict:
    """Run (or resume) every stage; returns the figures written to `OUT/summary.json`."""
    import torch

    refuse_output_over_inputs(config.out, [config.model])  # a model folder is read, never written
    logging.getLogger("transformers").setLevel(logging.ERROR)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    check_resumable(config, out / "demo_settings.json")
    start = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, sampling: bool = False):
        timings[name] = time.perf_counter()
        torch.set_num_threads((config.sample_threads if sampling else config.threads) or os.cpu_count() or 1)
        print(f"\n== {name}", flush=True)

    def done(name: str):
        timings[name] = round(time.perf_counter() - timings[name], 1)

    from completers.transformers_completer import TransformersCompleter

    completer = TransformersCompleter(config.model)

    stage("sample solutions", sampling=True)
    splits = sample_splits(config, completer, out)
    done("sample solutions")

    stage("label with Monte Carlo, binary search and checkers", sampling=True)
    mc = annotate(config, completer, splits["train"], out / "labels_mc.jsonl", "mc")
    binary = annotate(config, completer, splits["train"][:config.binary_traces],
                      out / "labels_binary.jsonl", "binary")
    checked = check_and_combine(mc, out / "labels_checked.jsonl")
    done("label with Monte Carlo, binary search and checkers")

    stage("train the PRM and the ORM")
    prm_dir = train(config, checked, splits["val"], out / "prm", head="prm")
    orm_dir = train(config, splits["train"], splits["val"], out / "orm", head="orm")
    done("train the PRM and the ORM")

    implicit_dir, implicit_data = None, None
    if config.implicit:
        stage("sample more solutions for the implicit PRM", sampling=True)
        implicit_data = implicit_training_traces(config, completer, splits["train"], out)
        done("sample more solutions for the implicit PRM")
        stage("train the implicit PRM (outcome labels only)")
        implicit_dir = train_implicit(config, implicit_data, out / "implicit")
        done("train the implicit PRM (outcome labels only)")

    stage("score held-out traces and evaluate")
    val, test = score(prm_dir, orm_dir, splits["val"], splits["test"], out)
    metrics = evaluate(val, test, out / "eval")
    metrics["checker_blind"] = checker_blind(test, metrics["threshold"]["first_error"])
    implicit = None
    if implicit_dir is not None:
        implicit = evaluate_implicit(implicit_dir, splits["val"], splits["test"], out)
        implicit["cost"] = label_cost(implicit_data, completer)
    done("score held-out traces and evaluate")

    stage("search the test problems", sampling=True)
    searched = search_test(config, completer, prm_dir, splits["test"], out)
    done("search the test problems")

    labels = label_quality_table({"Monte Carlo (hard)": mc, "binary search": binary,
                                  "Monte Carlo + sympy override": checked})
    summary = summarise(config, splits, labels, metrics, timings, time.perf_counter() - start)
    summary["search"] = searched
    summary["implicit"] = implicit
    from prm.agreement import agreement_matrix, first_errors  # first error: MC, binary search, sympy, gold

    summary["agreement"] = agreement_matrix({"Monte Carlo": first_errors(mc, "labels"),
                                             "binary search": first_errors(binary, "labels"), "sympy": first_errors(
                                                 checked, "checker:sympy"), "gold": first_errors(checked, "gold")})
    with atomic_write(out / "summary.json") as handle:
        json.dump(summary, handle, indent=2, default=float)
    with atomic_write(out / "report.md") as handle:
        handle.write(render_report(summary))
    return summary


def sample_splits(config: DemoConfig, completer, out: Path) -> dict[str, list[Trace]]:
    """Problems of each split, and solutions sampled from the tiny completer."""
    from completers.base import SamplingParams
    from completers.world import generate_problems, sample_traces

    total = config.train_problems + config.val_problems + config.test_problems
    problems = generate_problems(total, seed=config.seed)
    a, b = config.train_problems, config.train_problems + config.val_problems
    plan = {"train": (problems[:a], config.train_samples), "val": (problems[a:b], config.eval_samples),
            "test": (problems[b:], config.eval_samples)}
    splits = {}
    for index, (name, (chunk, k)) in enumerate(plan.items()):
        path = out / f"traces_{name}.jsonl"
        if not path.exists():
            params = SamplingParams(n=k, temperature=config.temperature, max_new_tokens=320,
                                    seed=config.seed + 1000 * (index + 1))
            traces = sample_traces(completer, chunk, k, params)
            for trace in traces:
                trace.meta["split"] = name
            write_traces(path, traces)
        splits[name] = read_traces(path)
        solved = sum(t.outcome_label == 1 for t in splits[name])
        print(f"{name}: {len(chunk)} problems, {len(splits[name])} traces, "
              f"{solved / len(splits[name]):.0%} solved")
    return splits


def annotate(config: DemoConfig, completer, traces: list[Trace], path: Path, method: str) -> list[Trace]:
    """Automatic labels for `traces` (resumable: finished traces in `path` are kept)."""
    from annotate.runner import run as run_annotation

    settings = AnnotateConfig(method=method, n=config.mc_n, temperature=config.temperature,
                              max_new_tokens=320, seed=config.seed)
    summary = run_annotation(traces, path, completer, settings, completer_spec=config.model)
    print(summary.text())
    return read_traces(path)


def check_and_combine(mc: list[Trace], path: Path) -> list[Trace]:
    """Copies of the Monte Carlo traces `mc` with sympy verdicts on every step, where a refuted
    step's label becomes 0. `mc` itself is left as it was: the summary measures both."""
    if path.exists():
        return read_traces(path)
    from annotate.checkers import get_checker
    from annotate.checkers.combine import add_verdicts, override_refuted

    checker = get_checker("sympy")
    traces = copies(mc)
    add_verdicts(traces, checker)
    counts = override_refuted(traces, [checker.name])
    print(f"sympy override: {counts.as_dict()}")
    write_traces(path, traces)
    return traces


def train(config: DemoConfig, traces: list[Trace], val: list[Trace], folder: Path, head: str) -> Path:
    """Train a reward model on `traces` into `folder` (skipped when it already holds one)."""
    if (folder / "config.json").exists():
        return folder
    from completers.text import PLAIN_TEMPLATE
    from prm.reward.model import RewardModelOptions
    from prm.reward.training import RewardTrainer, RewardTrainerConfig

    options = RewardModelOptions(head=head, label_type=config.labels if head == "prm" else "hard",
                                 prompt_template=PLAIN_TEMPLATE, lm_features=config.lm_features)
    args = RewardTrainerConfig.in_memory(
        folder / "checkpoints", num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, seed=config.seed, logging_steps=20, disable_tqdm=False,
        balance_classes=True, freeze_backbone=config.lm_features)
    trainer = RewardTrainer(config.model, args, train_traces=traces, model_options=options)
    trainer.train()
    trainer.model.save_pretrained(str(folder))
    return folder


def copies(traces: list[Trace]) -> list[Trace]:
    """Independent copies: a stage changes its own copies, never the traces it was given."""
    return [Trace.from_dict(t.to_dict()) for t in traces]


def outcome_only(traces: list[Trace]) -> list[Trace]:
    """Copies without any step label: what an implicit PRM may learn from is the outcome label."""
    unlabelled = copies(traces)
    for trace in unlabelled:
        for step in trace.steps:
            step.hard_label, step.soft_label, step.label_source = None, None, None
    return unlabelled


def implicit_training_traces(config: DemoConfig, completer, train: list[Trace], out: Path) -> list[Trace]:
    """The training traces plus solutions of fresh world problems (`train_samples` each, the
    problems after the test split's) up to `train_traces` traces, with their outcome labels only
    (sampled in resumable chunks: `sample_fresh_problems`)."""
    traces = list(train)
    extra_problems = -(-max(0, config.train_traces - len(traces)) // config.train_samples)
    if extra_problems:
        path = out / f"traces_train_implicit_{config.train_traces}.jsonl"
        fresh = read_traces(path) if path.exists() else sample_fresh_problems(config, completer, extra_problems, path)
        traces += fresh
    return outcome_only(traces[:max(config.train_traces, len(train))])


def sample_fresh_problems(config: DemoConfig, completer, count: int, path: Path, chunk: int = 200) -> list[Trace]:
    """`train_samples` solutions of each of `count` world problems after the demo's splits, in
    `path` (and returned). Sampled in chunks of `chunk` problems, each with its own seed and
    file in `path.chunks/` (`completers.world.sample_in_chunks`), so a resumed demo samples
    only the missing ones."""
    from completers.base import SamplingParams
    from completers.world import generate_problems, sample_in_chunks

    used = config.train_problems + config.val_problems + config.test_problems
    problems = generate_problems(used + count, seed=config.seed)[used:]
    folder = path.with_name(path.name + ".chunks")
    params = SamplingParams(n=config.train_samples, temperature=config.temperature, max_new_tokens=320)
    traces = sample_in_chunks(completer, problems, config.train_samples, folder, params,
                              lambda start: config.seed + 7000 + start, chunk=chunk, split="train")
    write_traces(path, traces)
    shutil.rmtree(folder)
    return traces


def train_implicit(config: DemoConfig, traces: list[Trace], folder: Path) -> Path:
    """An implicit PRM (tiny-gsm against a frozen copy of itself) on outcome labels only."""
    if (folder / "config.json").exists():
        return folder
    from completers.text import PLAIN_TEMPLATE
    from prm.reward.model import RewardModelOptions
    from prm.reward.training import RewardTrainer, RewardTrainerConfig

    options = RewardModelOptions(head="implicit", prompt_template=PLAIN_TEMPLATE, beta=config.implicit_beta,
                                 implicit_loss=config.implicit_loss)
    args = RewardTrainerConfig.in_memory(
        folder / "checkpoints", num_train_epochs=config.implicit_epochs, per_device_train_batch_size=config.batch_size,
        learning_rate=config.implicit_learning_rate, seed=config.seed, logging_steps=20, disable_tqdm=False)
    trainer = RewardTrainer(config.model, args, train_traces=traces, model_options=options)
    trainer.train()
    trainer.model.save_pretrained(str(folder))
    return folder


def evaluate_implicit(folder: Path, val: list[Trace], test: list[Trace], out: Path) -> dict:
    """Score val and test with the implicit PRM (scored_*_implicit.jsonl) and measure it as the PRM is."""
    from evals.report import EvalConfig
    from evals.report import evaluate as evaluate_scores

    paths = out / "scored_val_implicit.jsonl", out / "scored_test_implicit.jsonl"
    if not all(p.exists() for p in paths):
        from prm.reward.model import RewardModel

        model = RewardModel.from_pretrained(str(folder))
        for traces, path in zip((val, test), paths):
            write_traces(path, model.score_traces(outcome_only(traces)))
    metrics, _ = evaluate_scores(read_traces(paths[1]), EvalConfig(gold="meta"), val_traces=read_traces(paths[0]))
    return {key: metrics.get(key) for key in ("step", "first_error", "best_of_n", "threshold")}


def label_cost(traces: list[Trace], completer) -> dict:
    """What the implicit PRM's training data cost: traces, sampled tokens, zero rollouts."""
    tokenizer = completer.tokenizer
    tokens = sum(len(ids) for ids in tokenizer(["\n".join(t.step_texts) for t in traces],
                                               add_special_tokens=False)["input_ids"])
    return {"traces": len(traces), "sampled_tokens": tokens, "rollouts": 0}


def score(prm_dir: Path, orm_dir: Path, val: list[Trace], test: list[Trace],
          out: Path) -> tuple[list[Trace], list[Trace]]:
    """Copies of val and test with PRM step scores and the ORM's solution score (meta
    orm_score); `val` and `test` themselves are left as they were."""
    paths = out / "scored_val.jsonl", out / "scored_test.jsonl"
    if all(p.exists() for p in paths):
        return read_traces(paths[0]), read_traces(paths[1])
    from prm.reward.model import RewardModel

    prm_model = RewardModel.from_pretrained(str(prm_dir))
    orm_model = RewardModel.from_pretrained(str(orm_dir))
    val, test = copies(val), copies(test)
    for traces, path in zip((val, test), paths):
        for trace in traces:
            # Gold labels stay in meta; the step labels are the sampler's gold copy, which
            # a reader of the scored file should not mistake for model output.
            for step in trace.steps:
                step.hard_label, step.label_source = None, None
        prm_model.score_traces(traces)
        items = [(t.problem, t.step_texts) for t in traces]
        for trace, scores in zip(traces, orm_model.score_many(items)):
            trace.meta["orm_score"] = orm_model.solution_score(scores)
        write_traces(path, traces)
    return val, test


def evaluate(val: list[Trace], test: list[Trace], folder: Path) -> dict:
    from evals.report import EvalConfig, write_report

    return write_report(folder, test, EvalConfig(gold="meta"), val_traces=val,
                        inputs={"test": "scored_test.jsonl", "validation": "scored_val.jsonl"})


def checker_blind(test: list[Trace], threshold: float) -> dict:
    """The PRM where the sympy checker is blind: first-error F1 on the flawed test traces sympy
    refutes nowhere plus the clean ones, and the false alarms on fully correct traces, at the
    first-error threshold chosen on validation (`evals.checker_blind`)."""
    import copy

    from annotate.checkers import get_checker
    from evals.checker_blind import checker_blind_subset, false_alarm_rate
    from evals.first_error import first_error_metrics

    checker, checked = get_checker("sympy"), copy.deepcopy(test)
    for trace in checked:
        for i, step in enumerate(trace.steps):
            step.verdicts = [checker.check(trace.problem, trace.step_texts[:i], step.text)]
    blind = checker_blind_subset(checked, "sympy")
    return {"f1": first_error_metrics(blind, threshold)["overall"]["f1"],
            "blind_flawed_traces": sum(t.meta["gold_first_error"] >= 0 for t in blind),
            "false_alarms": false_alarm_rate(test, threshold), "threshold": threshold}


def search_test(config: DemoConfig, completer, prm_dir: Path, test: list[Trace], out: Path) -> dict:
    """Step-level beam search (`prm.search`) on the test problems at the tokens of
    `eval_samples` solutions, guided by the PRM with sympy-refuted steps scored 0."""
    path = out / "search_beam.jsonl"
    if not path.exists():
        from annotate.checkers.scorer import CheckerAwareScorer
        from prm.reward.model import RewardModel
        from prm.search import SearchConfig, search

        scorer = CheckerAwareScorer(RewardModel.from_pretrained(str(prm_dir)), ["sympy"])
        settings = SearchConfig(strategy="beam", budget=f"{config.eval_samples}x", step_tokens=40,
                                temperature=config.temperature, seed=config.seed)
        write_traces(path, search(test, completer, scorer, config=settings, progress=True).traces)
    traces = read_traces(path)
    spent = [t.meta["search"]["compute"]["generated_tokens"] for t in traces]
    return {"strategy": "beam", "budget": traces[0].meta["search"]["budget"], "scorer": "PRM + sympy refutations",
            "solve_rate": sum(t.outcome_label == 1 for t in traces) / len(traces),
            "tokens_per_problem": sum(spent) / len(spent),
            "tokens_per_solution": traces[0].meta["search"]["settings"]["tokens_per_solution"]}


# -- the summary --------------------------------------------------------------------------

def label_quality_table(sets: dict[str, list[Trace]]) -> dict[str, dict]:
    from evals.label_quality import label_quality

    return {name: label_quality(traces, "meta") for name, traces in sets.items()}


def summarise(config: DemoConfig, splits, labels, metrics, timings, seconds) -> dict:
    best = metrics.get("best_of_n", {})
    return {"config": asdict(config), "seconds": round(seconds, 1), "stages": timings,
            "solve_rate": {name: sum(t.outcome_label == 1 for t in traces) / len(traces)
                           for name, traces in splits.items()},
            "label_quality": labels, "step": metrics.get("step"),
            "first_error": metrics.get("first_error"), "best_of_n": best,
            "threshold": metrics.get("threshold"), "checker_blind": metrics.get("checker_blind")}


def _blind_line(blind: dict) -> str:
    alarms = blind["false_alarms"]
    return (f"PRM where sympy is blind: first-error F1 {number(blind['f1'])} on {blind['blind_flawed_traces']} flawed "
            f"test traces sympy refutes nowhere plus the clean ones; false alarms on "
            f"{alarms['alarms']} of {alarms['correct_traces']} fully correct traces (threshold {blind['threshold']:.2f}, "
            "chosen on validation)")


def summary_lines(summary: dict) -> list[str]:
    lines = [f"wall time {summary['seconds']:.0f} s"]
    for name, quality in summary["label_quality"].items():
        lines.append(f"labels {name}: hard-label agreement with gold {percent(quality.get('agreement'))}")
    if summary.get("step"):
        lines.append(f"PRM step accuracy vs gold (test): {percent(summary['step']['accuracy'])}")
    if summary.get("checker_blind"):
        lines.append(_blind_line(summary["checker_blind"]))
    final = _best_of_n_at_max(summary)
    if final:
        lines.append("best-of-{n}: PRM (min) {prm}, majority {maj}, ORM {orm}, oracle {orc}".format(**final))
    implicit = summary.get("implicit")
    if implicit and (implicit.get("best_of_n") or {}).get("methods"):
        curves = implicit["best_of_n"]["methods"]
        lines.append(f"implicit PRM (outcome labels only, 0 rollouts), best-of-{implicit['best_of_n']['n'][-1]}: "
                     f"min {percent(curves.get('prm_min', [None])[-1])}, last {percent(curves.get('prm_last', [None])[-1])}")
    searched = summary.get("search")
    if searched:
        lines.append(f"beam search at {searched['budget']} ({searched['scorer']}): {percent(searched['solve_rate'])}")
    return lines


def _best_of_n_at_max(summary: dict) -> dict | None:
    best = summary.get("best_of_n") or {}
    curves, ns = best.get("methods"), best.get("n")
    if not curves or not ns:
        return None
    pick = {name: percent(curves[name][-1]) if name in curves else MISSING
            for name in ("prm_min", "majority", "orm", "oracle")}
    return {"n": ns[-1], "prm": pick["prm_min"], "maj": pick["majority"], "orm": pick["orm"],
            "orc": pick["oracle"]}


def render_report(summary: dict) -> str:
    cfg = summary["config"]
    lines = ["# prm demo report", "",
             f"Embedded world, model `{cfg['model']}`, seed {cfg['seed']}; "
             f"{cfg['train_problems']} training problems × {cfg['train_samples']} samples, "
             f"{cfg['val_problems']} validation and {cfg['test_problems']} test problems × "
             f"{cfg['eval_samples']} samples; Monte Carlo N = {cfg['mc_n']}. "
             f"Wall time {summary['seconds']:.0f} s.", "",
             "Solve rate of the sampled solutions: " + ", ".join(
                 f"{k} {percent(v)}" for k, v in summary["solve_rate"].items()), "",
             "## Automatic labels against gold (training traces)", ""]
    rows = []
    for name, q in summary["label_quality"].items():
        rollouts = (q.get("rollouts") or {}).get("per_trace_mean")
        rows.append([name, percent(q.get("agreement")), percent((q.get("first_error") or {}).get("accuracy")),
                     number(rollouts, 1)])
    lines += table_lines(["labels", "hard-label agreement", "first-error accuracy", "rollouts per trace"],
                         rows)
    implicit = summary.get("implicit") or {}
    verifiers = [("PRM (Monte Carlo labels + sympy override)", summary, _mc_cost(summary))]
    if implicit:
        cost = implicit.get("cost") or {}
        verifiers.append(("implicit PRM (outcome labels only)", implicit,
                          f"0 rollouts, {cost.get('traces', 'n/a')} traces, {cost.get('sampled_tokens', 'n/a')} "
                          "sampled tokens"))
    lines += ["", "## Step-level verifiers on held-out test traces, against gold", ""]
    rows = []
    for name, figures, cost in verifiers:
        step, first = figures.get("step") or {}, figures.get("first_error") or {}
        rows.append([name, percent(step.get("accuracy")), number(step.get("f1")), number(step.get("auroc")),
                     number((first.get("overall") or first).get("f1")), cost])
    lines += table_lines(["verifier", "step accuracy", "F1 (bad steps)", "AUROC", "first-error F1 (ProcessBench)",
                          "training labels"], rows) + [""]
    if summary.get("checker_blind"):
        lines += [_blind_line(summary["checker_blind"]) + " (`python bench/verifiers.py`: every verifier, 3 seeds).",
                  ""]
    best = summary.get("best_of_n") or {}
    if best.get("methods"):
        ns, curves = best["n"], best["methods"]
        methods = [m for m in ("oracle", "majority", "orm", "prm_min", "prm_prod", "prm_mean", "prm_last",
                               "weighted_min") if m in curves]
        rows = [[m] + [percent(v) for v in curves[m]] for m in methods]
        implicit_curves = (implicit.get("best_of_n") or {}).get("methods") or {}
        for how in ("min", "last", "mean"):
            if f"prm_{how}" in implicit_curves:
                rows.append([f"implicit_{how}"] + [percent(v) for v in implicit_curves[f"prm_{how}"]])
        lines += ["## Best-of-N solve rate on test problems", ""]
        if implicit_curves:
            lines += ["`prm_*`: the PRM trained on Monte Carlo labels; `implicit_*`: the implicit PRM trained on "
                      "outcome labels only (zero rollouts); `*_min` / `*_last` / `*_mean`: how step scores "
                      "aggregate into a solution score.", ""]
        lines += table_lines(["method"] + [f"N={n}" for n in ns], rows)
    searched = summary.get("search")
    if searched:
        lines += ["", "## Step-level beam search on test problems", "",
                  (f"Beam search (`prm search --strategy beam --budget {searched['budget']}`) guided by the "
                   f"{searched['scorer']}, at the tokens of {searched['budget'][:-1]} solutions "
                   f"(1x = {searched['tokens_per_solution']:g} tokens, never exceeded per problem): "
                   f"**{percent(searched['solve_rate'])}** solved, {searched['tokens_per_problem']:.0f} tokens "
                   "per problem (the best-of-N table above spends the tokens of N solutions). "
                   "Curves over budgets and seeds: `python bench/search.py`.")]
    if summary.get("agreement"):
        from prm.agreement import agreement_lines

        lines += ["", "## First-error agreement of the label sources (training traces)", "",
                  *agreement_lines(summary["agreement"])]
    lines += ["", "Full report with plots: [eval/report.md](eval/report.md).", ""]
    return "\n".join(lines)


def _mc_cost(summary: dict) -> str:
    rollouts = ((summary.get("label_quality") or {}).get("Monte Carlo (hard)", {}).get("rollouts") or {})
    mean = rollouts.get("per_trace_mean")
    return "Monte Carlo rollouts" if mean is None else f"{mean:.1f} rollouts per trace"


