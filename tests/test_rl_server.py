"""The reward server on loopback: OpenRLHF's protocol, dynamic batching of concurrent clients,
bad requests (malformed JSON, wrong types, oversized bodies) that never bring it down, the
forms an API key may come in (Bearer, HTTP Basic as OpenRLHF's client sends it, recorded and
live), empty keys and unusable devices refused at start-up, slow uploads that cannot lock
others out, and steps past max_length counted by the same rule as `ProcessReward` in TRL."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import logging
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from completers.text import PLAIN_TEMPLATE, plain_prompt
from completers.world import generate_problems
from prm.reward.model import RewardModel, RewardModelOptions
from prm.reward.scorer import StepScorer
from prm.rl.rewards import ProcessReward
from prm.rl.server import RewardServer
from prm.serving import ServeConfig, ServeError

KEY = "test-key-0123456789"
# what OpenRLHF 0.11.2's reward client (SingleTurnAgentExecutor._fetch_rewards_via_http, aiohttp
# 3.14.5) sent for --reward.remote_url http://rl:KEY@HOST:PORT/get_reward (see its README)
OPENRLHF_REQUEST = Path(__file__).parent / "data" / "openrlhf" / "get_reward_request.http"


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


def post(url: str, body, *, raw: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
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


def test_steps_past_max_length_count_the_same_through_the_server_and_in_trl_s_path(model, problems):
    """One rule on both paths: the server's reward for a wrong step hidden behind filler (past
    the model's max_length) is the one `ProcessReward` gives when TRL calls it directly."""
    problem = problems[2]
    hidden = problem.steps[:-1] + [problem.steps[0]] * 60 + [problem.steps[-1] + " plus 7 is 1000"]
    solution = "\n".join(hidden + [f"#### {problem.answer}"])
    query, prompt = query_of(problem, solution)
    for how in ("min", "mean"):
        reward = ProcessReward(model, aggregation=how)
        direct = reward([prompt], [solution])
        with RewardServer(ProcessReward(model, aggregation=how)) as server:
            status, body = post(server.url + "/get_reward", {"query": [query], "prompts": [prompt]})
        assert status == 200 and body["extra_logs"]["unscored_steps"][0] > 0
        assert body["rewards"] == pytest.approx(direct)
        assert direct[0] == 0.0 if how == "min" else direct[0] > 0.0


# -- keys ------------------------------------------------------------------------------------

def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_the_key_is_accepted_as_bearer_or_as_the_basic_auth_password_and_never_logged(model, problems, caplog):
    query, prompt = query_of(problems[0], problems[0].solution)
    body = {"query": [query], "prompts": [prompt]}
    with caplog.at_level(logging.DEBUG), RewardServer(ProcessReward(model), api_key=KEY) as server:
        url = server.url + "/get_reward"
        assert post(url, body, headers={"Authorization": f"Bearer {KEY}"})[0] == 200
        assert post(url, body, headers=basic("rl", KEY))[0] == 200  # the user name is ignored
        assert post(url, body, headers=basic("", KEY))[0] == 200
        refused = [basic(KEY, "wrong"), basic("rl", KEY + "x"), basic("rl", ""),
                   {"Authorization": "Basic " + base64.b64encode(KEY.encode()).decode()},  # no colon: no password
                   {"Authorization": "Basic not*base64"}, {"Authorization": f"Digest {KEY}"}, {"Authorization": KEY}]
        for headers in refused:
            status, answer = post(url, body, headers=headers)
            assert status == 401 and "HTTP Basic" in answer["error"], headers
        stats = get(server.url + "/health")["stats"]
    assert stats["bad_requests"] == len(refused)
    assert KEY not in caplog.text and base64.b64encode(f"rl:{KEY}".encode()).decode() not in caplog.text


def send_recorded_request(url: str, recorded: bytes) -> tuple[int, dict]:
    """Send a recorded HTTP request as it is (its Host header and all) to the server at url."""
    answer = raw_request(url, recorded.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
    head, _, body = answer.partition("\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_openrlhf_s_recorded_request_with_the_key_in_its_url_gets_rewards():
    """The bytes OpenRLHF's own client sends when the key is in --reward.remote_url (HTTP Basic,
    no other header) get the same rewards as a Bearer request; a recorded request for another
    key gets 401. The live client is tested in test_openrlhf_s_client_gets_rewards_from_a_keyed_server."""
    from prm.app.scorers import load_step_scorer

    recorded = OPENRLHF_REQUEST.read_bytes()
    assert b"Authorization: Basic " in recorded and b"Bearer" not in recorded
    body = json.loads(recorded.partition(b"\r\n\r\n")[2])
    reward = ProcessReward(load_step_scorer("checker:sympy"), outcome_weight=1.0)
    with RewardServer(reward, api_key=KEY) as server:
        status, answer = send_recorded_request(server.url, recorded)
        assert status == 200, answer
        assert post(server.url + "/get_reward", body, headers={"Authorization": f"Bearer {KEY}"})[1] == answer
        # right: 3 * 4 = 12 verified (1), the answer step neutral (0.5), min 0.5, plus the outcome 1;
        # wrong: 3 * 4 = 7 refuted (0) and a wrong answer (0)
        assert answer["rewards"] == [1.5, 0.0]
        assert answer["scores"] == answer["rewards"]
        assert {"process", "outcome", "steps", "unscored_steps"} <= set(answer["extra_logs"])
    with RewardServer(reward, api_key="another-key") as server:
        assert send_recorded_request(server.url, recorded)[0] == 401


def test_openrlhf_s_client_gets_rewards_from_a_keyed_server():
    """OpenRLHF's real client code (the openrlhf wheel, installed --no-deps by `make install-test`)
    against the server with and without a key: rewards and the extra_logs it reads."""
    pytest.importorskip("aiohttp", reason="make install-test installs aiohttp for OpenRLHF's client")
    agent = pytest.importorskip("openrlhf.utils.agent",
                                reason="make install-test installs openrlhf==0.11.2 with --no-deps")
    from prm.app.scorers import load_step_scorer

    body = json.loads(OPENRLHF_REQUEST.read_bytes().partition(b"\r\n\r\n")[2])
    reward = ProcessReward(load_step_scorer("checker:sympy"), outcome_weight=1.0)

    def fetch(remote_url: str) -> list[dict]:
        executor = agent.SingleTurnAgentExecutor(remote_rm_url=remote_url)
        return asyncio.run(executor._fetch_rewards_via_http(body["query"], body["prompts"], body["labels"]))

    with RewardServer(reward) as server:
        [open_answer] = fetch(server.url + "/get_reward")
    with RewardServer(reward, api_key=KEY) as server:
        host = server.url.removeprefix("http://")
        [keyed] = fetch(f"http://rl:{KEY}@{host}/get_reward")
        assert post(server.url + "/get_reward", body)[0] == 401  # the key is really required
    assert open_answer["rewards"] == keyed["rewards"] == [1.5, 0.0]
    assert keyed["scores"] == keyed["rewards"]
    logs = keyed["extra_logs"]
    assert logs["outcome"] == [1.0, 0.0] and logs["unscored_steps"] == [0.0, 0.0] and logs["steps"] == [2.0, 2.0]


def test_a_key_in_the_developer_s_shell_does_not_reach_the_test_servers(monkeypatch):
    """As for a developer whose shell has PRM_API_KEY: the test set-up (tests/conftest.py, run
    again here) clears it, so a test server started without a key answers without one."""
    import conftest
    from prm.app.scorers import load_step_scorer

    monkeypatch.setenv("PRM_API_KEY", "from-the-developer-s-shell")
    importlib.reload(conftest)  # what starting the test session does
    body = json.loads(OPENRLHF_REQUEST.read_bytes().partition(b"\r\n\r\n")[2])
    with RewardServer(ProcessReward(load_step_scorer("checker:sympy"))) as server:
        assert server.config.api_key is None
        assert post(server.url + "/get_reward", body)[0] == 200


# -- start-up --------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, env, message", [
    (["--api-key", ""], {}, "--api-key is empty"),
    (["--api-key", "  \t "], {}, "--api-key is empty"),
    ([], {"PRM_API_KEY": ""}, "PRM_API_KEY is empty"),  # the docs' --api-key "$PRM_KEY" with it unset, or
    ([], {"PRM_API_KEY": " "}, "PRM_API_KEY is empty"),
    (["--device", "cuda:7"], {}, "--device cuda:7"),
    (["--device", "banana"], {}, "--device 'banana' is not a device"),
])
def test_an_empty_key_or_a_device_torch_cannot_use_is_a_one_line_start_up_error(flags, env, message, monkeypatch,
                                                                                capsys):
    import torch

    from prm.app.cli import main

    if flags[:2] == ["--device", "cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve-reward", "no-such-model", "--port", "0", *flags]) == 2  # before any model loads
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_an_empty_key_is_refused_by_both_servers_configuration(monkeypatch):
    from completers.server import main as completion_server

    for key in ("", "   "):
        with pytest.raises(ServeError, match="--api-key is empty"):
            ServeConfig(api_key=key)
    assert completion_server(["--model", "tiny-gsm", "--api-key", "", "--port", "0"]) == 2
    monkeypatch.setenv("PRM_API_KEY", f"  {KEY} ")
    assert ServeConfig().api_key == KEY  # surrounding blanks are not part of a key


# -- slow clients ----------------------------------------------------------------------------

def trickle(address: tuple[str, int], at_once: bytes, slowly: bytes, every: float = 0.1) -> bytes:
    """Send `at_once`, then `slowly` a byte at a time (stopping when the server answers or closes
    the connection); what the server answered."""
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(at_once)
        for byte in slowly:
            if select.select([sock], [], [], every)[0]:  # an answer, or the connection closed
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
        return b"".join(chunks)


def test_slow_uploads_and_slow_headers_cannot_lock_other_clients_out(model, problems):
    """8 clients trickle a 60-byte body and 2 trickle their headers, with max_pending 4: other
    clients are answered meanwhile, the slow uploads get 408 once read_timeout has passed and the
    slow headers' connections are closed without an answer."""
    query, prompt = query_of(problems[0], problems[0].solution)
    head = b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n"
    with RewardServer(ProcessReward(model), max_pending=4, read_timeout=5.0) as server:
        host, port = re.match(r"http://([^:]+):(\d+)", server.url).groups()
        answers: dict[int, bytes] = {}
        clients = [(head, b" " * 60)] * 8 + [(b"", head)] * 2  # 6 s of body, 9 s of headers: past 5 s

        def client(i: int) -> None:
            answers[i] = trickle((host, int(port)), *clients[i])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(clients))]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # all ten are connected and trickling
        for _ in range(5):
            status, body = post(server.url + "/get_reward", {"query": [query], "prompts": [prompt]})
            assert status == 200, body
        assert not answers  # answered while every slow client was still sending
        for thread in threads:
            thread.join(timeout=60)
    assert all(answers[i].startswith(b"HTTP/1.1 408") and b"within 5 s" in answers[i] for i in range(8)), answers
    assert answers[8] == answers[9] == b""  # headers never completed: closed without an answer


def test_the_api_description_says_which_forms_of_the_key_are_accepted(model):
    with RewardServer(ProcessReward(model), api_key=KEY) as server:
        schema = json.loads(urllib.request.urlopen(server.url + "/openapi.json", timeout=30).read())
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "basic"}
    assert schema["security"] == [{"bearer": []}, {"basic": []}]
    assert "Authorization: Bearer KEY" in schema["info"]["description"]
    assert "HTTP Basic" in schema["info"]["description"] and "OpenRLHF" in schema["info"]["description"]
