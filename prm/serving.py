"""What both HTTP servers share: options and limits, dynamic batching, the FastAPI app factory
with its guard (API key, body limits, JSON only, bounded concurrency, a request timeout,
Prometheus metrics), and running it on uvicorn in the foreground or a background thread.

Used by `prm.rl.server` (the reward server, `prm serve-reward`) and `completers.server` (the
OpenAI-compatible completion server). It sits in the base layer because both sit above it;
nothing in the base layer imports it, so `import prm` never imports FastAPI.

Why some of it is written here rather than taken from FastAPI/uvicorn:
- the guard is one pure ASGI middleware: it must answer before a body is read (413 from the
  Content-Length, 401 before anything), and count what uvicorn refuses itself (malformed
  HTTP, see `_h11_protocol`);
- the body is parsed once with the standard library first so that a hostile body (5,000
  nested levels, a 5,000-digit number, bytes that are not UTF-8) is a 400 naming what is
  wrong, not a 500;
- the batcher is one worker thread: the model is called from one thread, with every request
  that arrived within `max_wait`, and a batch that fails is retried request by request so a
  bad item fails alone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import ipaddress
import json
import logging
import math
import os
import queue
import secrets
import socket
import threading
import time
from dataclasses import dataclass, fields
from typing import Any, Callable

logger = logging.getLogger(__name__)

INSTALL_HINT = "the servers need FastAPI and uvicorn: pip install 'prm-toolkit[serve]'"
# paths answered without an API key: liveness probes and the API's own description
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
KEY_FORMS = ("This server has an API key. Send it as `Authorization: Bearer KEY`, or as the password of "
             "HTTP Basic auth (any user name): clients that take credentials from the URL, such as "
             "OpenRLHF's, send `http://USER:KEY@HOST:PORT/...` that way. "
             f"Open without it: {', '.join(sorted(OPEN_PATHS))}.")


class ServeError(ValueError):
    """A server that cannot start (a bad option, an address in use): one line for the user."""


@dataclass
class ServeConfig:
    """How a server listens, batches and what it accepts (both servers' options, one source).

    host, port: where to listen (port 0 picks a free port). api_key: when set, every request
    but `OPEN_PATHS` needs the key, as `Authorization: Bearer KEY` or as the password of HTTP
    Basic auth (`http://user:KEY@host/...` in clients that take credentials from the URL,
    such as OpenRLHF's; the user name is ignored), 401 otherwise; `PRM_API_KEY` is read when
    it is None. An empty or blank key (`--api-key "$UNSET"`) is an error, not an open
    server. max_batch: most items (solutions, or sampled rows) in one model call;
    max_wait: seconds the batcher waits for more requests after the first (0: take what is
    queued). max_body_bytes: largest request body (413). max_queries, max_query_chars,
    max_steps: most texts per request, characters per text, steps per solution (413).
    max_pending: requests being answered at once; more get 503 with Retry-After.
    max_connections: open connections; more get 503 (uvicorn's limit_concurrency).
    request_timeout: seconds a request may take once its body has arrived (503 after).
    read_timeout: seconds a client may take to send a request's headers (the connection is
    closed after) and, from then on, its whole body (408 after); a request still arriving
    does not count toward max_pending, so slow uploads cannot lock others out.
    keep_alive: seconds an idle connection stays open. backlog: connections the kernel queues before they are accepted.
    shutdown_timeout: seconds a graceful shutdown (SIGTERM) waits for requests in flight.
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None
    max_batch: int = 64
    max_wait: float = 0.01
    max_body_bytes: int = 16 << 20
    max_queries: int = 4096
    max_query_chars: int = 200_000
    max_steps: int = 2048
    max_pending: int = 1024
    max_connections: int = 2048
    request_timeout: float = 600.0
    read_timeout: float = 60.0
    keep_alive: float = 5.0
    backlog: int = 2048
    shutdown_timeout: float = 60.0

    def __post_init__(self):
        flag = "--api-key"
        if self.api_key is None and "PRM_API_KEY" in os.environ:
            self.api_key, flag = os.environ["PRM_API_KEY"], "PRM_API_KEY"
        if self.api_key is not None:
            if not isinstance(self.api_key, str) or not self.api_key.strip():
                raise ServeError(f"{flag} is empty: give a key, or leave {flag} out to serve without one")
            self.api_key = self.api_key.strip()
        for field in fields(self):
            if field.name in ("host", "api_key"):
                continue
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ServeError(f"{_flag(field.name)} must be a finite number, got {value!r}")
            if field.name in ("port", "max_wait"):
                if value < 0:
                    raise ServeError(f"{_flag(field.name)} must not be negative, got {value}")
            elif value <= 0 or (isinstance(value, int) and value < 1):
                raise ServeError(f"{_flag(field.name)} must be positive, got {value}")
        if self.port > 65535:
            raise ServeError(f"--port must be between 0 and 65535, got {self.port}")
        if self.api_key is not None and not self.api_key.isprintable():
            raise ServeError(f"{flag} must be printable text (it travels in an HTTP header)")

    def listen(self, warn: bool = True) -> socket.socket:
        """A listening socket on host:port, or one `ServeError` line saying why not. warn: log a
        warning when the address is reachable from other machines and no key is set."""
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (socket.gaierror, UnicodeError) as error:
            raise ServeError(f"--host {self.host!r} is not an address of this machine: {error}") from None
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self.backlog)
        except OSError as error:
            sock.close()
            raise ServeError(f"cannot listen on {self.host}:{self.port}: {error.strerror or error}") from None
        sock.setblocking(False)
        if warn and self.api_key is None and not _is_loopback(self.host):
            logger.warning("listening on %s without an API key: anyone who can reach this port can use it "
                           "(set --api-key or PRM_API_KEY)", self.host)
        return sock


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- dynamic batching ------------------------------------------------------------------------

class _Job:
    __slots__ = ("items", "size", "key", "future")

    def __init__(self, items, size: int, key):
        self.items, self.size, self.key = items, size, key
        self.future: concurrent.futures.Future = concurrent.futures.Future()


class Batcher:
    """Runs `run(items_of_each_job, key) -> result_of_each_job` in one worker thread over
    batches of jobs submitted concurrently.

    The worker takes the first waiting job, then for up to `max_wait` seconds every job with
    the same `key` that still fits in `max_batch` items (others wait for a later batch, in
    order). A batch that raises is run again job by job, so one bad job fails alone.
    `on_batch(jobs, items)` is called after each successful batch (for statistics).
    """

    def __init__(self, run: Callable[[list, Any], list], *, max_batch: int, max_wait: float, name: str,
                 on_batch: Callable[[int, int], None] | None = None):
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.on_batch = on_batch or (lambda jobs, items: None)
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish every job submitted so far, then end the worker thread."""
        self._queue.put(None)
        self._thread.join(timeout=60)

    async def submit(self, items, size: int, key=None):
        """The result of `items` (size counts toward max_batch), awaited without blocking the loop."""
        job = _Job(items, size, key)
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    def _work(self) -> None:
        later: collections.deque[_Job] = collections.deque()  # taken, but for another batch
        stopping = False
        while True:
            if later:
                job = later.popleft()
            elif stopping:
                return
            else:
                job = self._queue.get()
                if job is None:
                    return
            batch, size = [job], job.size
            for other in list(later):  # jobs that waited for a batch of their kind come first
                if other.key == job.key and size + other.size <= self.max_batch:
                    later.remove(other)
                    batch.append(other)
                    size += other.size
            deadline = time.monotonic() + self.max_wait
            while size < self.max_batch and not stopping:
                remaining = deadline - time.monotonic()
                try:
                    other = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if other is None:
                    stopping = True
                elif other.key == job.key and size + other.size <= self.max_batch:
                    batch.append(other)
                    size += other.size
                else:
                    later.append(other)
            self._run(batch)
            if stopping:  # drain: everything submitted before stop() is answered
                while True:
                    try:
                        other = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if other is not None:
                        later.append(other)

    def _run(self, batch: list[_Job]) -> None:
        try:
            results = self.run([job.items for job in batch], batch[0].key)
        except Exception as error:  # noqa: BLE001 - handed to the waiting requests
            if len(batch) > 1:
                for job in batch:
                    self._run([job])
                return
            _settle(batch[0].future, error=error)
            return
        self.on_batch(len(batch), sum(job.size for job in batch))
        for job, result in zip(batch, results):
            _settle(job.future, result=result)


def _settle(future: concurrent.futures.Future, result=None, error: BaseException | None = None) -> None:
    """Hand over a job's outcome unless its request gave up (timed out, client gone)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


# -- errors a request can get ----------------------------------------------------------------

class RequestError(ValueError):
    """A request the server refuses: HTTP status and a message for the client."""

    def __init__(self, message: str, status: int = 400, headers: dict | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.headers, self.code = status, headers, code


def describe_validation(errors: list[dict]) -> str:
    """Pydantic's errors as one line naming each field: "`query[1]` must be a text"."""
    lines = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if part != "body"]
        path = ""
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = error.get("msg", "is not valid")
        if error.get("type") == "missing":
            message = "is required"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        lines.append(f"`{path}` {message}" if path else message)
    return "; ".join(dict.fromkeys(lines))


def validation_detail(errors) -> list[dict]:
    """Pydantic's errors without the offending input (it can be megabytes) for the response."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]


# -- metrics ---------------------------------------------------------------------------------

class Metrics:
    """The Prometheus series of one server, in its own registry (several servers per process)."""

    def __init__(self, namespace: str):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        kw = {"namespace": namespace, "registry": self.registry}
        self.requests = Counter("requests", "HTTP requests answered", ["path", "status"], **kw)
        self.errors = Counter("errors", "requests answered with an error", ["kind"], **kw)
        self.latency = Histogram("request_seconds", "time to answer a request", ["path"], **kw,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300))
        self.batches = Counter("batches", "model calls made by the batcher", **kw)
        self.batch_items = Histogram("batch_items", "items (solutions or rows) per model call", **kw,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.batch_requests = Histogram("batch_requests", "requests per model call", **kw,
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.in_flight = Gauge("in_flight", "requests being answered", **kw)

    def batch(self, jobs: int, items: int) -> None:
        self.batches.inc()
        self.batch_items.observe(items)
        self.batch_requests.observe(jobs)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# -- the app ---------------------------------------------------------------------------------

def create_app(*, title: str, description: str, config: ServeConfig, metrics: Metrics,
               error_body: Callable[[int, str, str | None], dict],
               on_answer: Callable[[str, str, int], None] | None = None, middleware: tuple = ()):
    """A FastAPI app whose errors all have the shape `error_body(status, message, code)`, behind
    `_Guard`, with `/metrics`. The caller adds its routes. on_answer(method, path, status) is
    called as each answer starts (statistics). middleware: (class, options) pairs of ASGI
    middleware run inside the guard (after the key and the limits are checked)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    if config.api_key:
        description += ("\n\n" + KEY_FORMS)
    app = FastAPI(title=title, description=description)
    if config.api_key:
        _publish_key_forms(app)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        # 400 as both servers answered before FastAPI (and as vLLM's OpenAI server answers);
        # `detail` is FastAPI's own list, each error with the field's location
        body = error_body(400, describe_validation(error.errors()), None)
        body["detail"] = validation_detail(error.errors())
        return JSONResponse(body, status_code=400)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError):
        return JSONResponse(error_body(error.status, str(error), error.code), status_code=error.status,
                            headers=error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        message = error.detail if error.status_code != 404 else f"no route {request.method} {request.url.path}"
        return JSONResponse(error_body(error.status_code, str(message), None), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        data, kind = metrics.text()
        return Response(data, media_type=kind)

    for cls, options in middleware:
        app.add_middleware(cls, **options)
    app.add_middleware(_Guard, config=config, metrics=metrics, error_body=error_body,
                       on_answer=on_answer or (lambda method, path, status: None), router=app.router)
    return app


def _publish_key_forms(app) -> None:
    """Declare both accepted forms of the key in the OpenAPI description (/docs shows an
    Authorize button for each); the guard, not FastAPI, checks them."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
                "basic": {"type": "http", "scheme": "basic", "description": "any user name, the key as password"}}
            schema["security"] = [{"bearer": []}, {"basic": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


class _Guard:
    """Pure ASGI middleware in front of every route: API key, Content-Length, body size,
    JSON content type and well-formed JSON object, bounded concurrency, request timeout,
    metrics and per-answer statistics."""

    def __init__(self, app, *, config: ServeConfig, metrics: Metrics, error_body, on_answer, router):
        self.app, self.config, self.metrics = app, config, metrics
        self.error_body, self.on_answer = error_body, on_answer
        # the app's paths (built with the first request, when every route is added): metric
        # labels are these or "other", so random paths cannot grow the series without bound
        self.known_paths = {getattr(route, "path", None) for route in router.routes}
        self.key = config.api_key.encode("utf-8") if config.api_key else None
        self.pending = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        status = [0]

        async def send_and_watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                self._record(method, path, status[0], started)  # before the client can read it
            await send(message)

        started = time.perf_counter()
        counted = False  # toward max_pending: only once the whole body is in
        self.metrics.in_flight.inc()
        try:
            refusal, receive = await self._check(scope, receive, path, method)
            if refusal is None and self.pending >= self.config.max_pending:
                refusal = (503, f"the server is answering {self.config.max_pending} requests; try again",
                           {"retry-after": "1"})
            if refusal is not None:
                await self._answer(send_and_watch, *refusal)
            else:
                self.pending += 1
                counted = True
                try:
                    await asyncio.wait_for(self.app(scope, receive, send_and_watch), self.config.request_timeout)
                except asyncio.TimeoutError:
                    if not status[0]:
                        await self._answer(send_and_watch, 503, f"the request took more than "
                                           f"{self.config.request_timeout:g} s", {"retry-after": "1"})
        finally:
            self.pending -= counted
            self.metrics.in_flight.dec()
            if not status[0]:  # no answer started: the app failed or the client left
                self._record(method, path, 500, started)

    def _record(self, method: str, path: str, code: int, started: float) -> None:
        route = path if path in self.known_paths else "other"
        self.metrics.requests.labels(route, str(code)).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - started)
        if code >= 400:
            self.metrics.errors.labels("client" if code < 500 else "server").inc()
        self.on_answer(method, path, code)

    async def _check(self, scope, receive, path: str, method: str):
        """(status, message, headers) of a refusal, or None; and the receive to pass on."""
        headers = {}
        for name, value in scope["headers"]:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        if self.key is not None and path not in OPEN_PATHS:
            given = _credential(headers.get("authorization", ""))
            if not secrets.compare_digest(given, self.key):
                return (401, "a valid API key is required: Authorization: Bearer KEY, or HTTP Basic auth "
                             "with the key as the password", {"www-authenticate": 'Bearer, Basic realm="prm"'}), receive
        if method not in ("POST", "PUT", "PATCH"):
            return None, receive
        length = headers.get("content-length")
        if length is None and "transfer-encoding" not in headers:
            return (411, "a Content-Length header is required", {"connection": "close"}), receive
        if length is not None and int(length) > self.config.max_body_bytes:  # h11 checked it is digits
            return (413, f"the request body has {length} bytes, more than {self.config.max_body_bytes}",
                    {"connection": "close"}), receive
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json" and not kind.endswith("+json"):
            return (415, f"the request body must be JSON (Content-Type: application/json), "
                         f"got {kind or 'no Content-Type'!r}", None), receive
        try:
            body = await asyncio.wait_for(self._read_body(receive), self.config.read_timeout)
        except asyncio.TimeoutError:
            return (408, f"the request body did not arrive within {self.config.read_timeout:g} s",
                    {"connection": "close"}), receive
        if isinstance(body, tuple):
            return body, receive
        problem = _json_problem(bytes(body))
        if problem:
            return (400, problem, None), receive
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return None, replay

    async def _read_body(self, receive) -> bytes | tuple:
        """The whole request body, or the (status, message, headers) refusing it."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 400, "the client left before sending the whole body", None
            body += message.get("body", b"")
            if len(body) > self.config.max_body_bytes:
                return (413, f"the request body has more than {self.config.max_body_bytes} bytes",
                        {"connection": "close"})
            if not message.get("more_body"):
                return bytes(body)

    async def _answer(self, send, status: int, message: str, headers: dict | None = None) -> None:
        data = json.dumps(self.error_body(status, message, None)).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": data})


def _credential(authorization: str) -> bytes:
    """The key an Authorization header carries: a Bearer token, or the password of HTTP Basic
    auth (the user name is ignored); b"" when it carries none. `authorization` is the header
    as latin-1, so the bytes compared are the bytes sent."""
    scheme, _, value = authorization.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer":
        return value.encode("latin-1")
    if scheme == "basic":
        try:
            user_and_password = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return b""
        _, colon, password = user_and_password.partition(b":")
        return password if colon else b""
    return b""


def _json_problem(body: bytes) -> str | None:
    """What makes a request body unusable as a JSON object, or None (parsed once here so hostile
    bodies are client errors: deep nesting, huge integers, bytes that are not UTF-8)."""
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        return f"the request body is not valid JSON: not UTF-8 ({error.reason} at byte {error.start})"
    except RecursionError:
        return "the request body is not valid JSON for this server: nested too deeply"
    except ValueError as error:  # JSONDecodeError, and integers past Python's digit limit
        return f"the request body is not valid JSON: {error}"
    if not isinstance(value, dict):
        return f"the request body must be a JSON object, got {type(value).__name__}"
    return None


# -- running it ------------------------------------------------------------------------------

def _h11_protocol(on_bad_request: Callable[[], None], read_timeout: float):
    """uvicorn's h11 protocol, counting the malformed requests it answers with 400 itself (a
    negative Content-Length never reaches the app), and closing a connection whose request
    headers are not complete `read_timeout` seconds after it opened or after its last answer
    (uvicorn has no such deadline: a client trickling headers would hold its connection for
    ever). The body's deadline is the guard's (it answers 408)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the headers are in
                self._disarm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_header_deadline()  # the next request's headers

        def connection_lost(self, exc) -> None:
            self._disarm_header_deadline()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            on_bad_request()
            super().send_400_response(msg)

        def _arm_header_deadline(self) -> None:
            self._disarm_header_deadline()
            self.header_deadline = self.loop.call_later(read_timeout, self._headers_too_slow)

        def _disarm_header_deadline(self) -> None:
            if self.header_deadline is not None:
                self.header_deadline.cancel()
                self.header_deadline = None

        def _headers_too_slow(self) -> None:
            self.header_deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11


class Runner:
    """An app served by uvicorn on the socket `config.listen()` opened (so a bad address is a
    `ServeError` at once and `url` is known before serving starts)."""

    def __init__(self, app, config: ServeConfig, on_bad_request: Callable[[], None] = lambda: None):
        import uvicorn

        self.sock = config.listen()
        host, port = self.sock.getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # kept after stop()
        self.uvicorn = uvicorn.Server(uvicorn.Config(
            app, http=_h11_protocol(on_bad_request, config.read_timeout), log_level="warning", access_log=False,
            lifespan="on", limit_concurrency=config.max_connections, timeout_keep_alive=max(1, int(config.keep_alive)),
            timeout_graceful_shutdown=int(config.shutdown_timeout), backlog=config.backlog))
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve from a background thread; return once the server accepts requests."""
        self._thread = threading.Thread(target=self.uvicorn.run, kwargs={"sockets": [self.sock]},
                                        name="http-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.uvicorn.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not self.uvicorn.started:
            raise ServeError("the server did not start (see the log above)")

    def stop(self) -> None:
        """Graceful: stop accepting, answer the requests in flight, then return."""
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.uvicorn.config.timeout_graceful_shutdown + 10)

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM, which shut down gracefully."""
        self.uvicorn.run(sockets=[self.sock])
