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
`extra_logs` has the parts (`process`, `outcome`, `steps`, `unscored_steps`) for the
trainer's logs.

Steps the model cannot read (past its `max_length`) are never silently dropped: each counts
as the worst possible step (score 0) in the process reward, by the same rule as
`ProcessReward` used directly in TRL (`prm.rl.rewards.unscored_as_worst`), so hiding a wrong
step behind filler can only lower a reward, and `extra_logs["unscored_steps"]` says how many
there were.
More than `max_steps` steps in one query is refused (413).

Also:

    GET  /health          {"status": "ok", "model": NAME, "stats": {...}}   (no key needed)
    GET  /metrics         Prometheus text: requests, errors, latency, batches, batch sizes
    GET  /docs            the OpenAPI description (request and response models)
    POST /score_steps     {"items": [{"problem": text, "steps": [text, ...]}, ...]}
                          or {"query": [...], "prompts": [...]} (steps split as above)
      -> {"step_scores": [[float|null, ...], ...], "scores": [aggregated, ...], "steps": [[...]],
          "aggregation": NAME, "unscored_steps": [int, ...]}

A FastAPI app on uvicorn (`prm.serving`): requests that arrive together are scored together
(dynamic batching, `max_batch` solutions within `max_wait` seconds, in one `score_many` call;
pairs scored before come from the reward's cache). With an API key (`--api-key` or
`PRM_API_KEY`) every route but /health, /docs needs it (401), as `Authorization: Bearer KEY`
or as the password of HTTP Basic auth, which is how OpenRLHF's client sends the key of a
`--reward.remote_url http://rl:KEY@HOST:PORT/get_reward` (it sends no headers of its own).

Errors, as `{"error": message}` (validation errors add FastAPI's `detail` list): a field of
the wrong type or length, a text that is not valid Unicode (a lone surrogate), a query that
cannot be split (400, naming the field and index); a body over the size limit, too many
queries, too long a query, too many steps (413); no Content-Length (411); not JSON (415);
more requests than `max_pending` or a request past `request_timeout` (503). A batch the model
fails on is re-scored request by request, so one bad request fails alone (400 when the model
refuses its input, 500 otherwise); the server keeps serving. SIGTERM finishes the requests in
flight (their batch included) before the process exits.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from prm.aggregate import aggregate
from prm.rl.rewards import ProcessReward, unscored_as_worst
from prm.rl.text import QuerySplitter, split_steps
from prm.serving import Batcher, Metrics, RequestError, Runner, ServeConfig, create_app


# -- request and response models -------------------------------------------------------------

def _text(value):
    if not isinstance(value, str):
        raise PydanticCustomError("text_type", "must be a text, got {got}", {"got": type(value).__name__})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise PydanticCustomError("text_unicode", "is not valid Unicode (a lone surrogate at character {at})",
                                  {"at": error.start}) from None
    return value


def _one_or_many(value):
    """A list of texts; a single text counts as a list of one."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise PydanticCustomError("texts_type", "must be a list of texts, got {got}", {"got": type(value).__name__})
    return value


def _list_of_texts(value):
    if not isinstance(value, list):
        raise PydanticCustomError("texts_type", "must be a list of texts, got {got}", {"got": type(value).__name__})
    return value


def _label(value):
    if value is None or isinstance(value, str):
        return value if value is None else _text(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("label_type", "must be a text or a number, got {got}", {"got": type(value).__name__})
    return str(value)


Text = Annotated[str, BeforeValidator(_text)]
Texts = Annotated[list[Text], BeforeValidator(_one_or_many)]
Prompts = Annotated[list[Annotated[str | None, BeforeValidator(lambda v: v if v is None else _text(v))]],
                    BeforeValidator(_one_or_many)]
Label = Annotated[str | None, BeforeValidator(_label)]


class RewardRequest(BaseModel):
    """OpenRLHF's /get_reward body (other fields OpenRLHF may add are ignored)."""

    model_config = ConfigDict(extra="allow")
    query: Texts = Field(description="prompt + response decoded together, one per sample")
    prompts: Prompts | None = Field(None, description="each sample's prompt (helps split the query)")
    labels: list[Label] | None = Field(None, description="reference answers for the outcome reward")

    @model_validator(mode="after")
    def _same_lengths(self):
        if self.prompts is not None and len(self.prompts) != len(self.query):
            raise PydanticCustomError("length", "`prompts` has {n} entries but `query` has {m}",
                                      {"n": len(self.prompts), "m": len(self.query)})
        if self.labels is not None and len(self.labels) != len(self.query):
            raise PydanticCustomError("length", "`labels` must be a list of {m} reference answers (one per query)",
                                      {"m": len(self.query)})
        return self


class Item(BaseModel):
    problem: Text
    steps: Annotated[list[Text], BeforeValidator(_list_of_texts)]


class ScoreStepsRequest(BaseModel):
    """/score_steps: given steps (`items`), or queries split like /get_reward's."""

    model_config = ConfigDict(extra="allow")
    items: Annotated[list[Item], BeforeValidator(_list_of_texts)] | None = None
    query: Texts | None = None
    prompts: Prompts | None = None

    @model_validator(mode="after")
    def _something_to_score(self):
        if self.items is None and self.query is None:
            raise PydanticCustomError("missing", "`query` is required: a list of texts (or send `items`)")
        if self.query is not None and self.prompts is not None and len(self.prompts) != len(self.query):
            raise PydanticCustomError("length", "`prompts` has {n} entries but `query` has {m}",
                                      {"n": len(self.prompts), "m": len(self.query)})
        return self


class RewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float] = Field(description="the rewards again, as OpenRLHF's own server answers")
    extra_logs: dict[str, list[float]] = Field(description="process, outcome, steps, unscored_steps")


class ScoreStepsResponse(BaseModel):
    step_scores: list[list[float | None]] = Field(description="null: a step past the model's max_length")
    scores: list[float | None] = Field(description="aggregated; an unscored step counts as 0")
    steps: list[list[str]]
    aggregation: str
    unscored_steps: list[int]


class Health(BaseModel):
    status: str
    model: str
    stats: dict[str, int]


# -- the server ------------------------------------------------------------------------------

class RewardServer:
    """Serves `reward` at http://host:port from a background thread (see the module docstring).

    Use as a context manager, or `start()`/`stop()`, or `serve_forever()`. port=0 picks a free
    port (`url` tells which). model_name: what /health shows. markers: extra response markers
    for splitting queries. config, or the `ServeConfig` fields as keywords (max_batch,
    max_wait, max_body_bytes, max_queries, max_query_chars, max_steps, api_key, ...).
    """

    def __init__(self, reward: ProcessReward, host: str = "127.0.0.1", port: int = 0, *, model_name: str = "prm",
                 markers: tuple[str, ...] = (), config: ServeConfig | None = None, **options: Any):
        self.config = config or ServeConfig(host=host, port=port, **options)
        self.reward, self.model_name = reward, model_name
        self.splitter = QuerySplitter(reward.prompt_template, tuple(markers))
        self.stats = {"requests": 0, "bad_requests": 0, "failed": 0, "batches": 0, "largest_batch_requests": 0,
                      "largest_batch_items": 0}
        self.metrics = Metrics("prm_reward")
        self.batcher = Batcher(self._score_batch, max_batch=self.config.max_batch, max_wait=self.config.max_wait,
                               name="reward-batcher", on_batch=self._count_batch)
        self.app = self._build_app()
        self.runner = Runner(self.app, self.config, on_bad_request=lambda: self._count_answer("POST", "", 400))

    @property
    def url(self) -> str:
        return self.runner.url

    def start(self) -> RewardServer:
        self.batcher.start()
        self.runner.start()
        return self

    def stop(self) -> None:
        """Graceful: the requests in flight are answered, then the model is released."""
        self.runner.stop()
        self._close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (what `prm serve-reward` does)."""
        self.batcher.start()
        try:
            self.runner.serve_forever()
        finally:
            self._close()

    def _close(self) -> None:
        self.batcher.stop()
        self.reward.close()

    def snapshot(self) -> dict:
        return {**self.stats, "score_calls": self.reward.score_calls}

    # -- the endpoints -----------------------------------------------------------------------

    async def get_reward(self, request: RewardRequest) -> dict:
        """Answer one /get_reward body."""
        queries, prompts, labels = request.query, request.prompts, request.labels
        self._check_sizes(queries, "query")
        self._check_sizes(prompts or [], "prompts")
        if self.reward.outcome_weight and labels is None:
            raise RequestError("this server adds an outcome reward: send `labels` (the reference answers)")
        problems, responses = self._split(queries, prompts)
        scores = None
        if self.reward.process_weight:
            scores = await self._score(self._pairs(problems, responses))
        if labels is not None:  # grading runs math-verify in worker processes: off the event loop
            from starlette.concurrency import run_in_threadpool

            parts = await run_in_threadpool(self.reward.evaluate, problems, responses, labels, scores)
        else:
            parts = self.reward.evaluate(problems, responses, labels, scores=scores)
        rewards = [p.reward for p in parts]
        logs = {"steps": [float(len(p.steps)) for p in parts],
                "unscored_steps": [float(p.unscored_steps) for p in parts]}
        if self.reward.process_weight:
            logs["process"] = [p.process for p in parts]
        if labels is not None:
            logs["outcome"] = [p.outcome for p in parts]
        return {"rewards": rewards, "scores": rewards, "extra_logs": logs}

    async def score_steps(self, request: ScoreStepsRequest) -> dict:
        """Answer one /score_steps body: per-step scores of given steps or of split queries."""
        if request.items is not None:
            if len(request.items) > self.config.max_queries:
                raise RequestError(f"at most {self.config.max_queries} items per request, got {len(request.items)}",
                                   413)
            pairs = [(item.problem, item.steps) for item in request.items]
            for i, (problem, steps) in enumerate(pairs):
                if len(problem) + sum(len(s) for s in steps) > self.config.max_query_chars:
                    raise RequestError(f"`items[{i}]` has more than {self.config.max_query_chars} characters", 413)
                self._check_steps(steps, f"items[{i}]")
        else:
            self._check_sizes(request.query, "query")
            self._check_sizes(request.prompts or [], "prompts")
            pairs = self._pairs(*self._split(request.query, request.prompts))
        scores = await self._score(pairs)
        how = self.reward.aggregation
        return {"step_scores": scores, "scores": [aggregate(unscored_as_worst(row), how) for row in scores],
                "steps": [steps for _, steps in pairs], "aggregation": how,
                "unscored_steps": [sum(s is None for s in row) for row in scores]}

    def _check_sizes(self, texts: list, name: str) -> None:
        if len(texts) > self.config.max_queries:
            raise RequestError(f"at most {self.config.max_queries} entries in `{name}`, got {len(texts)}", 413)
        for i, text in enumerate(texts):
            if text is not None and len(text) > self.config.max_query_chars:
                raise RequestError(f"`{name}[{i}]` has {len(text)} characters, more than "
                                   f"{self.config.max_query_chars}", 413)

    def _check_steps(self, steps: list[str], where: str) -> None:
        if len(steps) > self.config.max_steps:
            raise RequestError(f"`{where}` has {len(steps)} steps, more than {self.config.max_steps}", 413)

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

    def _pairs(self, problems: list[str], responses: list[str]) -> list[tuple[str, list[str]]]:
        pairs = [(p, split_steps(r, self.reward.step_separator)) for p, r in zip(problems, responses)]
        for i, (_, steps) in enumerate(pairs):
            self._check_steps(steps, f"query[{i}]")
        return pairs

    async def _score(self, pairs: list[tuple[str, list[str]]]) -> list[list[float | None]]:
        try:
            return await self.batcher.submit(pairs, size=len(pairs))
        except ValueError as error:  # the model refused this request's input (alone: see Batcher)
            raise RequestError(f"the model cannot score this request: {error}") from None
        except Exception as error:  # noqa: BLE001 - the model failed: tell the client, keep serving
            raise RequestError(f"{type(error).__name__}: {error}", 500) from None

    # -- batching (the batcher's worker thread) ----------------------------------------------

    def _score_batch(self, groups: list[list[tuple[str, list[str]]]], key) -> list[list[list[float | None]]]:
        scores = self.reward.step_scores([pair for group in groups for pair in group])
        answers = []
        for group in groups:
            answers.append(scores[:len(group)])
            scores = scores[len(group):]
        return answers

    def _count_batch(self, jobs: int, items: int) -> None:
        self.metrics.batch(jobs, items)
        self.stats["batches"] += 1
        self.stats["largest_batch_requests"] = max(self.stats["largest_batch_requests"], jobs)
        self.stats["largest_batch_items"] = max(self.stats["largest_batch_items"], items)

    def _count_answer(self, method: str, path: str, status: int) -> None:
        if method != "POST":
            return
        self.stats["requests"] += 1
        if 400 <= status < 500:
            self.stats["bad_requests"] += 1
        elif status >= 500:
            self.stats["failed"] += 1

    # -- the app -----------------------------------------------------------------------------

    def _build_app(self):
        app = create_app(title="prm reward server", description=__doc__.split("\n\n")[0], config=self.config,
                         metrics=self.metrics, error_body=lambda status, message, code: {"error": message},
                         on_answer=self._count_answer)
        app.post("/get_reward", response_model=RewardResponse)(self.get_reward)
        app.post("/score_steps", response_model=ScoreStepsResponse)(self.score_steps)

        @app.get("/health", response_model=Health)
        async def health() -> dict:
            return {"status": "ok", "model": self.model_name, "stats": self.snapshot()}

        return app
