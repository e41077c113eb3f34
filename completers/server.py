"""An OpenAI-compatible HTTP server for any completer: `/v1/completions` and `/v1/models`.

    python -m completers.server --model tiny-gsm --port 8000

It lets `OpenAICompleter` be tested (and used) against a real server on this machine, and
serves the tiny model to other machines without vLLM. Requests that arrive together are
sampled together: a worker thread takes every queued request with the same sampling settings
and hands them to the completer in one call, so the prefixes of one trace sent concurrently
share their encoding (see `TransformersCompleter`).

For tests of retries and failover it can fail on purpose (`--fail-every K`: every K-th
completion request gets `--fail-status`, 503 by default), cut answers short on purpose
(`--truncate-every K`: every K-th completion answer stops halfway through its body and the
connection is closed, which a client reads as `http.client.IncompleteRead`) and be slow on
purpose (`--delay S`). `/stats` reports how many requests it saw, failed, and the most it
had in flight at once.

A prompt the model cannot read (longer than its context) gets status 400 with the error code
`context_length_exceeded`, as OpenAI's API answers; requests sampled in the same batch are
answered as if it had come alone.

Built on the standard library's ThreadingHTTPServer: one thread per connection, fine for a
handful of clients. Non-standard but harmless: each choice also carries its own
`completion_tokens` (`per_choice_tokens=False` answers like vLLM: totals in `usage` only).
`one_choice=True` answers like llama.cpp's server (`llama-cpp-python[server]`): it ignores `n`
and samples one choice per request.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from completers.base import Completer, Completion, SamplingParams
from completers.text import normalize_stop
from prm.errors import PromptTooLongError


class CompletionServer:
    """Serves `completer` at http://host:port/v1 from a background thread.

    Use as a context manager, or call `start()` and `stop()`. `port=0` picks a free port;
    `url` tells which. `model_name` is what /v1/models lists.
    """

    def __init__(self, completer: Completer, model_name: str, host: str = "127.0.0.1", port: int = 0, *,
                 fail_every: int = 0, fail_status: int = 503, truncate_every: int = 0, delay: float = 0.0,
                 max_batch_rows: int = 256, per_choice_tokens: bool = True, one_choice: bool = False):
        self.completer = completer
        self.model_name = model_name
        self.fail_every = fail_every
        self.fail_status = fail_status
        self.truncate_every = truncate_every
        self.delay = delay
        self.max_batch_rows = max_batch_rows
        self.per_choice_tokens = per_choice_tokens
        self.one_choice = one_choice
        self.stats = {"requests": 0, "completed": 0, "failed": 0, "truncated": 0, "in_flight": 0,
                      "max_in_flight": 0, "batches": 0}
        self._lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "CompletionServer":
        self._threads = [threading.Thread(target=self._httpd.serve_forever, name="completion-http", daemon=True),
                         threading.Thread(target=self._work, name="completion-worker", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (what `python -m completers.server` does)."""
        worker = threading.Thread(target=self._work, name="completion-worker", daemon=True)
        worker.start()
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()
            self._jobs.put(None)

    # -- request handling (HTTP threads) ----------------------------------------------------

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

    def complete(self, body: dict) -> dict:
        """Answer one /v1/completions body (raises ValueError for a bad one)."""
        prompts = body.get("prompt")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("`prompt` must be a string or a non-empty list of strings")
        n = 1 if self.one_choice else _number(body, "n", 1, int, 1, 1024)
        params = SamplingParams(n=n, temperature=_number(body, "temperature", 1.0, float, 0.0, 100.0),
                                top_p=_number(body, "top_p", 1.0, float, 0.0, 1.0),
                                max_new_tokens=_number(body, "max_tokens", 16, int, 1, 1 << 20),
                                seed=body.get("seed"))
        if params.seed is not None and not isinstance(params.seed, int):
            raise ValueError("`seed` must be an integer")
        stop = normalize_stop(body.get("stop"))
        job = _Job(prompts, params, stop)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        choices, completion_tokens = [], 0
        for i, completions in enumerate(job.results):
            for j, completion in enumerate(completions):
                choice = {"index": i * n + j, "text": completion.text, "logprobs": None,
                          "finish_reason": completion.finish_reason}
                if self.per_choice_tokens:
                    choice["completion_tokens"] = completion.tokens
                choices.append(choice)
                completion_tokens += completion.tokens
        prompt_tokens = job.prompt_tokens
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    # -- sampling (one worker thread) -------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch, rest = [job], []
            rows = len(job.prompts) * job.params.n
            while True:  # take every queued job that can be sampled together with the first
                try:
                    other = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if other is None:
                    self._jobs.put(None)
                    break
                extra = len(other.prompts) * other.params.n
                if other.key == job.key and rows + extra <= self.max_batch_rows:
                    batch.append(other)
                    rows += extra
                else:
                    rest.append(other)
            for other in rest:
                self._jobs.put(other)
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        prompts = [p for job in batch for p in job.prompts]
        seeds = [job.params.seed for job in batch for _ in job.prompts]
        ns = [job.params.n for job in batch for _ in job.prompts]
        try:
            results = self.completer.complete_prompts(prompts, batch[0].params, stop=list(batch[0].stop),
                                                      seeds=seeds, ns=ns)
            with self._lock:
                self.stats["batches"] += 1
            for job in batch:
                job.results, results = results[:len(job.prompts)], results[len(job.prompts):]
                job.prompt_tokens = sum(self.completer.prompt_tokens(p) or 0 for p in job.prompts)
        except ValueError as error:  # a prompt the completer refuses (e.g. too long)
            if len(batch) > 1:  # find it: the other requests are answered as if alone
                for job in batch:
                    self._run([job])
                return
            batch[0].error = error
        except Exception as error:  # reported to each waiting request as a 500
            for job in batch:
                job.error = error
        for job in batch:
            job.done.set()


class _Job:
    def __init__(self, prompts: list[str], params: SamplingParams, stop: tuple[str, ...]):
        self.prompts, self.params, self.stop = prompts, params, stop
        self.key = (params.temperature, params.top_p, params.max_new_tokens, stop)
        self.results: list[list[Completion]] = []
        self.prompt_tokens = 0
        self.error: Exception | None = None
        self.done = threading.Event()


def _handler_for(server: CompletionServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = self.path.rstrip("/")
            if path in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [
                    {"id": server.model_name, "object": "model", "owned_by": "prm-toolkit"}]})
            elif path in ("/stats", "/health"):
                with server._lock:
                    self._send(200, dict(server.stats))
            else:
                self._send(404, _error(f"no route {self.path}", "not_found"))

        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/completions", "/completions"):
                self._read_body()
                self._send(404, _error(f"no route {self.path}", "not_found"))
                return
            body = self._read_body()
            action = server.count_request()
            if action == "fail":
                server.finish_request(False)
                self._send(server.fail_status, _error("failure injected for testing (--fail-every)",
                                                      "server_error"), retry_after=0)
                return
            status = 200
            try:
                if server.delay:
                    time.sleep(server.delay)
                request = json.loads(body or b"{}")
                if not isinstance(request, dict):
                    raise ValueError("the request body must be a JSON object")
                payload = server.complete(request)
            except PromptTooLongError as error:
                status, payload = 400, _error(str(error), "invalid_request_error", "context_length_exceeded")
            except ValueError as error:
                status, payload = 400, _error(str(error), "invalid_request_error")
            except Exception as error:  # the model failed: tell the client, keep serving
                status, payload = 500, _error(f"{type(error).__name__}: {error}", "server_error")
            truncate = action == "truncate" and status == 200  # only answers are cut short
            # done before answering, so a client's next request never overlaps this one in the stats
            server.finish_request(status == 200 and not truncate, truncated=truncate)
            self._send(status, payload, truncate=truncate)

        def _read_body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, payload: dict, retry_after: int | None = None,
                  truncate: bool = False) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            if truncate:
                self.send_header("Connection", "close")
            self.end_headers()
            if truncate:  # half the promised body, then the connection closes (--truncate-every)
                self.wfile.write(data[:len(data) // 2])
                self.close_connection = True
                return
            self.wfile.write(data)

        def log_message(self, format, *args):  # quiet: one line per request is noise in tests
            pass

    return Handler


def _error(message: str, kind: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "code": code}}


def _number(body: dict, key: str, default, kind, low, high):
    value = body.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise ValueError(f"`{key}` must be a number, got {value!r}")
    value = kind(value)
    if not low <= value <= high:
        raise ValueError(f"`{key}` must be between {low} and {high}, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m completers.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a short name (tiny-gsm, smollm2-135m) or a model folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=128, help="sequences decoded together")
    parser.add_argument("--fail-every", type=int, default=0, metavar="K",
                        help="fail every K-th completion request on purpose (for tests)")
    parser.add_argument("--fail-status", type=int, default=503, help="status of injected failures (503, 429...)")
    parser.add_argument("--truncate-every", type=int, default=0, metavar="K",
                        help="cut every K-th completion answer short on purpose (for tests)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering (for tests)")
    args = parser.parse_args(argv)

    import torch

    from completers.transformers_completer import TransformersCompleter

    if args.threads:
        torch.set_num_threads(args.threads)
    completer = TransformersCompleter(args.model, device=args.device, batch_size=args.batch_size)
    server = CompletionServer(completer, args.model, args.host, args.port, fail_every=args.fail_every,
                              fail_status=args.fail_status, truncate_every=args.truncate_every, delay=args.delay)
    print(f"serving {args.model} at {server.url}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
