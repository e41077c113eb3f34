"""`prm score` with any scorer spec and the scale options (token budget, dtype, threads)."""

import pytest
import torch
from helpers.reward_models import gsm8k_with_errors

from annotate.checkers.scorer import REFUTED
from prm.app.cli import main
from prm.app.scorers import load_step_scorer
from prm.io import read_traces, write_traces


@pytest.fixture(scope="module")
def traces_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("score") / "traces.jsonl"
    write_traces(path, gsm8k_with_errors(4, seed=2))
    return path


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    from helpers.reward_models import make_qwen_prm

    return str(make_qwen_prm(tmp_path_factory.mktemp("qwen") / "prm"))


def test_prm_score_with_the_checker_scorer(traces_file, tmp_path):
    out = tmp_path / "scored.jsonl"
    assert main(["score", "checker:sympy", str(traces_file), str(out), "--threads", "1"]) == 0
    scored = read_traces(out)
    corrupted = [t for t in scored if t.first_error() not in (None, -1)]
    assert corrupted and all(t.steps[t.first_error()].score == REFUTED for t in corrupted)
    assert all(t.meta["reward_model"]["model"] == "checker:sympy" for t in scored)


def test_prm_score_token_budget_and_dtype_keep_the_scores(traces_file, tmp_path, qwen_folder):
    plain, small = tmp_path / "plain.jsonl", tmp_path / "small.jsonl"
    assert main(["score", qwen_folder, str(traces_file), str(plain), "--threads", "1"]) == 0
    assert main(["score", qwen_folder, str(traces_file), str(small), "--threads", "1",
                 "--max-batch-tokens", "200", "--batch-size", "2"]) == 0
    a, b = read_traces(plain), read_traces(small)
    for x, y in zip(a, b):
        assert x.scores == pytest.approx(y.scores, abs=1e-5)
    bf16 = load_step_scorer(qwen_folder, dtype="bf16", device="cpu", max_batch_tokens=123)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16 and bf16.max_batch_tokens == 123
    rough = bf16.score(a[0].problem, a[0].step_texts)
    assert rough == pytest.approx(a[0].scores, abs=0.05)  # bf16: close, not equal
    aware = tmp_path / "aware.jsonl"
    assert main(["score", qwen_folder + "+checker:sympy", str(traces_file), str(aware), "--threads", "1"]) == 0
    for x, y in zip(a, read_traces(aware)):
        changed = [i for i, (p, q) in enumerate(zip(x.scores, y.scores)) if abs(p - q) > 1e-6]
        assert all(y.scores[i] == REFUTED for i in changed)
