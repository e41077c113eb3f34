"""OpenAICompleter against real OpenAI-compatible HTTP servers on 127.0.0.1 (completers.server
serving a tiny model): completions, retries of injected 503/429 failures, the error after
the last try, failover, load sharing over two endpoints, and the concurrency bound."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from completers.base import CompletionRequest, SamplingParams
from completers.openai_completer import CompletionError, OpenAICompleter
from completers.server import CompletionServer
from completers.transformers_completer import TransformersCompleter
from helpers.completers import PROBLEM, STEPS, build_char_gpt2

PARAMS = SamplingParams(n=3, max_new_tokens=12, seed=4)
KEY = "test-key-0123456789"
REQUESTS = [CompletionRequest(PROBLEM, STEPS[:k]) for k in range(4)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_char_gpt2(tmp_path_factory.mktemp("served-gpt2"))


@pytest.fixture(scope="module")
def local(model_dir):
    return TransformersCompleter(model_dir)


def serve(local, **options):
    return CompletionServer(local, "char-gpt2", "127.0.0.1", 0, **options).start()


def client(urls, **options):
    options.setdefault("backoff", 0.01)
    return OpenAICompleter(urls, **options)


def test_completions_come_back_equal_to_the_local_sampler(local):
    server = serve(local)
    try:
        remote = client(server.url)  # model name read from /v1/models
        results = remote.complete_many(REQUESTS, PARAMS)
        assert remote.model == "char-gpt2"
        assert results == local.complete_many(REQUESTS, PARAMS)  # same prompt and seed, same samples
        assert server.stats["requests"] == len(REQUESTS) and server.stats["failed"] == 0
        remote.close()
    finally:
        server.stop()


def test_token_counts_come_from_usage_when_choices_do_not_carry_them(local):
    server = serve(local, imitate="vllm")  # answers like vLLM: totals in `usage` only
    try:
        remote = client(server.url, model="char-gpt2")
        assert remote.reproducible is False and remote.server_kind.name == "vllm"  # by /v1/models' owned_by
        expected = local.complete_many(REQUESTS, PARAMS)
        results = remote.complete_many(REQUESTS, PARAMS)
        for got, want in zip(results, expected):
            assert [c.text for c in got] == [c.text for c in want]
            assert sum(c.tokens for c in got) == sum(c.tokens for c in want)
        single = remote.complete_many(REQUESTS[:1], SamplingParams(n=1, max_new_tokens=12, seed=4))
        assert single[0][0].tokens == local.complete_many(REQUESTS[:1], SamplingParams(
            n=1, max_new_tokens=12, seed=4))[0][0].tokens
    finally:
        server.stop()


@pytest.mark.parametrize("status", [503, 429])
def test_injected_failures_are_retried_until_they_succeed(local, status):
    server = serve(local, fail_every=2, fail_status=status)
    try:
        remote = client(server.url, model="char-gpt2", max_retries=3, max_concurrency=2)
        assert remote.complete_many(REQUESTS, PARAMS) == local.complete_many(REQUESTS, PARAMS)
        assert server.stats["failed"] >= 2
        assert server.stats["completed"] == len(REQUESTS)
    finally:
        server.stop()


def test_a_server_that_always_fails_gives_a_clear_error_after_the_last_try(local):
    server = serve(local, fail_every=1)
    try:
        remote = client(server.url, model="char-gpt2", max_retries=2)
        with pytest.raises(CompletionError) as caught:
            remote.complete_many(REQUESTS[:1], PARAMS)
        message = str(caught.value)
        assert server.url in message and "status 503" in message and "after 3 tries" in message
        assert caught.value.status == 503
        assert server.stats["requests"] == 3  # bounded: first try + 2 retries
    finally:
        server.stop()


def test_an_unreachable_endpoint_and_a_timeout_are_retried_then_reported(local):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    remote = client(f"http://127.0.0.1:{port}", model="m", max_retries=1)
    with pytest.raises(CompletionError, match=rf"127.0.0.1:{port}/v1/completions failed after 2 tries.*refused"):
        remote.complete_many(REQUESTS[:1], PARAMS)

    server = serve(local, delay=1.0)
    try:
        slow = client(server.url, model="char-gpt2", timeout=0.2, max_retries=1)
        with pytest.raises(CompletionError, match="(?i)timed? ?out"):
            slow.complete_many(REQUESTS[:1], PARAMS)
    finally:
        server.stop()


def test_a_bad_request_is_not_retried(local):
    server = serve(local)
    try:
        remote = client(server.url, model="char-gpt2", max_retries=3)
        with pytest.raises(CompletionError, match="status 400.*`n`") as caught:
            remote.complete_many(REQUESTS[:1], SamplingParams(n=0))
        assert caught.value.status == 400 and server.stats["requests"] == 1
    finally:
        server.stop()


def test_failover_sends_retries_to_the_healthy_endpoint(local):
    broken, healthy = serve(local, fail_every=1), serve(local)
    try:
        remote = client([broken.url, healthy.url], model="char-gpt2", max_retries=1, max_concurrency=2)
        assert remote.complete_many(REQUESTS, PARAMS) == local.complete_many(REQUESTS, PARAMS)
        assert broken.stats["requests"] >= 1 and healthy.stats["completed"] == len(REQUESTS)
    finally:
        broken.stop()
        healthy.stop()


def test_two_endpoints_share_the_load(local):
    first, second = serve(local, delay=0.1), serve(local, delay=0.1)
    try:
        remote = client(f"{first.url},{second.url}", model="char-gpt2", max_concurrency=2)
        requests = [CompletionRequest(PROBLEM, STEPS[:k % 5]) for k in range(8)]
        remote.complete_many(requests, SamplingParams(n=2, max_new_tokens=6, seed=0))
        # least-loaded: a request goes to the endpoint with nothing in flight
        assert (first.stats["completed"], second.stats["completed"]) == (4, 4)
        assert first.stats["max_in_flight"] == second.stats["max_in_flight"] == 1
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("bound", [1, 3])
def test_concurrency_bound_is_respected(local, bound):
    server = serve(local, delay=0.3)
    try:
        remote = client(server.url, model="char-gpt2", max_concurrency=bound)
        requests = [CompletionRequest(PROBLEM, STEPS[:k % 5]) for k in range(3 * bound)]
        remote.complete_many(requests, SamplingParams(n=1, max_new_tokens=4, seed=0))
        assert server.stats["max_in_flight"] == bound  # reached, never exceeded
        remote.close()
    finally:
        server.stop()


def test_server_command_serves_models_and_completions(model_dir, local):
    process = subprocess.Popen([sys.executable, "-m", "completers.server", "--model", model_dir, "--port", "0",
                                "--threads", "1", "--max-tokens", "64"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 60
        line = ""
        while "serving" not in line and time.time() < deadline and process.poll() is None:
            line = process.stdout.readline()
        assert "serving" in line, "the server did not start"
        base = line.split(" at ")[1].strip()  # http://127.0.0.1:PORT/v1
        with urllib.request.urlopen(base + "/models", timeout=10) as response:
            assert json.load(response)["data"][0]["id"] == model_dir
        remote = client(base)
        assert remote.complete_many(REQUESTS[:2], PARAMS) == local.complete_many(REQUESTS[:2], PARAMS)
        with pytest.raises(CompletionError, match="`max_tokens` is 65, more than this server allows: 64"):
            remote.complete_many(REQUESTS[:1], SamplingParams(n=1, max_new_tokens=65))
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_max_tokens_past_the_model_s_context_or_the_limit_is_a_400(local):
    """n=16, max_tokens=100000 for a model of 512 positions is refused at once, not sampled."""
    prompt = local.prompt_for(PROBLEM, STEPS[:1])
    server = serve(local)
    try:
        status, body = post_json(server.url + "/v1/completions", {"prompt": prompt, "n": 16, "max_tokens": 100_000})
        assert status == 400 and body["error"]["type"] == "invalid_request_error"
        message = body["error"]["message"]
        assert "`max_tokens` is 100000, more than this server allows: 512 (the model's context)" in message
        assert server.stats["batches"] == 0  # refused before sampling
        assert post_json(server.url + "/v1/completions", {"prompt": prompt, "max_tokens": 4})[0] == 200
    finally:
        server.stop()
    server = serve(local, max_tokens=8)
    try:
        status, body = post_json(server.url + "/v1/completions", {"prompt": prompt, "max_tokens": 9})
        assert status == 400 and "more than this server allows: 8 (--max-tokens)" in body["error"]["message"]
        assert post_json(server.url + "/v1/completions", {"prompt": prompt, "max_tokens": 8})[0] == 200
    finally:
        server.stop()


def post_json(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_the_openai_package_completes_through_a_keyed_server_with_bearer(local):
    """The real `openai` client (Authorization: Bearer) against the server with a key: the
    same samples as in process, its models list, and its own error types for a wrong key and
    a max_tokens past the model's context."""
    import openai

    prompt = local.prompt_for(PROBLEM, STEPS[:1])
    server = serve(local, api_key=KEY)
    try:
        api = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
        answer = api.completions.create(model="char-gpt2", prompt=prompt, n=3, max_tokens=12, seed=4)
        expected = local.complete_prompts([prompt], PARAMS)[0]
        assert [c.text for c in answer.choices] == [c.text for c in expected]
        assert answer.usage.completion_tokens == sum(c.tokens for c in expected)
        assert [m.id for m in api.models.list().data] == ["char-gpt2"]
        wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0, timeout=60)
        with pytest.raises(openai.AuthenticationError):
            wrong.completions.create(model="char-gpt2", prompt=prompt, max_tokens=4)
        with pytest.raises(openai.BadRequestError, match="max_tokens"):
            api.completions.create(model="char-gpt2", prompt=prompt, max_tokens=100_000)
    finally:
        server.stop()


# -- reliability: responses cut short, prompts too long, a server that is down or late ----------

def test_a_response_cut_short_is_retried_like_a_reset(local):
    server = serve(local, truncate_every=2)  # every 2nd answer stops halfway (IncompleteRead)
    try:
        remote = client(server.url, model="char-gpt2", max_retries=3, max_concurrency=1)
        assert remote.complete_many(REQUESTS, PARAMS) == local.complete_many(REQUESTS, PARAMS)
        assert server.stats["truncated"] >= 2 and server.stats["completed"] == len(REQUESTS)
    finally:
        server.stop()


TOO_LONG = CompletionRequest(PROBLEM, STEPS + ["1" * 600])  # the model reads 512 characters


def test_a_prompt_too_long_is_refused_over_http_as_in_process_and_not_retried(local):
    from prm.errors import PromptTooLongError

    server = serve(local)
    try:
        remote = client(server.url, model="char-gpt2", max_retries=3)
        with pytest.raises(PromptTooLongError):
            local.complete_many([TOO_LONG], PARAMS)
        with pytest.raises(PromptTooLongError, match="too long"):
            remote.complete_many([TOO_LONG], PARAMS)
        assert server.stats["requests"] == 1  # a refusal is final
        # sent together, the other prompts are still answered as if they had come alone
        with pytest.raises(PromptTooLongError):
            remote.complete_many(REQUESTS + [TOO_LONG], PARAMS)
        assert server.stats["completed"] == len(REQUESTS)
    finally:
        server.stop()


def test_annotation_over_http_leaves_too_long_steps_unknown_like_in_process(local, tmp_path):
    from annotate.config import AnnotateConfig
    from annotate.runner import run
    from prm.records import Step, Trace

    traces = [Trace(id=f"t{k}", problem=PROBLEM, reference_answer="10",
                    steps=[Step(text) for text in STEPS[:2 + k % 2]] + ([Step("1" * 600)] if k else []))
              for k in range(3)]
    config = AnnotateConfig(n=2, max_new_tokens=8, seed=3)
    server = serve(local)
    try:
        remote = client(server.url, model="char-gpt2")
        over_http = run(traces, tmp_path / "http.jsonl", remote, config, completer_spec="same", progress=False)
    finally:
        server.stop()
    in_process = run(traces, tmp_path / "local.jsonl", local, config, completer_spec="same", progress=False)
    assert over_http.annotated == in_process.annotated == 3  # the run did not stop
    assert over_http.skipped_steps == in_process.skipped_steps == 2
    assert "2 step(s) left unknown" in over_http.text()

    def labels_and_answers(path):
        records = [json.loads(line) for line in open(path, encoding="utf-8")]
        return [[(s["hard_label"], s["rollouts"] and s["rollouts"]["answers"]) for s in r["steps"]]
                for r in records]

    assert labels_and_answers(tmp_path / "http.jsonl") == labels_and_answers(tmp_path / "local.jsonl")
    assert labels_and_answers(tmp_path / "http.jsonl")[1][-1] == (None, None)


def test_models_list_is_retried_until_a_late_server_answers(local):
    import threading

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = []
    timer = threading.Timer(0.3, lambda: started.append(CompletionServer(local, "late", "127.0.0.1", port).start()))
    timer.start()
    try:
        remote = client(f"http://127.0.0.1:{port}", max_retries=6, backoff=0.1)  # model read from /v1/models
        assert remote.list_models() == ["late"]
    finally:
        timer.join()
        for server in started:
            server.stop()


def test_a_server_that_is_down_is_one_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = client(f"http://127.0.0.1:{port}", max_retries=1)
    with pytest.raises(CompletionError, match="cannot reach a completion server after 2 tries.*refused"):
        remote.list_models()

    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"id": "a", "problem": PROBLEM, "steps": STEPS, "reference_answer": "10"}) + "\n")
    result = subprocess.run([sys.executable, "-m", "prm.app.cli", "annotate", str(data), str(tmp_path / "out.jsonl"),
                             "--completer", f"http://127.0.0.1:{port}", "--max-retries", "1", "--no-progress"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "cannot reach a completion server" in result.stderr
    assert "re-run the same command to resume" in result.stderr


def test_annotate_passes_its_timeout_and_tries_to_the_http_completer(local, tmp_path, capsys):
    from prm.app.cli import main

    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"id": "a", "problem": PROBLEM, "steps": STEPS[:1], "reference_answer": "10"}) + "\n")
    server = serve(local, delay=1.0)
    try:
        code = main(["annotate", str(data), str(tmp_path / "out.jsonl"), "--completer", server.url,
                     "--timeout", "0.2", "--max-retries", "2", "--n", "1", "--no-progress"])
        assert code == 1
        assert "timed out" in capsys.readouterr().err.lower()
        assert server.stats["requests"] == 3  # the first try and two retries, each cut at 0.2 s
    finally:
        server.stop()
    assert main(["annotate", str(data), str(tmp_path / "o2.jsonl"), "--completer", "tiny-gsm",
                 "--timeout", "5"]) == 1
    assert "apply to HTTP completers" in capsys.readouterr().err


def test_a_server_that_ignores_n_is_asked_once_per_sample_with_derived_seeds(local):
    from completers.openai_completer import sample_seed

    server = serve(local, one_choice=True)  # answers like llama.cpp's server: one choice whatever n
    try:
        remote = client(server.url, model="char-gpt2")
        results = remote.complete_many(REQUESTS, PARAMS)
        assert remote.one_choice_per_request
        assert [len(r) for r in results] == [PARAMS.n] * len(REQUESTS)
        assert server.stats["failed"] == 0 and server.stats["requests"] == PARAMS.n * len(REQUESTS)
        # sample j is the local sampler's first sample at the seed derived for j: reproducible
        prompt = local.prompt_for(REQUESTS[1].problem, REQUESTS[1].prefix_steps)
        for j, completion in enumerate(results[1]):
            one = SamplingParams(n=1, max_new_tokens=PARAMS.max_new_tokens, seed=sample_seed(PARAMS.seed, j))
            assert completion == local.complete_prompts([prompt], one)[0][0]
        assert remote.complete_many(REQUESTS, PARAMS) == results
        remote.close()
    finally:
        server.stop()


def test_annotate_and_resume_through_a_server_that_ignores_seeds(local, tmp_path, capsys):
    """Through a server whose seeds do not reproduce a sample (imitating llama-cpp-python's),
    the completer knows it, `prm annotate` says once what a resume will do, every trace records
    it, and a resume samples only the unfinished traces: the finished lines stay as written.
    Through a reproducible server (the default imitation) nothing of this appears."""
    from prm.app.cli import main

    rows = [{"id": name, "problem": PROBLEM, "steps": STEPS[:2], "reference_answer": "10"} for name in "abcd"]
    first_half, everything = tmp_path / "first-half.jsonl", tmp_path / "in.jsonl"
    first_half.write_text("".join(json.dumps(row) + "\n" for row in rows[:2]))
    everything.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    options = ["--n", "2", "--max-new-tokens", "8", "--no-progress"]
    prompt = local.prompt_for(PROBLEM, STEPS[:1])
    server = serve(local, imitate="llama-cpp-python")
    try:
        remote = client(server.url)
        assert remote.reproducible is False and remote.server_kind.name == "llama-cpp-python"
        once = SamplingParams(n=1, max_new_tokens=12, seed=4)
        assert remote.complete_prompts([prompt], once) != remote.complete_prompts([prompt], once)  # seed ignored
        # a run that stopped after two traces, as its output shows, then the same output resumed
        assert main(["annotate", str(first_half), str(out), "--completer", server.url, *options]) == 0
        err = capsys.readouterr().err
        assert err.count("does not reproduce a sample from its seed") == 1
        assert "(llama-cpp-python)" in err and "a resume re-samples the unfinished traces" in err
        finished = out.read_text().splitlines()
        assert main(["annotate", str(everything), str(out), "--completer", server.url, *options]) == 0
        assert capsys.readouterr().err.count("does not reproduce a sample from its seed") == 1
    finally:
        server.stop()
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and lines[:2] == finished  # nothing finished was sampled again
    for line in lines:
        assert json.loads(line)["meta"]["annotation"]["settings"]["samples_reproducible"] is False

    server = serve(local)  # this project's own server: seeds reproduce
    try:
        assert client(server.url).reproducible is True
        assert main(["annotate", str(everything), str(tmp_path / "seeded.jsonl"), "--completer", server.url,
                     *options]) == 0
    finally:
        server.stop()
    assert "does not reproduce" not in capsys.readouterr().err
    for line in (tmp_path / "seeded.jsonl").read_text().splitlines():
        assert "samples_reproducible" not in json.loads(line)["meta"]["annotation"]["settings"]
