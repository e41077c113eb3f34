"""The reward server and the completion server as FastAPI apps on uvicorn, on loopback: API keys,
validation errors naming the field, JSON only, limits, hostile bodies, a bad item failing
alone, steps past max_length, concurrency, idle connections, metrics, start-up errors, and a
graceful SIGTERM that finishes the batch in flight. Each defect of the old reward server
(issue 23) has a test here."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from completers.text import PLAIN_TEMPLATE, plain_prompt
from completers.world import generate_problems
from prm.reward.model import RewardModel, RewardModelOptions
from prm.reward.scorer import StepScorer
from prm.rl.rewards import ProcessReward
from prm.rl.server import RewardServer
from prm.serving import ServeConfig, ServeError

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def model():
    options = RewardModelOptions(lm_features=True, prompt_template=PLAIN_TEMPLATE, max_length=128)
    return RewardModel.from_backbone("tiny-gsm", options)


@pytest.fixture(scope="module")
def problems():
    return generate_problems(40, seed=7)


def post(url: str, body=None, *, raw: bytes | None = None, headers: dict | None = None,
         timeout: float = 60) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str, headers: dict | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def query_of(problem, steps: list[str]) -> dict:
    prompt = plain_prompt(problem.question, [])
    return {"query": [prompt + "\n".join(steps) + "<|endoftext|>"], "prompts": [prompt]}


class PoisonScorer(StepScorer):
    """The real model, refusing (ValueError) any solution whose problem contains "POISON", and
    optionally slow; records the size of every score_many call."""

    def __init__(self, base: StepScorer, delay: float = 0.0):
        self.base, self.delay, self.calls = base, delay, []
        self.config = base.config

    def score_many(self, items, batch_size=None, progress=False):
        self.calls.append(len(items))
        time.sleep(self.delay)
        if any("POISON" in problem for problem, _ in items):
            raise ValueError("this item cannot be tokenized")
        return self.base.score_many(items, batch_size, progress)


# -- keys ------------------------------------------------------------------------------------

def test_an_api_key_is_required_everywhere_but_health(model, problems, monkeypatch):
    monkeypatch.setenv("PRM_API_KEY", KEY)  # read when no key is given
    body = query_of(problems[0], problems[0].steps)
    with RewardServer(ProcessReward(model)) as server:
        url = server.url + "/get_reward"
        assert post(url, body)[0] == 401
        assert post(url, body, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert post(url, body, headers={"Authorization": KEY})[0] == 401  # the scheme is required
        status, answer = post(url, body, headers={"Authorization": f"Bearer {KEY}"})
        assert status == 200 and len(answer["rewards"]) == 1
        assert get(server.url + "/health")[0] == 200
        assert get(server.url + "/metrics")[0] == 401
        assert get(server.url + "/metrics", {"Authorization": f"Bearer {KEY}"})[0] == 200


def test_the_openai_completer_sends_its_key_and_a_missing_key_is_not_retried(monkeypatch):
    from completers.base import CompletionRequest, SamplingParams
    from completers.openai_completer import CompletionError, OpenAICompleter
    from completers.server import CompletionServer
    from completers.transformers_completer import TransformersCompleter

    local = TransformersCompleter("tiny-gsm")
    request, params = CompletionRequest("What is 2+3?", []), SamplingParams(n=2, max_new_tokens=6, seed=1)
    with CompletionServer(local, "tiny-gsm", api_key=KEY) as server:
        keyed = OpenAICompleter(server.url, model="tiny-gsm", api_key=KEY, backoff=0.01)
        assert keyed.complete_many([request], params) == local.complete_many([request], params)
        assert keyed.list_models() == ["tiny-gsm"]
        monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the completer's default key, as OpenAI's clients read it
        assert OpenAICompleter(server.url, backoff=0.01).list_models() == ["tiny-gsm"]
        monkeypatch.delenv("OPENAI_API_KEY")
        before = server.stats["requests"]
        with pytest.raises(CompletionError, match="status 401") as caught:
            OpenAICompleter(server.url, model="tiny-gsm", max_retries=3, backoff=0.01).complete_many([request], params)
        assert caught.value.status == 401
        assert server.stats["requests"] == before  # refused before it counted as a completion request
        status, body = post(server.url + "/v1/completions", {"prompt": "x", "temperature": "hot"},
                            headers={"Authorization": f"Bearer {KEY}"})
        assert status == 400 and "`temperature`" in body["error"]["message"]
        assert body["error"]["type"] == "invalid_request_error" and body["detail"][0]["loc"] == ["body", "temperature"]


def test_binding_beyond_loopback_without_a_key_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="prm.serving"):
        ServeConfig(host="0.0.0.0", api_key=None).listen().close()
        assert "without an API key" in caplog.text
        caplog.clear()
        ServeConfig(host="0.0.0.0", api_key=KEY).listen().close()
        ServeConfig(host="127.0.0.1", api_key=None).listen().close()
        assert "without an API key" not in caplog.text


# -- what a request may be -------------------------------------------------------------------

def test_validation_errors_name_the_field_and_the_schema_is_published(model, problems):
    with RewardServer(ProcessReward(model)) as server:
        status, body = post(server.url + "/get_reward", {"query": ["a", {"x": 1}]})
        assert status == 400 and "`query[1]` must be a text" in body["error"]
        assert body["detail"][0]["loc"][:3] == ["body", "query", 1]
        status, body = post(server.url + "/score_steps", {"items": [{"problem": "p"}]})
        assert status == 400 and "`items[0].steps` is required" in body["error"]
        status, body = post(server.url + "/score_steps", {"items": [{"problem": "p\ud800", "steps": ["a"]}]})
        assert status == 400 and "`items[0].problem` is not valid Unicode" in body["error"]
        schema = json.loads(get(server.url + "/openapi.json")[1])
        assert {"RewardRequest", "RewardResponse", "ScoreStepsRequest"} <= set(schema["components"]["schemas"])
        status, page = get(server.url + "/docs")
        assert status == 200 and "swagger" in page.lower()


def test_only_json_bodies_are_accepted(model, problems):
    body = json.dumps(query_of(problems[0], problems[0].steps)).encode()
    with RewardServer(ProcessReward(model)) as server:
        status, answer = post(server.url + "/get_reward", raw=body, headers={"Content-Type": "text/plain"})
        assert status == 415 and "application/json" in answer["error"]
        assert post(server.url + "/get_reward", raw=body,
                    headers={"Content-Type": "application/json; charset=utf-8"})[0] == 200


def test_hostile_bodies_are_client_errors_and_the_server_keeps_serving(model, problems):
    good = query_of(problems[0], problems[0].steps)
    with RewardServer(ProcessReward(model, outcome_weight=1.0)) as server:
        url = server.url + "/get_reward"
        deep = b'{"query": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        status, answer = post(url, raw=deep)
        assert status == 400 and "nested too deeply" in answer["error"]
        huge = ('{"query": %s, "labels": [%s]}' % (json.dumps(good["query"]), "9" * 5000)).encode()
        status, answer = post(url, raw=huge)
        assert status == 400 and "digits" in answer["error"]
        assert post(url, {**good, "labels": ["1"]})[0] == 200
        stats = json.loads(get(server.url + "/health")[1])["stats"]
        assert stats["failed"] == 0 and stats["bad_requests"] == 2


def test_a_bad_item_fails_alone_while_its_batch_is_answered(model, problems):
    scorer = PoisonScorer(model)
    with RewardServer(ProcessReward(scorer), max_wait=0.5) as server:
        url = server.url + "/get_reward"
        bodies = [query_of(p, p.steps) for p in problems[:40]]
        bodies.append(query_of(problems[0], ["p\ud800"]))  # a lone surrogate: not text
        poisoned = query_of(problems[1], problems[1].steps)
        poisoned["query"][0] = poisoned["query"][0].replace("Question: ", "Question: POISON ")
        poisoned["prompts"][0] = poisoned["prompts"][0].replace("Question: ", "Question: POISON ")
        bodies.append(poisoned)  # valid text the model refuses: found by re-scoring the batch one by one
        answers: dict[int, tuple[int, dict]] = {}
        start = threading.Barrier(len(bodies))

        def client(i: int) -> None:
            start.wait()
            answers[i] = post(url, bodies[i])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    statuses = [answers[i][0] for i in range(len(bodies))]
    assert statuses[:40] == [200] * 40, statuses
    assert statuses[40] == 400 and "not valid Unicode" in answers[40][1]["error"]
    assert statuses[41] == 400 and "cannot be tokenized" in answers[41][1]["error"]
    assert max(scorer.calls) > 1  # the good requests were batched with the poisoned one first


def test_steps_past_max_length_count_as_the_worst_step_and_too_many_are_refused(model, problems):
    problem = problems[2]
    right, wrong = problem.steps + [f"#### {problem.answer}"], problem.steps + [f"#### {problem.answer + 1}"]
    filler = [f"{problem.steps[0]}"] * 120
    hidden_wrong = problem.steps[:-1] + filler + [problem.steps[-1] + " plus 7 is 1000"]
    with RewardServer(ProcessReward(model), max_steps=500) as server:
        url = server.url + "/get_reward"
        status, honest = post(url, query_of(problem, right))
        assert status == 200 and honest["extra_logs"]["unscored_steps"] == [0.0]
        status, padded = post(url, query_of(problem, hidden_wrong))
        assert status == 200 and padded["extra_logs"]["unscored_steps"][0] > 0
        # hiding a step past max_length can only lower the reward: the unscored tail scores 0
        honest_wrong = post(url, query_of(problem, wrong))[1]["rewards"][0]
        assert padded["rewards"] == [0.0] and padded["rewards"][0] <= honest_wrong
        status, steps = post(server.url + "/score_steps", query_of(problem, hidden_wrong))
        assert status == 200 and steps["step_scores"][0][-1] is None and steps["scores"] == [0.0]
        assert steps["unscored_steps"] == padded["extra_logs"]["unscored_steps"]
        status, refused = post(url, query_of(problem, ["1 + 1 = 2"] * 501))
        assert status == 413 and "501 steps, more than 500" in refused["error"]


# -- load, connections, time -----------------------------------------------------------------

def test_32_concurrent_clients_sending_20_requests_each_get_no_connection_error(model, problems):
    with RewardServer(ProcessReward(model), max_wait=0.01) as server:
        url = server.url + "/get_reward"
        bodies = [query_of(p, p.steps) for p in problems[:32]]
        expected = {i: post(url, bodies[i])[1]["rewards"] for i in range(32)}
        errors, wrong = [], []

        def client(i: int) -> None:
            for _ in range(20):
                try:  # a new connection per request, as the reproduction did
                    status, body = post(url, bodies[i])
                    if status != 200 or body["rewards"] != expected[i]:
                        wrong.append((i, status, body))
                except OSError as error:
                    errors.append(repr(error))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and wrong == []


def test_a_thousand_idle_connections_do_not_grow_threads_and_others_are_answered(model, problems):
    with RewardServer(ProcessReward(model)) as server:
        host, port = re.match(r"http://([^:]+):(\d+)", server.url).groups()
        threads_before = threading.active_count()
        idle = []
        try:
            for _ in range(1000):
                idle.append(socket.create_connection((host, int(port)), timeout=10))
            time.sleep(0.2)  # let the server accept them all
            status, body = post(server.url + "/get_reward", query_of(problems[0], problems[0].steps))
            assert status == 200
            assert threading.active_count() <= threads_before + 2  # no thread per connection
        finally:
            for sock in idle:
                sock.close()


def test_requests_time_out_and_concurrency_is_bounded(model, problems):
    slow = PoisonScorer(model, delay=1.5)
    with RewardServer(ProcessReward(slow), request_timeout=0.5, max_wait=0.0) as server:
        status, body = post(server.url + "/get_reward", query_of(problems[3], problems[3].steps))
        assert status == 503 and "more than 0.5 s" in body["error"]
    with RewardServer(ProcessReward(PoisonScorer(model, delay=1.0)), max_pending=1, max_wait=0.0) as server:
        answers = []
        first = threading.Thread(target=lambda: answers.append(
            post(server.url + "/get_reward", query_of(problems[4], problems[4].steps))))
        first.start()
        time.sleep(0.3)
        second = post(server.url + "/get_reward", query_of(problems[5], problems[5].steps))
        first.join()
        assert second[0] == 503 and answers[0][0] == 200


def test_metrics_are_prometheus_text(model, problems):
    with RewardServer(ProcessReward(model)) as server:
        for p in problems[:3]:
            assert post(server.url + "/get_reward", query_of(p, p.steps))[0] == 200
        post(server.url + "/get_reward", {"query": 3})
        assert get(server.url + "/no/such/path/17")[0] == 404
        status, text = get(server.url + "/metrics")
    assert status == 200
    assert 'prm_reward_requests_total{path="/get_reward",status="200"} 3.0' in text
    assert 'prm_reward_errors_total{kind="client"} 2.0' in text
    assert 'path="other",status="404"' in text and "/no/such/path" not in text  # labels stay bounded
    assert "prm_reward_batches_total 3.0" in text and "prm_reward_batch_items_bucket" in text
    assert 'prm_reward_request_seconds_bucket{le="0.005",path="/get_reward"}' in text


# -- start-up --------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--port", "99999"], "--port must be between 0 and 65535"),
    (["--max-batch", "0"], "--max-batch must be positive"),
    (["--max-wait", "-1"], "--max-wait must not be negative"),
    (["--max-request-mb", "nan"], "--max-request-mb must be a finite number"),
    (["--max-request-mb", "-1"], "--max-request-mb must be positive"),
    (["--host", "256.1.1.1"], "--host '256.1.1.1' is not an address"),
    (["--outcome-weight", "nan"], "--outcome-weight must be a finite number"),
    ("in use", "cannot listen on 127.0.0.1:"),
])
def test_start_up_errors_are_one_line(flags, message, capsys):
    from prm.app.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if flags == "in use":
            flags = ["--port", str(taken.getsockname()[1])]
        assert main(["serve-reward", "no-such-model", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    with pytest.raises(ServeError, match="--max-steps must be positive"):
        ServeConfig(max_steps=0)


def test_sigterm_finishes_the_batch_in_flight_and_health_names_the_model_not_its_path(model, problems, tmp_path):
    folder = tmp_path / "secret-place" / "my-prm"
    model.save_pretrained(str(folder))
    env = {**os.environ, "PRM_API_KEY": KEY}
    process = subprocess.Popen([sys.executable, "-m", "prm.app.cli", "serve-reward", str(folder), "--port", "0",
                                "--threads", "1", "--device", "cpu", "--max-wait", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        url = re.search(r"(http://\S+)/get_reward", line).group(1)
        health = json.loads(get(url + "/health")[1])
        assert health["model"] == "my-prm" and "secret-place" not in json.dumps(health)
        answers = []
        body = query_of(problems[0], problems[0].steps)
        client = threading.Thread(target=lambda: answers.append(
            post(url + "/get_reward", body, headers={"Authorization": f"Bearer {KEY}"})))
        client.start()
        deadline = time.monotonic() + 30
        # in flight: the /get_reward request and this /metrics request
        while "prm_reward_in_flight 2.0" not in get(url + "/metrics", {"Authorization": f"Bearer {KEY}"})[1]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)  # the request waits in the batcher (max_wait 3 s)
        client.join(timeout=60)
        assert process.wait(timeout=60) == 0
        assert answers and answers[0][0] == 200 and len(answers[0][1]["rewards"]) == 1
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_without_fastapi_the_command_says_how_to_install_it(monkeypatch, capsys):
    from prm.app.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    assert main(["serve-reward", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'prm-toolkit[serve]'" in err
