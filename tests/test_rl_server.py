"""The reward server on loopback: OpenRLHF's protocol, dynamic batching of concurrent clients,
and bad requests (malformed JSON, wrong types, oversized bodies) that never bring it down."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from completers.text import PLAIN_TEMPLATE, plain_prompt
from completers.world import generate_problems
from prm.reward.model import RewardModel, RewardModelOptions
from prm.reward.scorer import StepScorer
from prm.rl.rewards import ProcessReward
from prm.rl.server import RewardServer


class CountingScorer(StepScorer):
    """A real scorer that records how many solutions each score_many call received."""

    def __init__(self, base: StepScorer):
        self.base, self.calls = base, []
        self.config = base.config

    def score_many(self, items, batch_size=None, progress=False):
        self.calls.append(len(items))
        return self.base.score_many(items, batch_size, progress)


@pytest.fixture(scope="module")
def model():
    return RewardModel.from_backbone("tiny-gsm", RewardModelOptions(lm_features=True, prompt_template=PLAIN_TEMPLATE))


@pytest.fixture(scope="module")
def problems():
    return generate_problems(12, seed=31)


def post(url: str, body, *, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def query_of(problem, solution: str) -> tuple[str, str]:
    prompt = plain_prompt(problem.question, [])
    return prompt + solution + "<|endoftext|>", prompt


def test_get_reward_speaks_openrlhf_protocol(model, problems):
    reward = ProcessReward(model, outcome_weight=1.0)
    with RewardServer(reward) as server:
        queries, prompts, labels, solutions = [], [], [], []
        for i, problem in enumerate(problems[:4]):
            answer = problem.answer if i % 2 == 0 else problem.answer + 1
            solution = "\n".join(problem.steps + [f"#### {answer}"])
            query, prompt = query_of(problem, solution)
            queries.append(query), prompts.append(prompt), labels.append(str(problem.answer))
            solutions.append(solution)
        status, body = post(server.url + "/get_reward", {"query": queries, "prompts": prompts, "labels": labels})
        assert status == 200, body
        expected = reward.evaluate([p.question for p in problems[:4]], solutions, labels)
        assert body["rewards"] == pytest.approx([e.reward for e in expected])
        assert body["scores"] == body["rewards"]
        assert body["extra_logs"]["outcome"] == [1.0, 0.0, 1.0, 0.0]
        assert body["extra_logs"]["process"] == pytest.approx([e.process for e in expected])
        # without `prompts`, the response starts after the model's prompt template
        status, alone = post(server.url + "/get_reward", {"query": queries, "labels": labels})
        assert status == 200 and alone["rewards"] == pytest.approx(body["rewards"])
        # the batch endpoint: per-step scores, for given steps or for split queries
        status, steps = post(server.url + "/score_steps",
                             {"items": [{"problem": problems[0].question, "steps": problems[0].steps}]})
        assert status == 200
        assert steps["step_scores"][0] == pytest.approx(model.score(problems[0].question, problems[0].steps))
        status, split = post(server.url + "/score_steps", {"query": queries[:1]})
        assert status == 200 and split["steps"] == [problems[0].steps]
        assert split["step_scores"][0] == pytest.approx(steps["step_scores"][0])
        health = get(server.url + "/health")
        assert health["status"] == "ok" and health["stats"]["bad_requests"] == 0


def test_concurrent_requests_are_scored_in_one_batch(model, problems):
    scorer = CountingScorer(model)
    reward = ProcessReward(scorer)
    clients = 8
    with RewardServer(reward, max_batch=64, max_wait=1.0) as server:
        start = threading.Barrier(clients)
        answers: dict[int, tuple[int, dict]] = {}

        def client(i: int) -> None:
            query, prompt = query_of(problems[i], problems[i].solution)
            start.wait()
            answers[i] = post(server.url + "/get_reward", {"query": [query], "prompts": [prompt]})

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = get(server.url + "/health")["stats"]
    assert all(status == 200 for status, _ in answers.values()), answers
    # far fewer scoring calls than requests: concurrent requests were batched together
    assert stats["largest_batch_requests"] >= 2 and stats["batches"] < clients
    assert len(scorer.calls) == stats["score_calls"] == stats["batches"] and sum(scorer.calls) == clients
    for i, (_, body) in answers.items():  # each client got its own solution's reward
        expected = model.solution_score(model.score(problems[i].question, problems[i].steps), "min")
        assert body["rewards"] == pytest.approx([expected])


def raw_request(url: str, text: bytes) -> str:
    """Send bytes as they are (e.g. a request without Content-Length) and read the answer."""
    host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(text)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode()


def test_bad_requests_get_clear_4xx_and_the_server_keeps_serving(model, problems):
    reward = ProcessReward(model, outcome_weight=1.0)
    query, prompt = query_of(problems[0], problems[0].solution)
    with RewardServer(reward, max_body_bytes=50_000, max_queries=10, max_query_chars=5_000) as server:
        url = server.url + "/get_reward"
        cases = [
            (None, b"{not json", 400, "not valid JSON"),
            (None, b"\xff\xfe", 400, "not valid JSON"),
            ([1, 2], None, 400, "must be a JSON object"),
            ({}, None, 400, "`query` is required"),
            ({"query": 5, "labels": ["1"]}, None, 400, "`query` must be a list of texts"),
            ({"query": [query, 7], "labels": ["1", "2"]}, None, 400, "`query[1]` must be a text"),
            ({"query": [query], "prompts": [prompt, prompt], "labels": ["1"]}, None, 400, "`prompts` has 2"),
            ({"query": [query], "labels": [{"a": 1}]}, None, 400, "`labels[0]` must be a text or a number"),
            ({"query": [query]}, None, 400, "send `labels`"),
            ({"query": ["no template here"], "labels": ["1"]}, None, 400, "query[0]: cannot tell where"),
            ({"query": [query], "prompts": ["other prompt"], "labels": ["1"]}, None, 400, "does not contain"),
            ({"query": [query] * 11, "labels": ["1"] * 11}, None, 413, "at most 10"),
            ({"query": ["x" * 6_000], "labels": ["1"]}, None, 413, "more than 5000"),
            (None, b"{" + b" " * 60_000 + b"}", 413, "more than 50000"),
        ]
        for body, raw, status, message in cases:
            got, answer = post(url, body, raw=raw)
            assert got == status and message in answer["error"], (body if raw is None else raw[:20], got, answer)
        got, answer = post(server.url + "/score_steps", {"items": [{"problem": "p", "steps": "not a list"}]})
        assert got == 400 and "`items[0].steps` must be a list of texts" in answer["error"]
        got, answer = post(server.url + "/nowhere", {})
        assert got == 404
        no_length = raw_request(server.url, b"POST /get_reward HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert no_length.startswith("HTTP/1.1 411") and "Content-Length header is required" in no_length
        bad_length = raw_request(server.url, b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n")
        assert bad_length.startswith("HTTP/1.1 400")
        # still serving, and counting what it refused
        got, answer = post(url, {"query": [query], "labels": [str(problems[0].answer)]})
        assert got == 200 and answer["extra_logs"]["outcome"] == [1.0]
        stats = get(server.url + "/health")["stats"]
        assert stats["bad_requests"] == len(cases) + 4 and stats["failed"] == 0


def test_prm_serve_reward_command(model, problems, tmp_path):
    """`prm serve-reward MODEL --port 0` in its own process answers /health and /get_reward."""
    folder = tmp_path / "prm"
    model.save_pretrained(str(folder))
    process = subprocess.Popen([sys.executable, "-m", "prm.app.cli", "serve-reward", str(folder), "--port", "0",
                                "--threads", "1", "--device", "cpu", "--outcome-weight", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"(http://\S+)/get_reward", line)
        assert match, line
        url = match.group(1)
        assert get(url + "/health")["status"] == "ok"
        query, prompt = query_of(problems[1], problems[1].solution)
        status, body = post(url + "/get_reward", {"query": [query], "prompts": [prompt],
                                                  "labels": [str(problems[1].answer)]})
        assert status == 200
        expected = model.solution_score(model.score(problems[1].question, problems[1].steps), "min") + 1.0
        assert body["rewards"] == pytest.approx([expected], rel=1e-4)
    finally:
        process.terminate()
        process.wait(timeout=30)
