"""An HTTP reward server for distributed RL trainers (`prm serve-reward MODEL`).

It speaks OpenRLHF's remote reward-model protocol (checked against OpenRLHF's
`openrlhf/cli/serve_rm.py` and its client `SingleTurnAgentExecutor._fetch_rewards_via_http`
in `openrlhf/utils/agent.py`, August 2026), so `--reward.remote_url http://HOST:PORT/get_reward`
(`--remote_rm_url` in older OpenRLHF) points a trainer at it:

    POST /get_reward  {"query": [text, ...], "prompts": [text, ...], "labels": [answer, ...]}
      -> {"rewards": [float, ...], "scores": [float, ...], "extra_logs": {name: [float, ...]}}

`query` is prompt + response decoded together (special tokens included); `prompts` and
`labels` are optional (OpenRLHF sends both). How a query is split into problem and response,
with or without `prompts`, is described in `prm.rl.text`; a query that cannot be split is
refused (400). `labels` are the reference answers of the outcome reward (needed when the
server was started with an outcome weight). `rewards` is the combined reward of
`prm.rl.rewards.ProcessReward`; `scores` repeats it, as OpenRLHF's own server does;
`extra_logs` has the parts (`process`, `outcome`, `steps`) for the trainer's logs.

Also:

    GET  /health          {"status": "ok", "model": ..., "stats": {...}}
    POST /score_steps     {"items": [{"problem": text, "steps": [text, ...]}, ...]}
                          or {"query": [...], "prompts": [...]} (steps split as above)
      -> {"step_scores": [[float|null, ...], ...], "scores": [aggregated, ...], "steps": [[...]]}

Dynamic batching: requests that arrive together are scored together. One worker thread
takes the first waiting request, waits up to `max_wait` seconds for more until `max_batch`
solutions are collected, and scores all their new (problem, steps) pairs in one
`score_many` call (pairs scored before come from the reward's cache). `/health` counts the
requests, the batches and the scorer calls.

Limits: a body over `max_body_bytes` (413, the body is not read), more than `max_queries`
queries or a query over `max_query_chars` characters (413); no Content-Length (411);
a body that is not a JSON object, a missing field, a field of the wrong type or length (400,
with a message naming the field and index); an unknown route (404). A failure of the model
is a 500 for the requests of that batch; the server keeps serving.

Built on the standard library's ThreadingHTTPServer (one thread per connection), like
`completers.server`.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prm.aggregate import aggregate
from prm.rl.rewards import ProcessReward
from prm.rl.text import QuerySplitter, split_steps


class RequestError(ValueError):
    """A request the server refuses: HTTP status and a message for the client."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class RewardServer:
    """Serves `reward` at http://host:port from background threads (see the module docstring).

    Use as a context manager, or `start()`/`stop()`, or `serve_forever()`. port=0 picks a free
    port (`url` tells which). markers: extra response markers for splitting queries.
    """

    def __init__(self, reward: ProcessReward, host: str = "127.0.0.1", port: int = 0, *, model_name: str = "prm",
                 max_batch: int = 64, max_wait: float = 0.01, max_body_bytes: int = 16 << 20,
                 max_queries: int = 4096, max_query_chars: int = 200_000, markers: tuple[str, ...] = ()):
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be at least 1 and max_wait not negative")
        self.reward, self.model_name = reward, model_name
        self.max_batch, self.max_wait = max_batch, max_wait
        self.max_body_bytes, self.max_queries, self.max_query_chars = max_body_bytes, max_queries, max_query_chars
        self.splitter = QuerySplitter(reward.prompt_template, tuple(markers))
        self.stats = {"requests": 0, "bad_requests": 0, "failed": 0, "batches": 0, "largest_batch_requests": 0,
                      "largest_batch_items": 0}
        self._lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> RewardServer:
        self._threads = [threading.Thread(target=self._httpd.serve_forever, name="reward-http", daemon=True),
                         threading.Thread(target=self._work, name="reward-batcher", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self.reward.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (what `prm serve-reward` does)."""
        worker = threading.Thread(target=self._work, name="reward-batcher", daemon=True)
        worker.start()
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()
            self._jobs.put(None)
            self.reward.close()

    def snapshot(self) -> dict:
        with self._lock:
            return {**self.stats, "score_calls": self.reward.score_calls}

    # -- the endpoints (HTTP threads) --------------------------------------------------------

    def get_reward(self, body: dict) -> dict:
        """Answer one /get_reward body (RequestError for a bad one)."""
        queries = _text_list(body, "query", self.max_queries, self.max_query_chars, required=True)
        prompts = _text_list(body, "prompts", self.max_queries, self.max_query_chars, length=len(queries))
        labels = _label_list(body, len(queries))
        if self.reward.outcome_weight and labels is None:
            raise RequestError("this server adds an outcome reward: send `labels` (the reference answers)")
        problems, responses = self._split(queries, prompts)
        scores = self._scores(problems, responses)
        parts = self.reward.evaluate(problems, responses, labels, scores=scores)
        rewards = [p.reward for p in parts]
        logs = {"steps": [float(len(p.steps)) for p in parts]}
        if self.reward.process_weight:
            logs["process"] = [p.process for p in parts]
        if labels is not None:
            logs["outcome"] = [p.outcome for p in parts]
        return {"rewards": rewards, "scores": rewards, "extra_logs": logs}

    def score_steps(self, body: dict) -> dict:
        """Answer one /score_steps body: per-step scores of given steps or of split queries."""
        if "items" in body:
            items = body["items"]
            if not isinstance(items, list):
                raise RequestError("`items` must be a list of {\"problem\": text, \"steps\": [text, ...]}")
            if len(items) > self.max_queries:
                raise RequestError(f"at most {self.max_queries} items per request, got {len(items)}", 413)
            pairs = [_item(item, i, self.max_query_chars) for i, item in enumerate(items)]
        else:
            queries = _text_list(body, "query", self.max_queries, self.max_query_chars, required=True)
            prompts = _text_list(body, "prompts", self.max_queries, self.max_query_chars, length=len(queries))
            problems, responses = self._split(queries, prompts)
            pairs = [(p, split_steps(r, self.reward.step_separator)) for p, r in zip(problems, responses)]
        scores = self._submit(pairs)
        how = self.reward.aggregation
        return {"step_scores": scores, "scores": [aggregate(s, how) for s in scores],
                "steps": [steps for _, steps in pairs], "aggregation": how}

    def _split(self, queries: list[str], prompts: list[str | None] | None) -> tuple[list[str], list[str]]:
        problems, responses = [], []
        for i, query in enumerate(queries):
            try:
                problem, response = self.splitter.split(query, prompts[i] if prompts else None)
            except ValueError as error:
                raise RequestError(f"query[{i}]: {error}") from None
            problems.append(problem)
            responses.append(response)
        return problems, responses

    def _scores(self, problems: list[str], responses: list[str]) -> list[list[float | None]] | None:
        if not self.reward.process_weight:
            return None
        return self._submit([(p, split_steps(r, self.reward.step_separator)) for p, r in zip(problems, responses)])

    def _submit(self, pairs: list[tuple[str, list[str]]]) -> list[list[float | None]]:
        job = _Job(pairs)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.scores

    # -- dynamic batching (one worker thread) ------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch, size = [job], len(job.pairs)
            deadline = time.monotonic() + self.max_wait
            stop = False
            while size < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    other = self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
                except queue.Empty:
                    break
                if other is None:
                    stop = True
                    break
                batch.append(other)
                size += len(other.pairs)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[_Job]) -> None:
        pairs = [pair for job in batch for pair in job.pairs]
        try:
            scores = self.reward.step_scores(pairs)
            for job in batch:
                job.scores, scores = scores[:len(job.pairs)], scores[len(job.pairs):]
            with self._lock:
                self.stats["batches"] += 1
                self.stats["largest_batch_requests"] = max(self.stats["largest_batch_requests"], len(batch))
                self.stats["largest_batch_items"] = max(self.stats["largest_batch_items"], len(pairs))
        except Exception as error:  # noqa: BLE001 - reported to each waiting request as a 500
            for job in batch:
                job.error = error
        for job in batch:
            job.done.set()


class _Job:
    def __init__(self, pairs: list[tuple[str, list[str]]]):
        self.pairs = pairs
        self.scores: list[list[float | None]] = []
        self.error: Exception | None = None
        self.done = threading.Event()


# -- request validation ----------------------------------------------------------------------

def _text_list(body: dict, name: str, max_items: int, max_chars: int, *, required: bool = False,
               length: int | None = None) -> list | None:
    """A field holding a list of texts (a single text counts as a list of one); None if absent."""
    value = body.get(name)
    if value is None:
        if required:
            raise RequestError(f"`{name}` is required: a list of texts")
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise RequestError(f"`{name}` must be a list of texts, got {type(value).__name__}")
    if len(value) > max_items:
        raise RequestError(f"at most {max_items} entries in `{name}`, got {len(value)}", 413)
    if length is not None and len(value) != length:
        raise RequestError(f"`{name}` has {len(value)} entries but `query` has {length}")
    for i, text in enumerate(value):
        if not isinstance(text, str) and not (name == "prompts" and text is None):
            raise RequestError(f"`{name}[{i}]` must be a text, got {type(text).__name__}")
        if text is not None and len(text) > max_chars:
            raise RequestError(f"`{name}[{i}]` has {len(text)} characters, more than {max_chars}", 413)
    return value


def _label_list(body: dict, length: int) -> list | None:
    value = body.get("labels")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != length:
        raise RequestError(f"`labels` must be a list of {length} reference answers (one per query)")
    for i, label in enumerate(value):
        if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int, float))):
            raise RequestError(f"`labels[{i}]` must be a text or a number, got {type(label).__name__}")
    return [None if label is None else str(label) for label in value]


def _item(item, index: int, max_chars: int) -> tuple[str, list[str]]:
    if not isinstance(item, dict):
        raise RequestError(f"`items[{index}]` must be an object with `problem` and `steps`")
    problem, steps = item.get("problem"), item.get("steps")
    if not isinstance(problem, str):
        raise RequestError(f"`items[{index}].problem` must be a text")
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise RequestError(f"`items[{index}].steps` must be a list of texts")
    if len(problem) + sum(len(s) for s in steps) > max_chars:
        raise RequestError(f"`items[{index}]` has more than {max_chars} characters", 413)
    return problem, steps


# -- HTTP ------------------------------------------------------------------------------------

def _handler_for(server: RewardServer):
    routes = {"/get_reward": server.get_reward, "/score_steps": server.score_steps}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 120  # seconds a connection may stay silent

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if path in ("/health", "/stats"):
                self._send(200, {"status": "ok", "model": server.model_name, "stats": server.snapshot()})
            else:
                self._send(404, _error(f"no route GET {self.path}"))

        def do_POST(self):
            path = self.path.split("?")[0].rstrip("/")
            with server._lock:
                server.stats["requests"] += 1
            try:
                body = self._read_json()
                if path not in routes:
                    raise RequestError(f"no route POST {self.path}; use /get_reward or /score_steps", 404)
                status, payload = 200, routes[path](body)
            except RequestError as error:
                with server._lock:
                    server.stats["bad_requests"] += 1
                status, payload = error.status, _error(str(error))
            except Exception as error:  # noqa: BLE001 - the model failed: tell the client, keep serving
                with server._lock:
                    server.stats["failed"] += 1
                status, payload = 500, _error(f"{type(error).__name__}: {error}")
            self._send(status, payload)

        def _read_json(self) -> dict:
            length = self.headers.get("Content-Length")
            if length is None:
                self.close_connection = True
                raise RequestError("a Content-Length header is required", 411)
            try:
                length = int(length)
                if length < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                raise RequestError(f"bad Content-Length {self.headers.get('Content-Length')!r}") from None
            if length > server.max_body_bytes:
                self.close_connection = True  # the body is left unread
                raise RequestError(f"the request body has {length} bytes, more than {server.max_body_bytes}", 413)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise RequestError(f"the request body is not valid JSON: {error}") from None
            if not isinstance(body, dict):
                raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
            return body

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # quiet: one line per request is noise
            pass

    return Handler


def _error(message: str) -> dict:
    return {"error": message}
