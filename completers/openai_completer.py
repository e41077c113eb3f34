"""OpenAICompleter: sample continuations from OpenAI-compatible `/v1/completions` servers.

This is how annotation scales past one machine: start vLLM, SGLang or TGI (or
`python -m completers.server`) on as many GPUs as you have and list their URLs. The client:

- builds the prompt text itself (`plain_prompt`, or a template: see `completers.text`), so
  every backend sees the same prompt for the same (problem, prefix);
- sends one request per prefix with `n`, `temperature`, `top_p`, `max_tokens`, `seed`, `stop`;
- keeps at most `max_concurrency` requests in flight (a thread pool: the work is waiting on
  sockets, so threads are the simplest bound);
- sends each request to the endpoint with the fewest requests in flight (ties in turn), and
  retries a timeout, a refused or reset connection, a response cut short, 429 or 5xx on
  another endpoint when there is one, waiting `backoff * 2**attempt` seconds (or the server's
  Retry-After, if shorter than `max_backoff`) between tries; after the last try it raises
  `CompletionError` naming the endpoint and the last status (`/v1/models` is retried the same
  way);
- raises `prm.errors.PromptTooLongError` (a `ValueError`, not retried) when the server
  answers that the prompt does not fit the model's context, as the in-process backends do,
  so that annotation leaves those steps unknown instead of stopping;
- relies on the server's prefix caching for prompts that extend earlier ones (a search's kept
  prefix plus one step at each depth, the prefixes of one trace in annotation): every prompt
  is the problem and steps joined by the step delimiter (`completers.text`), so a longer
  prefix's text starts with the shorter one's and their tokens share the blocks of the
  shorter prompt. vLLM's automatic prefix caching needs nothing in the request: it is on by
  default in vLLM's V1 engine (`vllm serve --enable-prefix-caching` on older versions; do
  not pass `--no-enable-prefix-caching`), and `python -m completers.server` keeps its
  model's encoded prompts between requests (`TransformersCompleter(prompt_cache_mb=...)`);
- takes token counts from the response's `usage` (per choice when the server gives them);
- copes with servers that ignore `n` (llama.cpp's server through `llama-cpp-python[server]`
  answers one choice whatever `n` asks): when a request for n > 1 comes back with exactly one
  choice, the completer remembers it (`one_choice_per_request`) and asks for the other samples
  one request each, sample j with its own seed derived from the request's seed (`sample_seed`),
  so the samples stay reproducible; with such a server every later request is split this way;
- knows which server it talks to from `/v1/models` (`owned_by`, see `SERVER_KINDS`) and so
  whether a seed reproduces a sample there (`reproducible`). Only this project's server does
  (it samples in process, seeded): llama-cpp-python's server seeds its sampler per request
  but reuses the key-value cache of the previous request's common prefix, and logits computed
  through a cached prefix differ in their last bits from a fresh evaluation, so the same
  prompt and seed can give other text (no request field turns the reuse off); llama.cpp's own
  `llama-server` is sent `cache_prompt: false`, which its documentation names as the cause
  of such differences, but its slots are still batched together; vLLM and SGLang honour a
  per-request seed but are reproducible only in their batch-invariant / deterministic modes
  (`VLLM_BATCH_INVARIANT=1`, `--enable-deterministic-inference`), which a client cannot see.
  `prm annotate` records a completer that is not reproducible in its output and says what
  that means for a resume.

Uses only the standard library (urllib), so it adds no dependency.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from completers.base import Completer, Completion, SamplingParams, per_prompt
from completers.text import PromptBuilder, cut_at_stop, normalize_stop, prompt_builder
from prm.errors import PromptTooLongError

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
# How servers say a prompt does not fit: OpenAI and our server (code context_length_exceeded),
# vLLM ("maximum context length", "is too long to fit"), SGLang ("longer than the model's
# context length"), TGI (422 "must have less than N tokens").
TOO_LONG_STATUSES = {400, 413, 422}
TOO_LONG_CODE = "context_length_exceeded"
TOO_LONG_TEXT = re.compile(r"context length|context window|maximum context|too long|"
                           r"must have less than \d+ (input )?tokens|reads at most", re.IGNORECASE)


@dataclass(frozen=True)
class ServerKind:
    """What an OpenAI-compatible server does with a request's `seed` (see the module docstring):
    `reproducible` when the same prompt and seed always give the same text; `extra`: fields
    sent with every completion request to that kind of server."""

    name: str
    reproducible: bool
    extra: tuple[tuple[str, object], ...] = ()


# by the `owned_by` of the models in the server's /v1/models answer
SERVER_KINDS = {
    "prm-toolkit": ServerKind("prm-toolkit", reproducible=True),
    "me": ServerKind("llama-cpp-python", reproducible=False),
    "llamacpp": ServerKind("llama.cpp", reproducible=False, extra=(("cache_prompt", False),)),
    "vllm": ServerKind("vllm", reproducible=False),
    "sglang": ServerKind("sglang", reproducible=False),
}
UNKNOWN_SERVER = ServerKind("unknown", reproducible=False)


class CompletionError(RuntimeError):
    """A completion request failed for good (after every retry, or with a non-retryable status)."""

    def __init__(self, message: str, endpoint: str | None = None, status: int | None = None):
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


class OpenAICompleter(Completer):
    """Samples continuations from one or more OpenAI-compatible completion servers.

    base_urls: one URL or several (a list, or one comma-separated string), with or without
        the trailing `/v1`, e.g. "http://127.0.0.1:8000".
    model: the model name to send; None = the first model the first endpoint lists at /v1/models.
    max_concurrency: most requests in flight at once, over all endpoints.
    timeout: seconds to wait for one response. max_retries: tries after the first one.
    backoff: first wait between tries, doubled each time, capped at max_backoff.
    stop: stop strings sent with every request; stop_at_answer_line: cut a continuation after a
        GSM8K `#### x` line on the client side too (servers other than ours do not know that rule).
    api_key: sent as `Authorization: Bearer KEY` with every request (what vLLM's `--api-key`
        and `completers.server --api-key` check); default: $OPENAI_API_KEY, if set.
    """

    name = "openai"

    def __init__(self, base_urls: str | list[str], model: str | None = None, *,
                 max_concurrency: int = 8, timeout: float = 120.0, max_retries: int = 4,
                 backoff: float = 0.5, max_backoff: float = 30.0, step_delimiter: str = "\n",
                 stop: str | list[str] | None = None, prompt_template: str | PromptBuilder | None = None,
                 stop_at_answer_line: bool = True, api_key: str | None = None):
        if isinstance(base_urls, str):
            base_urls = base_urls.split(",")
        self.endpoints = [_api_root(url) for url in base_urls if url.strip()]
        if not self.endpoints:
            raise ValueError("OpenAICompleter needs at least one server URL")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.model = model
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.step_delimiter = step_delimiter
        self.stop = normalize_stop(stop)
        self.stop_at_answer_line = stop_at_answer_line
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None
        self.build_prompt = prompt_builder(prompt_template)
        self.in_flight = {url: 0 for url in self.endpoints}
        self.sent = {url: 0 for url in self.endpoints}  # requests sent per endpoint (tries included)
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._pool: ThreadPoolExecutor | None = None
        self.one_choice_per_request = False  # set when a server answers one choice to n > 1
        self.server_kind: ServerKind | None = None  # read from /v1/models (see `reproducible`)

    # -- the Completer interface --------------------------------------------------------

    def complete_prompts(self, prompts: list[str], params: SamplingParams, *,
                         stop: str | list[str] | None = None, seeds: list[int | None] | None = None,
                         ns: list[int] | None = None) -> list[list[Completion]]:
        """One request per prompt, `max_concurrency` requests in flight at a time."""
        if not prompts:
            return []
        if self.model is None:
            with self._lock:
                if self.model is None:
                    self.model = self.list_models()[0]
        stops = self.stop + normalize_stop(stop)
        futures = [self._executor().submit(self._complete_one, prompt, params, seed, n, stops)
                   for prompt, (seed, n) in zip(prompts, per_prompt(params, len(prompts), seeds, ns))]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()

    @property
    def reproducible(self) -> bool:
        """Whether the same prompt and seed give the same samples on this completer's servers
        (their kind, read from /v1/models once: see the module docstring)."""
        if self.server_kind is None:
            self.list_models()
        return self.server_kind.reproducible

    def list_models(self) -> list[str]:
        """The model names the first reachable endpoint serves (GET /v1/models), trying the
        endpoints in turn and retrying like a completion request; notes the server's kind."""
        errors: list[str] = []
        for attempt in range(self.max_retries + 1):
            for url in self.endpoints:
                try:
                    request = urllib.request.Request(url + "/models", headers=self._headers())
                    with urllib.request.urlopen(request, timeout=self.timeout) as response:
                        listed = json.load(response).get("data", [])
                    models = [m["id"] for m in listed]
                    if models:
                        self.server_kind = SERVER_KINDS.get(listed[0].get("owned_by"), UNKNOWN_SERVER)
                        return models
                    errors.append(f"{url}/models lists no model")
                except (OSError, ValueError, KeyError, TypeError, AttributeError,
                        http.client.HTTPException) as error:
                    errors.append(f"{url}/models: {_describe(error)}")
            if attempt < self.max_retries:
                time.sleep(self._wait(attempt, None))
        raise CompletionError(f"cannot reach a completion server after {self.max_retries + 1} tries "
                              f"(last: {errors[-1]}); is it running? (or pass the model name)",
                              endpoint=self.endpoints[-1])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- one request, with retries and failover -------------------------------------------

    def _complete_one(self, prompt: str, params: SamplingParams, seed: int | None, n: int,
                      stops: tuple[str, ...]) -> list[Completion]:
        """n samples of one prompt: one request, or n requests of one sample each when the server
        ignores `n` (see the module docstring)."""
        if n > 1 and self.one_choice_per_request:
            return [self._request(prompt, params, sample_seed(seed, j), 1, stops)[0] for j in range(n)]
        completions = self._request(prompt, params, seed, n, stops, accept_one=n > 1)
        if len(completions) == 1 and n > 1:
            self.one_choice_per_request = True
            completions += [self._request(prompt, params, sample_seed(seed, j), 1, stops)[0] for j in range(1, n)]
        return completions

    def _request(self, prompt: str, params: SamplingParams, seed: int | None, n: int,
                 stops: tuple[str, ...], accept_one: bool = False) -> list[Completion]:
        body = {"model": self.model, "prompt": prompt, "n": n, "temperature": params.temperature,
                "top_p": params.top_p, "max_tokens": params.max_new_tokens}
        if seed is not None:
            body["seed"] = seed
        body.update((self.server_kind or UNKNOWN_SERVER).extra)
        if stops:
            body["stop"] = list(stops)
        data = json.dumps(body).encode()
        failed: str | None = None
        for attempt in range(self.max_retries + 1):
            url = self._acquire(avoid=failed)
            try:
                return self._completions(self._post(url + "/completions", data), n, accept_one)
            except _RetryableError as error:
                failed, last_error = url, error
            finally:
                self._release(url)
            if attempt == self.max_retries:
                raise CompletionError(
                    f"POST {url}/completions failed after {attempt + 1} tries; last error: {last_error}",
                    endpoint=url, status=last_error.status)
            time.sleep(self._wait(attempt, last_error.retry_after))
        raise AssertionError("unreachable")

    def _post(self, url: str, data: bytes) -> dict:
        request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            detail, code = _error_detail(error)
            if error.code in RETRY_STATUSES:
                raise _RetryableError(f"status {error.code} ({detail})", error.code,
                                      _retry_after(error.headers.get("Retry-After"))) from None
            if error.code in TOO_LONG_STATUSES and (code == TOO_LONG_CODE or TOO_LONG_TEXT.search(detail)):
                raise PromptTooLongError(f"{url} refused the prompt as too long for the model "
                                         f"(status {error.code}: {detail})") from None
            raise CompletionError(f"POST {url} returned status {error.code}: {detail}",
                                  endpoint=url, status=error.code) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException) as error:
            # refused, reset, timed out, or a response cut short (IncompleteRead): try again
            raise _RetryableError(_describe(error)) from None
        except ValueError as error:  # a response that is not JSON
            raise _RetryableError(f"unreadable response: {error}") from None

    def _completions(self, response: dict, n: int, accept_one: bool = False) -> list[Completion]:
        choices = sorted(response.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != n and not (accept_one and len(choices) == 1):
            raise _RetryableError(f"expected {n} choices, got {len(choices)}")
        n = len(choices)
        texts = [c.get("text") or "" for c in choices]
        tokens = [c.get("completion_tokens") for c in choices]  # our server's per-choice count
        if any(t is None for t in tokens):
            total = (response.get("usage") or {}).get("completion_tokens")
            tokens = _apportion(total, [len(t) for t in texts]) if total is not None else [0] * n
        completions = []
        for text, count, choice in zip(texts, tokens, choices):
            reason = choice.get("finish_reason") or "stop"
            cut = cut_at_stop(text, (), self.stop_at_answer_line)
            if cut is not None:
                text, reason = cut, "stop"
            completions.append(Completion(text, int(count), "length" if reason == "length" else "stop"))
        return completions

    # -- endpoints, concurrency, waiting ---------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="openai-completer")
            return self._pool

    def _acquire(self, avoid: str | None = None) -> str:
        """The endpoint with the fewest requests in flight (not `avoid` if another exists)."""
        with self._lock:
            candidates = [u for u in self.endpoints if u != avoid] or self.endpoints
            turn = next(self._turn)
            order = candidates[turn % len(candidates):] + candidates[:turn % len(candidates)]
            url = min(order, key=lambda u: self.in_flight[u])
            self.in_flight[url] += 1
            self.sent[url] += 1
            return url

    def _release(self, url: str) -> None:
        with self._lock:
            self.in_flight[url] -= 1

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        wait = min(self.max_backoff, self.backoff * 2 ** attempt) * (1 + 0.1 * random.random())
        if retry_after is not None and retry_after <= self.max_backoff:
            wait = max(wait, retry_after)
        return wait

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


class _RetryableError(Exception):
    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def sample_seed(seed: int | None, index: int) -> int | None:
    """The seed of sample `index` of a request seeded `seed`, when its samples are asked for one
    request each: sample 0 keeps the request's seed; the others get a 31-bit hash of (seed, index)."""
    if seed is None or index == 0:
        return seed
    digest = hashlib.sha256(f"{seed}\x1f{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _api_root(url: str) -> str:
    """`http://host:port`, `.../v1` or `.../v1/completions` -> `http://host:port/v1`."""
    url = url.strip().rstrip("/")
    if url.endswith("/completions"):
        url = url[: -len("/completions")]
    return url if url.endswith("/v1") else url + "/v1"


def _error_detail(error: urllib.error.HTTPError) -> tuple[str, str | None]:
    """The message of an error response (OpenAI's {"error": {"message", "code"}} or its
    body's start) and its code, if any."""
    body = ""
    try:
        body = error.read().decode(errors="replace")
        message = json.loads(body).get("error", {})
        if isinstance(message, dict):
            code = message.get("code")
            return message.get("message") or body[:200], code if isinstance(code, str) else None
        return str(message) or body[:200], None
    except (OSError, ValueError, AttributeError, http.client.HTTPException):
        if body:
            return body[:200], None
        return (error.reason if isinstance(error.reason, str) else "no detail"), None


def _describe(error: BaseException) -> str:
    """One line for a network error: `URLError: [Errno 111] Connection refused`, ..."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, http.client.IncompleteRead):
        return f"IncompleteRead: response cut short ({len(reason.partial)} bytes read)"
    return f"{type(reason).__name__}: {reason}"


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Split an integer total in proportion to weights (largest remainders), summing exactly."""
    if not weights:
        return []
    weight_sum = sum(weights) or len(weights)
    weights = weights if sum(weights) else [1] * len(weights)
    shares = [total * w / weight_sum for w in weights]
    counts = [int(s) for s in shares]
    for i in sorted(range(len(shares)), key=lambda i: counts[i] - shares[i])[: total - sum(counts)]:
        counts[i] += 1
    return counts
