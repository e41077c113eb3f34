"""`prm export --to step-dpo|trl-dpo`: step-level preference pairs from Monte Carlo labels whose
rollout texts were kept, labelled here by the real tiny-gsm model, and loaded by TRL's DPOTrainer."""

import json
import math
import random
from collections import Counter

import pytest

from annotate.grading import Grader, extract_answer
from completers.world import generate_problems
from prm.app.cli import main
from prm.formats.gsm8k import inject_calculator_error
from prm.io import read_traces, write_traces
from prm.records import Rollouts, Step, Trace

STEP_DPO_FIELDS = ["dataset", "prompt", "initial_reason_steps", "chosen", "rejected", "full_chosen",
                   "full_rejected", "answer"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Six world problems and a copy of each with a wrong calculator result, Monte Carlo labelled
    by tiny-gsm with the rollout texts kept."""
    folder = tmp_path_factory.mktemp("preference")
    rng = random.Random(0)
    traces = []
    for problem in generate_problems(6, seed=3):
        trace = problem.to_trace()
        traces.append(trace)
        bad = inject_calculator_error(trace, rng)
        bad.id += "-bad"
        traces.append(bad)
    write_traces(folder / "traces.jsonl", traces)
    out = folder / "labelled.jsonl"
    assert main(["annotate", str(folder / "traces.jsonl"), str(out), "--completer", "tiny-gsm", "--method", "mc",
                 "--n", "4", "--max-new-tokens", "60", "--keep-texts", "--no-progress"]) == 0
    return out


def rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def reached(text, reference, grader):
    return grader.is_equivalent(extract_answer(text), reference)


def sampled(trace, index):
    """The continuations sampled from the prefix ending at step `index`, as exported (stripped)."""
    return {text.strip() for text in trace.steps[index].rollouts.texts}


def test_step_dpo_rows_pair_a_continuation_that_reached_the_answer_with_one_that_did_not(labelled, tmp_path):
    out = tmp_path / "step_dpo.jsonl"
    assert main(["export", "--to", "step-dpo", str(labelled), str(out)]) == 0
    found = rows(out)
    assert found, "tiny-gsm's rollouts of these traces both reach and miss the answer"
    traces = {t.problem: t for t in read_traces(labelled) if not t.id.endswith("-bad")}
    grader = Grader()
    for row in found:
        assert list(row) == STEP_DPO_FIELDS
        assert reached(row["full_chosen"], row["answer"], grader)
        assert not reached(row["full_rejected"], row["answer"], grader)
        assert row["full_chosen"].startswith(row["chosen"]) and row["full_rejected"].startswith(row["rejected"])
        assert row["chosen"] != row["rejected"] and "\n" not in row["chosen"]
        prefix = row["initial_reason_steps"].splitlines()
        assert any({row["full_chosen"], row["full_rejected"]} <= sampled(t, len(prefix) - 1)
                   for t in read_traces(labelled) if t.problem == row["prompt"] and t.step_texts[:len(prefix)] == prefix)
    grader.close()
    assert any(row["prompt"] in traces for row in found)


def test_pairs_per_prefix_caps_the_pairs_taken_from_one_prefix(labelled, tmp_path):
    counts = {}
    for n in (1, 3):
        out = tmp_path / f"pairs{n}.jsonl"
        assert main(["export", "--to", "step-dpo", str(labelled), str(out), "--pairs-per-prefix", str(n)]) == 0
        per_prefix = Counter((r["prompt"], r["initial_reason_steps"]) for r in rows(out))
        assert max(per_prefix.values()) <= n
        counts[n] = sum(per_prefix.values())
    assert counts[3] > counts[1]


def test_first_error_pairs_reject_the_trace_from_its_first_wrong_step(labelled, tmp_path):
    out = tmp_path / "first_error.jsonl"
    assert main(["export", "--to", "step-dpo", str(labelled), str(out), "--pairs-from", "first-error",
                 "--pairs-per-prefix", "2"]) == 0
    found = rows(out)
    assert found
    by_problem = {}
    for trace in read_traces(labelled):
        by_problem.setdefault(trace.problem, []).append(trace)
    for row in found:
        prefix = row["initial_reason_steps"].splitlines()
        trace = next(t for t in by_problem[row["prompt"]] if t.step_texts[:len(prefix)] == prefix
                     and t.first_error() == len(prefix))
        assert row["full_rejected"] == "\n".join(trace.step_texts[len(prefix):])
        assert row["full_chosen"] in sampled(trace, len(prefix) - 1)


def handmade_trace():
    """One prefix with six continuations. Their first steps: "B" twice, both reaching 42 (value 1);
    "A" twice, once reaching it (value 1/2); "C" twice, never (value 0)."""
    texts = ["B\n#### 42", "A\n#### 41", "A\n#### 42", "C\n#### 40", "B\n#### 42", "C\n#### 40"]
    rollouts = Rollouts(correct=3, total=6, answers=[extract_answer(t) for t in texts], texts=texts)
    return Trace(id="hand", problem="What is six times seven?", reference_answer="42",
                 steps=[Step("6 * 7 is what we want.", hard_label=1, soft_label=0.5, rollouts=rollouts),
                        Step("So 42.")])


@pytest.mark.parametrize("margin, expected", [
    # reached in sampling order B, A, B; missed A, C, C: the pairs (B, A) 1/2, (A, C) 1/2, (B, C) 1
    ("0", {("B", "A"), ("A", "C"), ("B", "C")}),
    ("0.5", {("B", "A"), ("A", "C"), ("B", "C")}),
    ("0.6", {("B", "C")}),
])
def test_min_margin_keeps_pairs_whose_chosen_step_is_that_much_more_likely_to_reach_the_answer(
        tmp_path, margin, expected):
    write_traces(tmp_path / "in.jsonl", [handmade_trace()])
    out = tmp_path / "out.jsonl"
    assert main(["export", "--to", "step-dpo", str(tmp_path / "in.jsonl"), str(out), "--pairs-per-prefix", "3",
                 "--min-margin", margin]) == 0
    assert {(r["chosen"], r["rejected"]) for r in rows(out)} == expected


def test_traces_without_rollout_texts_are_reported_not_paired(tmp_path, capsys):
    trace = handmade_trace()
    trace.steps[0].rollouts.texts = None
    write_traces(tmp_path / "in.jsonl", [trace])
    assert main(["export", "--to", "trl-dpo", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl")]) == 0
    assert rows(tmp_path / "out.jsonl") == []
    assert "no rollout texts (label with `prm annotate --keep-texts`)" in capsys.readouterr().out


def test_trl_dpo_output_goes_through_dpo_trainers_dataset_preparation_and_one_step(labelled, tmp_path):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from helpers.reward_models import tiny_gpt2

    out = tmp_path / "dpo_data"  # a datasets folder, as DPOTrainer users keep them
    assert main(["export", "--to", "trl-dpo", str(labelled), str(out), "--pairs-per-prefix", "2"]) == 0
    table = datasets.load_from_disk(str(out))
    assert table.column_names == ["prompt", "chosen", "rejected"] and len(table) >= 2
    folder = tiny_gpt2(tmp_path / "policy", lm_head=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder)
    args = DPOConfig(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2,
                     report_to=[], max_length=256, use_cpu=True, save_strategy="no", logging_steps=1)
    trainer = DPOTrainer(model=model, args=args, train_dataset=table, processing_class=tokenizer)
    prepared = trainer.train_dataset
    first = prepared[0]
    decoded = tokenizer.decode(first["prompt_ids"] + first["chosen_ids"])
    assert decoded == table[0]["prompt"] + table[0]["chosen"] + tokenizer.eos_token
    assert tokenizer.decode(first["rejected_ids"]).endswith(table[0]["rejected"] + tokenizer.eos_token)
    result = trainer.train()
    assert math.isfinite(result.training_loss)


def test_step_dpo_rows_prepare_as_step_dpos_trainer_reads_them(labelled, tmp_path):
    """Step-DPO trains on prompt + initial_reason_steps against the chosen and rejected steps."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from helpers.reward_models import tiny_gpt2

    out = tmp_path / "step_dpo.parquet"
    assert main(["export", "--to", "step-dpo", str(labelled), str(out)]) == 0
    table = datasets.Dataset.from_parquet(str(out))
    table = table.map(lambda r: {"prompt": r["prompt"] + "\n" + r["initial_reason_steps"]},
                      remove_columns=["initial_reason_steps", "full_chosen", "full_rejected", "dataset", "answer"])
    folder = tiny_gpt2(tmp_path / "policy", lm_head=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.eos_token
    args = DPOConfig(output_dir=str(tmp_path / "run"), max_steps=1, report_to=[], use_cpu=True,
                     save_strategy="no")
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(folder), args=args, train_dataset=table,
                         processing_class=tokenizer)
    for row, prepared in zip(table, trainer.train_dataset):
        assert tokenizer.decode(prepared["chosen_ids"]).endswith(row["chosen"] + tokenizer.eos_token)
