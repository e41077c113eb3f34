"""The `vllm-pooling:` scorer against a loopback imitation of vLLM's /pooling endpoint
(tests/helpers/vllm_pooling_server.py) running tiny models in this process: the same scores as
the in-process scorer of the family, over the current `token_classify` task and the older
`encode` / `reward` tasks with a step pooler, over several endpoints with retries and an API key, and
through `prm score`."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from helpers.completers import write_search_problems
from helpers.reward_models import SHARED, make_qwen_prm, tiny_gpt2
from helpers.vllm_pooling_server import ImitationPoolingServer

from prm.app.cli import main
from prm.app.scorers import load_step_scorer
from prm.formats.gsm8k import read_gsm8k
from prm.reward.loading import detect_family, load_scorer
from prm.reward.published.common import single_token_id
from prm.reward.vllm_pooling import VLLMError, VLLMPoolingScorer, parse_spec, serve_command

KEY = "test-key-123"


def items(n=4):
    return [(t.problem, t.step_texts) for t in read_gsm8k(SHARED / "gsm8k" / "train.jsonl", limit=n)]


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    return make_qwen_prm(tmp_path_factory.mktemp("qwen") / "Qwen2.5-Math-PRM-tiny")


@pytest.fixture(scope="module")
def qwen_local(qwen_folder):
    return load_scorer(str(qwen_folder))


def qwen_server(scorer, **options):
    """vLLM serving the tiny Qwen PRM: the head's logits at every token."""
    def forward(ids):
        hidden = scorer.model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        return scorer.model.score(hidden)
    return ImitationPoolingServer(forward, scorer.tokenizer, "Qwen/Qwen2.5-Math-PRM-tiny", **options)


def free_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_spec_names_the_model_and_every_endpoint():
    assert parse_spec("vllm-pooling:Qwen/Qwen2.5-Math-PRM-7B@http://a:8000,http://b:8000/") == (
        "Qwen/Qwen2.5-Math-PRM-7B", ["http://a:8000", "http://b:8000"])
    assert parse_spec("vllm-pooling:http://a:8000") == (None, ["http://a:8000"])
    with pytest.raises(ValueError, match="expected vllm-pooling"):
        parse_spec("vllm-pooling:Qwen/Qwen2.5-Math-PRM-7B")


def test_qwen_prm_over_token_classify_equals_the_in_process_scorer(qwen_folder, qwen_local):
    data = items()
    expected = qwen_local.score_many(data)
    with qwen_server(qwen_local, api_key=KEY) as one, qwen_server(qwen_local, api_key=KEY) as two:
        scorer = load_step_scorer(f"vllm-pooling:{qwen_folder}@{one.url},{two.url}", api_key=KEY, batch_size=1)
        assert isinstance(scorer, VLLMPoolingScorer) and scorer.family == "qwen-prm"
        got = scorer.score_many(data)
        sent = one.requests + two.requests
    assert len(got) == len(expected)
    for row, want in zip(got, expected):
        assert row == pytest.approx(want, abs=1e-5)
    assert one.requests and two.requests  # batches spread over both endpoints
    assert {r["task"] for r in sent} == {"token_classify"} and not any(r["add_special_tokens"] for r in sent)
    assert scorer.solution_score(got[0]) == pytest.approx(qwen_local.solution_score(expected[0]), abs=1e-5)


@pytest.mark.parametrize("old_task", ["encode", "reward"])
def test_an_older_server_task_and_a_step_pooler_give_the_same_scores(qwen_local, qwen_folder, old_task):
    """vLLM <= 0.10 pools per token with the request task `encode`; `reward` is the model-level
    name some servers take per request. A step pooler returns rows at <extra_0> only."""
    data = items(3)
    expected = qwen_local.score_many(data)
    separator = qwen_local.separator_id
    with qwen_server(qwen_local, tasks=(old_task,), pooler="step", step_tag_id=separator) as server:
        scorer = load_scorer(f"vllm-pooling:{qwen_folder}@{server.url}")
        got = scorer.score_many(data)
        first = len(server.requests)
        assert scorer.score_many(data) == got
        tasks = [r["task"] for r in server.requests]
    for row, want in zip(got, expected):
        assert row == pytest.approx(want, abs=1e-5)
    assert tasks[0] == "token_classify" and old_task in tasks[:first]
    assert set(tasks[first:]) == {old_task}  # the task the server took is remembered


def test_a_dead_endpoint_and_a_loading_server_are_retried(qwen_local, qwen_folder):
    data = items(2)
    expected = qwen_local.score_many(data)
    with qwen_server(qwen_local, fail_first=1) as server:
        scorer = load_scorer(f"vllm-pooling:{qwen_folder}@{free_port_url()},{server.url}")
        scorer.backoff = 0.01
        got = scorer.score_many(data, batch_size=1)
    for row, want in zip(got, expected):
        assert row == pytest.approx(want, abs=1e-5)


def test_a_wrong_api_key_is_one_clear_error(qwen_local, qwen_folder, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "wrong")
    with qwen_server(qwen_local, api_key=KEY) as server:
        scorer = load_scorer(f"vllm-pooling:{qwen_folder}@{server.url}")
        with pytest.raises(VLLMError, match="401.*Unauthorized"):
            scorer.score_many(items(1))
        monkeypatch.setenv("VLLM_API_KEY", KEY)
        assert load_scorer(f"vllm-pooling:{qwen_folder}@{server.url}").score_many(items(1))[0][0] is not None


def test_without_model_the_served_model_is_asked_for(qwen_local, qwen_folder):
    with qwen_server(qwen_local, root=str(qwen_folder)) as server:
        assert detect_family(f"vllm-pooling:{server.url}") == "qwen-prm"
        got = load_scorer(f"vllm-pooling:{server.url}").score_many(items(1))
    assert got[0] == pytest.approx(qwen_local.score_many(items(1))[0], abs=1e-5)


def test_math_shepherd_via_returned_token_ids_equals_the_in_process_scorer(tmp_path):
    folder = tiny_gpt2(tmp_path / "math-shepherd-prm", lm_head=True)
    local = load_scorer(str(folder), family="math-shepherd")
    good, bad = (single_token_id(local.tokenizer, t) for t in ("+", "-"))
    data = items(3)
    expected = local.score_many(data)

    def forward(ids):
        return local.model(input_ids=torch.tensor([ids])).logits[0]

    # `--pooler-config '{"pooling_type": "STEP", "returned_token_ids": [good, bad]}'`: a row per token
    with ImitationPoolingServer(forward, local.tokenizer, "shepherd", pooler="step",
                                returned_token_ids=[good, bad]) as server:
        got = load_scorer(f"vllm-pooling:{folder}@{server.url}", family="math-shepherd").score_many(data)
    for row, want in zip(got, expected):
        assert row == pytest.approx(want, abs=1e-5)
    pooler = serve_command(str(folder), "math-shepherd").split("--pooler-config ")[1].strip("'")
    assert json.loads(pooler) == {"pooling_type": "STEP", "returned_token_ids": [good, bad]}


def test_prm_score_with_a_vllm_pooling_spec_writes_the_in_process_scores(qwen_local, qwen_folder, tmp_path):
    traces = tmp_path / "traces.jsonl"
    data = read_gsm8k(SHARED / "gsm8k" / "train.jsonl", limit=3)
    traces.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in data))
    out = tmp_path / "scored.jsonl"
    with qwen_server(qwen_local) as server:
        assert main(["score", f"vllm-pooling:{qwen_folder}@{server.url}", str(traces), str(out)]) == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    expected = qwen_local.score_many([(t.problem, t.step_texts) for t in data])
    for record, want in zip(scored, expected):
        assert [s["score"] for s in record["steps"]] == pytest.approx(want, abs=1e-5)


def test_prm_eval_processbench_through_vllm_equals_the_in_process_model(qwen_local, qwen_folder, tmp_path):
    from helpers.reward_models import processbench_folder

    data = processbench_folder(tmp_path / "processbench", per_subset=3)
    metrics = {}
    with qwen_server(qwen_local) as server:
        for name, scorer in (("local", str(qwen_folder)), ("vllm", f"vllm-pooling:{qwen_folder}@{server.url}")):
            out = tmp_path / name
            assert main(["eval", "--benchmark", "processbench", "--scorer", scorer, "--data", str(data),
                         "--out", str(out), "--threads", "1"]) == 0
            metrics[name] = json.loads((out / "metrics.json").read_text())["subsets"]
    assert metrics["vllm"] == metrics["local"] and metrics["local"]


def test_process_reward_over_vllm_gives_the_in_process_rewards(qwen_local, qwen_folder):
    from prm.rl.rewards import ProcessReward

    data = items(3)
    prompts = [problem for problem, _ in data]
    completions = ["\n".join(steps) for _, steps in data]
    with qwen_server(qwen_local) as server:
        remote = ProcessReward(load_step_scorer(f"vllm-pooling:{qwen_folder}@{server.url}"))
        got = remote(prompts, completions, problem=prompts)
    want = ProcessReward(qwen_local)(prompts, completions, problem=prompts)
    assert got == pytest.approx(want, abs=1e-5)


def test_skywork_one_value_rows_equal_the_in_process_scorer(tmp_path):
    from helpers.reward_models import make_skywork_prm

    folder = make_skywork_prm(tmp_path / "Skywork-PRM-tiny")
    local = load_scorer(str(folder))
    data = items(3)

    def forward(ids):  # the value head's logit per token; the server applies the sigmoid
        hidden = local.model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        return local.model.v_head.summary(hidden)

    with ImitationPoolingServer(forward, local.tokenizer, "skywork") as server:
        scorer = load_scorer(f"vllm-pooling:{folder}@{server.url}")
        assert scorer.family == "skywork"
        got = scorer.score_many(data)
    for row, want in zip(got, local.score_many(data)):
        assert row == pytest.approx(want, abs=1e-5)


def test_prefixes_as_a_search_scores_them_equal_whole_scoring(qwen_local, qwen_folder):
    problem, steps = items(1)[0]
    prefixes = [(problem, steps[:k]) for k in range(1, len(steps) + 1)]
    with qwen_server(qwen_local) as server:
        scorer = load_scorer(f"vllm-pooling:{qwen_folder}@{server.url}")
        scored = scorer.score_prefixes(prefixes)
    for result, want in zip(scored, qwen_local.score_many(prefixes)):
        assert result.scores == pytest.approx(want, abs=1e-5)


def test_prm_search_with_a_vllm_scorer_picks_what_the_in_process_scorer_picks(qwen_local, qwen_folder, tmp_path):
    from prm.io import read_traces

    problems = write_search_problems(tmp_path / "problems.jsonl", 2)
    common = ["--strategy", "beam", "--budget", "4x", "--step-tokens", "40", "--tokens-per-solution", "70",
              "--no-progress"]
    picked = {}
    with qwen_server(qwen_local) as server:
        for name, scorer in (("local", str(qwen_folder)), ("vllm", f"vllm-pooling:{qwen_folder}@{server.url}")):
            out = tmp_path / f"{name}.jsonl"
            assert main(["search", str(problems), str(out), "--scorer", scorer, *common]) == 0
            picked[name] = [(t.id, t.step_texts, t.scores) for t in read_traces(out)]
    assert len(picked["local"]) == 2 and len(picked["vllm"]) == 2
    for (id_l, steps_l, scores_l), (id_v, steps_v, scores_v) in zip(picked["local"], picked["vllm"]):
        assert (id_l, steps_l) == (id_v, steps_v) and scores_l and None not in scores_l
        assert scores_v == pytest.approx(scores_l, abs=1e-5)
