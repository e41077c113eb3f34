"""An OpenAI-compatible HTTP server for any completer: `/v1/completions` and `/v1/models`.

    python -m completers.server --model tiny-gsm --port 8000 [--api-key KEY]

It lets `OpenAICompleter` be tested (and used) against a real server on this machine, and
serves the tiny model to other machines without vLLM. A FastAPI app on uvicorn
(`prm.serving`, shared with the reward server): pydantic models for the bodies, the OpenAPI
description at `/docs`, Prometheus metrics at `/metrics`, an optional API key (`--api-key`
or `PRM_API_KEY`: `Authorization: Bearer KEY` as OpenAI's clients send it, or HTTP Basic
auth with the key as the password; 401 without it), body and request limits, a deadline on
receiving a request (`read_timeout`), and `max_tokens` capped at the model's context or
`--max-tokens` (400 above).
Requests that arrive together are sampled together: the batcher takes every queued request
with the same sampling settings (up to `max_batch_rows` rows, waiting `max_wait` seconds,
0 by default) and hands them to the completer in one call, so the prefixes of one trace sent
concurrently share their encoding (see `TransformersCompleter`).

For tests of retries and failover it can fail on purpose (`--fail-every K`: every K-th
completion request gets `--fail-status`, 503 by default), cut answers short on purpose
(`--truncate-every K`: every K-th completion answer stops halfway through its body and the
connection is closed, which a client reads as `http.client.IncompleteRead`) and be slow on
purpose (`--delay S`). `/stats` (and `/health`) report how many requests it saw, failed,
and the most it had in flight at once.

A prompt the model cannot read (longer than its context) gets status 400 with the error code
`context_length_exceeded`, as OpenAI's API answers; requests sampled in the same batch are
answered as if it had come alone. Other bad bodies get 400 naming the field (as vLLM's
server answers), in OpenAI's error shape. Non-standard but harmless: each choice also carries
its own `completion_tokens` (`per_choice_tokens=False` answers like vLLM: totals in `usage`
only).
`one_choice=True` answers like llama.cpp's server (`llama-cpp-python[server]`): it ignores `n`
and samples one choice per request.

`imitate` makes it answer like another server, so that clients are tested against what the
real servers do (see `completers.openai_completer.SERVER_KINDS`): "prm-toolkit" (itself, the
default: `seed` honoured, the same prompt and seed give the same text), "llama-cpp-python"
(one choice per request, `owned_by: "me"`, and a seed that does not reproduce a sample: each
request is sampled with a fresh random seed, as the real server's prompt-cache reuse makes
the same seed give other text), "vllm" (token totals in `usage` only, `owned_by: "vllm"`,
seeds honoured here although the real server only reproduces in its batch-invariant mode).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from completers.base import Completer, Completion, SamplingParams
from completers.text import normalize_stop
from prm.errors import PromptTooLongError
from prm.serving import INSTALL_HINT, Batcher, Metrics, RequestError, Runner, ServeConfig, ServeError, create_app

COMPLETION_PATHS = ("/v1/completions", "/completions")


@dataclass(frozen=True)
class Imitation:
    """How the server answers when it imitates a kind of server (`imitate`)."""

    owned_by: str
    one_choice: bool = False
    per_choice_tokens: bool = True
    honours_seed: bool = True


IMITATIONS = {
    "prm-toolkit": Imitation("prm-toolkit"),
    "llama-cpp-python": Imitation("me", one_choice=True, per_choice_tokens=False, honours_seed=False),
    "vllm": Imitation("vllm", per_choice_tokens=False),
}


# -- request and response models -------------------------------------------------------------

def _prompts(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(p, str) for p in value):
        raise PydanticCustomError("prompt_type", "must be a string or a non-empty list of strings")
    return value


def _stop(value):
    try:
        return normalize_stop(value)
    except (TypeError, ValueError) as error:
        raise PydanticCustomError("stop_type", "must be a string or a list of strings ({error})",
                                  {"error": str(error)}) from None


class CompletionBody(BaseModel):
    """The OpenAI /v1/completions body (the fields this server reads; others are ignored).
    A field sent as null takes its default."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    prompt: Annotated[list[str], BeforeValidator(_prompts)]
    n: Annotated[int, Field(ge=1, le=1024)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=100.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1 << 20)] | None = None
    seed: int | None = None
    stop: Annotated[tuple[str, ...], BeforeValidator(_stop)] = ()


class Choice(BaseModel):
    index: int
    text: str
    logprobs: Any = None
    finish_reason: str | None = None
    completion_tokens: int | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionAnswer(BaseModel):
    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Model(BaseModel):
    id: str
    object: str = "model"
    owned_by: str = "prm-toolkit"


class ModelList(BaseModel):
    object: str = "list"
    data: list[Model]


# -- the server ------------------------------------------------------------------------------

class CompletionServer:
    """Serves `completer` at http://host:port/v1 from a background thread.

    Use as a context manager, or call `start()` and `stop()`. `port=0` picks a free port;
    `url` tells which. `model_name` is what /v1/models lists. config, or `ServeConfig` fields
    as keywords (api_key, max_wait, max_body_bytes, max_queries, max_query_chars, ...).
    max_tokens: the most `max_tokens` a request may ask for (400 above); by default the
    model's context (`completer.max_length`), since no sample can be longer.
    """

    def __init__(self, completer: Completer, model_name: str, host: str = "127.0.0.1", port: int = 0, *,
                 fail_every: int = 0, fail_status: int = 503, truncate_every: int = 0, delay: float = 0.0,
                 max_batch_rows: int = 256, per_choice_tokens: bool = True, one_choice: bool = False,
                 max_tokens: int | None = None, imitate: str = "prm-toolkit", config: ServeConfig | None = None,
                 **options: Any):
        options.setdefault("max_wait", 0.0)
        self.config = config or ServeConfig(host=host, port=port, max_batch=max_batch_rows, **options)
        self.completer = completer
        self.model_name = model_name
        self.fail_every = fail_every
        self.fail_status = fail_status
        self.truncate_every = truncate_every
        self.delay = delay
        if imitate not in IMITATIONS:
            raise ServeError(f"--imitate must be one of {', '.join(IMITATIONS)}, got {imitate!r}")
        self.imitation = IMITATIONS[imitate]
        self.per_choice_tokens = per_choice_tokens and self.imitation.per_choice_tokens
        self.one_choice = one_choice or self.imitation.one_choice
        context = getattr(completer, "max_length", None)
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            raise ServeError(f"--max-tokens must be a positive whole number, got {max_tokens!r}")
        self.max_tokens = max_tokens or context
        self.max_tokens_reason = "--max-tokens" if max_tokens else "the model's context"
        self.stats = {"requests": 0, "completed": 0, "failed": 0, "truncated": 0, "in_flight": 0,
                      "max_in_flight": 0, "batches": 0}
        self._lock = threading.Lock()
        self.metrics = Metrics("prm_completion")
        self.batcher = Batcher(self._sample, max_batch=self.config.max_batch, max_wait=self.config.max_wait,
                               name="completion-batcher", on_batch=self._count_batch)
        self.app = self._build_app()
        self.runner = Runner(self.app, self.config)

    @property
    def url(self) -> str:
        return self.runner.url

    def start(self) -> "CompletionServer":
        self.batcher.start()
        self.runner.start()
        return self

    def stop(self) -> None:
        """Graceful: the requests in flight are answered first."""
        self.runner.stop()
        self.batcher.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (what `python -m completers.server` does)."""
        self.batcher.start()
        try:
            self.runner.serve_forever()
        finally:
            self.batcher.stop()

    # -- fault injection and counting (see _FaultInjection) ---------------------------------

    def count_request(self) -> str:
        """Count an incoming completion request and say what to do with it on purpose:
        "fail" (--fail-every), "truncate" (--truncate-every) or "answer"."""
        with self._lock:
            self.stats["requests"] += 1
            self.stats["in_flight"] += 1
            self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self.stats["in_flight"])
            number = self.stats["requests"]
            if self.fail_every > 0 and number % self.fail_every == 0:
                self.stats["failed"] += 1
                return "fail"
            if self.truncate_every > 0 and number % self.truncate_every == 0:
                return "truncate"
            return "answer"

    def finish_request(self, completed: bool, truncated: bool = False) -> None:
        with self._lock:
            self.stats["in_flight"] -= 1
            self.stats["completed"] += completed
            self.stats["truncated"] += truncated

    # -- the endpoints -----------------------------------------------------------------------

    async def complete(self, body: CompletionBody) -> dict:
        """Answer one /v1/completions body."""
        if self.delay:
            await asyncio.sleep(self.delay)
        if len(body.prompt) > self.config.max_queries:
            raise RequestError(f"at most {self.config.max_queries} prompts per request, got {len(body.prompt)}", 413)
        for i, prompt in enumerate(body.prompt):
            if len(prompt) > self.config.max_query_chars:
                raise RequestError(f"`prompt[{i}]` has {len(prompt)} characters, more than "
                                   f"{self.config.max_query_chars}", 413)
        if body.max_tokens is not None and self.max_tokens and body.max_tokens > self.max_tokens:
            raise RequestError(f"`max_tokens` is {body.max_tokens}, more than this server allows: {self.max_tokens} "
                               f"({self.max_tokens_reason})", 400)
        n = 1 if body.n is None or self.one_choice else body.n
        params = SamplingParams(n=n, temperature=1.0 if body.temperature is None else body.temperature,
                                top_p=1.0 if body.top_p is None else body.top_p,
                                max_new_tokens=16 if body.max_tokens is None else body.max_tokens, seed=body.seed)
        key = (params.temperature, params.top_p, params.max_new_tokens, body.stop)
        try:
            results, prompt_tokens = await self.batcher.submit((body.prompt, params, body.stop),
                                                               size=len(body.prompt) * n, key=key)
        except PromptTooLongError as error:
            raise RequestError(str(error), 400, code="context_length_exceeded") from None
        except ValueError as error:
            raise RequestError(str(error), 400) from None
        except Exception as error:  # noqa: BLE001 - the model failed: tell the client, keep serving
            raise RequestError(f"{type(error).__name__}: {error}", 500) from None
        choices, completion_tokens = [], 0
        for i, completions in enumerate(results):
            for j, completion in enumerate(completions):
                choice = {"index": i * n + j, "text": completion.text, "logprobs": None,
                          "finish_reason": completion.finish_reason}
                if self.per_choice_tokens:
                    choice["completion_tokens"] = completion.tokens
                choices.append(choice)
                completion_tokens += completion.tokens
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    # -- sampling (the batcher's worker thread) ----------------------------------------------

    def _sample(self, jobs: list, key) -> list[tuple[list[list[Completion]], int]]:
        prompts = [p for job_prompts, _, _ in jobs for p in job_prompts]
        seeds = [params.seed if self.imitation.honours_seed else secrets.randbelow(1 << 31)
                 for job_prompts, params, _ in jobs for _ in job_prompts]
        ns = [params.n for job_prompts, params, _ in jobs for _ in job_prompts]
        results = self.completer.complete_prompts(prompts, jobs[0][1], stop=list(jobs[0][2]), seeds=seeds, ns=ns)
        answers = []
        for job_prompts, _, _ in jobs:
            tokens = sum(self.completer.prompt_tokens(p) or 0 for p in job_prompts)
            answers.append((results[:len(job_prompts)], tokens))
            results = results[len(job_prompts):]
        return answers

    def _count_batch(self, jobs: int, rows: int) -> None:
        self.metrics.batch(jobs, rows)
        with self._lock:
            self.stats["batches"] += 1

    # -- the app -----------------------------------------------------------------------------

    def _build_app(self):
        app = create_app(title="prm-toolkit completion server", description=__doc__.split("\n\n")[0],
                         config=self.config, metrics=self.metrics, error_body=_error_body,
                         middleware=[(_FaultInjection, {"server": self})])
        for path in COMPLETION_PATHS:
            app.post(path, response_model=CompletionAnswer, response_model_exclude_unset=True,
                     include_in_schema=path == COMPLETION_PATHS[0])(self.complete)

        async def models() -> dict:
            return {"object": "list", "data": [{"id": self.model_name, "object": "model",
                                                "owned_by": self.imitation.owned_by}]}

        async def stats() -> dict:
            with self._lock:
                return {"status": "ok", **self.stats}

        app.get("/v1/models", response_model=ModelList)(models)
        app.get("/models", include_in_schema=False)(models)
        app.get("/health")(stats)
        app.get("/stats")(stats)
        return app


class _FaultInjection:
    """ASGI middleware around the completion routes: counts requests in flight and fails or
    cuts answers short on purpose (--fail-every, --truncate-every)."""

    def __init__(self, app, server: CompletionServer):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") not in COMPLETION_PATHS:
            return await self.app(scope, receive, send)
        server = self.server
        action = server.count_request()
        if action == "fail":
            server.finish_request(False)
            data = json.dumps(_error_body(server.fail_status, "failure injected for testing (--fail-every)",
                                          None)).encode()
            await send({"type": "http.response.start", "status": server.fail_status,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"0"),
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        state = {"answered": False, "cut": False}

        async def watch(message):
            if message["type"] == "http.response.start":
                state["cut"] = action == "truncate" and message["status"] == 200  # only answers are cut
                # counted before answering, so a client's next request never overlaps this one
                server.finish_request(message["status"] == 200 and not state["cut"], truncated=state["cut"])
                state["answered"] = True
                if state["cut"]:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            elif message["type"] == "http.response.body" and state["cut"]:
                # half the promised body, and no end: uvicorn closes the connection
                body = message.get("body", b"")
                message = {"type": "http.response.body", "body": body[:len(body) // 2], "more_body": True}
                state["cut"] = None
            elif state["cut"] is None:
                return
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if not state["answered"]:
                server.finish_request(False)


def _error_body(status: int, message: str, code: str | None) -> dict:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind, code = "authentication_error", code or "invalid_api_key"
    return {"error": {"message": message, "type": kind, "code": code}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m completers.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a short name (tiny-gsm, smollm2-135m) or a model folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start)")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="require the key: `Authorization: Bearer KEY` (OpenAI's clients) or HTTP Basic "
                             "auth with it as the password (default: $PRM_API_KEY; none: open)")
    parser.add_argument("--max-tokens", type=int, default=None, metavar="N",
                        help="most tokens a request may ask for (400 above; default: the model's context)")
    parser.add_argument("--read-timeout", type=float, default=ServeConfig.read_timeout,
                        help="seconds a client may take to send a request (headers, then body; 408 after)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=128, help="sequences decoded together")
    parser.add_argument("--max-wait", type=float, default=0.0,
                        help="seconds to wait for more requests to sample together (default: 0, what is queued)")
    parser.add_argument("--request-timeout", type=float, default=ServeConfig.request_timeout,
                        help="seconds a request may take before it gets 503")
    parser.add_argument("--fail-every", type=int, default=0, metavar="K",
                        help="fail every K-th completion request on purpose (for tests)")
    parser.add_argument("--fail-status", type=int, default=503, help="status of injected failures (503, 429...)")
    parser.add_argument("--truncate-every", type=int, default=0, metavar="K",
                        help="cut every K-th completion answer short on purpose (for tests)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering (for tests)")
    parser.add_argument("--imitate", choices=list(IMITATIONS), default="prm-toolkit",
                        help="answer like this kind of server (n, usage, seeds, owned_by; for tests)")
    args = parser.parse_args(argv)

    try:
        import fastapi  # noqa: F401 - the server's stack, checked before the model loads
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        print(f"completers.server: error: {error.name} is missing; {INSTALL_HINT}", file=sys.stderr)
        return 2
    try:
        config = ServeConfig(host=args.host, port=args.port, api_key=args.api_key, max_wait=args.max_wait,
                             request_timeout=args.request_timeout, read_timeout=args.read_timeout, max_batch=256)
        config.listen(warn=False).close()  # a bad address is one line before the model loads
        if args.max_tokens is not None and args.max_tokens < 1:
            raise ServeError(f"--max-tokens must be positive, got {args.max_tokens}")
    except ServeError as error:
        print(f"completers.server: error: {error}", file=sys.stderr)
        return 2

    import torch

    from completers.transformers_completer import TransformersCompleter

    if args.threads:
        torch.set_num_threads(args.threads)
    completer = TransformersCompleter(args.model, device=args.device, batch_size=args.batch_size)
    try:
        server = CompletionServer(completer, args.model, fail_every=args.fail_every, fail_status=args.fail_status,
                                  truncate_every=args.truncate_every, delay=args.delay, max_tokens=args.max_tokens,
                                  imitate=args.imitate, config=config)
    except ServeError as error:
        print(f"completers.server: error: {error}", file=sys.stderr)
        return 2
    print(f"serving {args.model} at {server.url}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
