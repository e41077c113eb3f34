"""Published PRMs scored by a vLLM server: the `vllm-pooling:MODEL@http://HOST:PORT` scorer spec.

    vllm serve Qwen/Qwen2.5-Math-PRM-7B --runner pooling --port 8000        # on the GPU machine
    prm score vllm-pooling:Qwen/Qwen2.5-Math-PRM-7B@http://gpu1:8000,http://gpu2:8000 in.jsonl out.jsonl

Only the forward pass moves to the server. The text and token ids are built here by the
in-process scorer of the model's family (`prm.reward.published`: Qwen2.5-Math-PRM, Skywork,
RLHFlow, Math-Shepherd, TRL token classification), from the model's tokenizer and config
(no weights are read), and sent as token ids, so the server sees exactly the tokens the
in-process scorer would run; the scores are read at the same positions, with the same class.

The protocol, as read from vLLM's source (vllm-project/vllm, main as of v0.11-v0.14;
`vllm/entrypoints/pooling/pooling/protocol.py` `PoolingCompletionRequest` / `PoolingResponse`,
`vllm/entrypoints/pooling/base/protocol.py` `PoolingBasicRequestMixin` /
`CompletionRequestMixin`, `vllm/entrypoints/pooling/pooling/serving.py`, and the poolers in
`vllm/model_executor/layers/pooler` `AllPooler` / `StepPooler`; the older
`vllm/entrypoints/openai/protocol.py` `PoolingCompletionRequest` has the same fields):

- POST `/pooling` with ``{"model": NAME, "input": [[ids], ...], "task": "token_classify",
  "add_special_tokens": false}``; `Authorization: Bearer KEY` when the server has `--api-key`.
- The answer: ``{"data": [{"index": i, "object": "pooling", "data": ROWS}, ...], ...}``, ROWS
  one row of class probabilities per token (`AllPooler`, the `token_classify` task), or one
  row per step tag only (`StepPooler` with a `step_tag_id`: Qwen2ForProcessRewardModel's
  default, and `--pooler-config '{"pooling_type": "STEP", ...}'`). With `returned_token_ids`
  [good, bad] a causal LM's row is the softmax over those two tokens (Math-Shepherd, RLHFlow).
- Servers older than the `token_classify` task (vLLM 0.10 and before, `vllm/tasks.py`:
  PoolingTask = encode, embed, classify, score) pool per token with the request task `encode`
  on a model served with `--task reward`; newer ones refuse `encode` ("`encode` task was
  removed; use `token_embed` or `token_classify`"). When a server refuses `token_classify`
  the scorer tries `encode`, then `reward` (the model-level name, which some servers take per
  request), and remembers per endpoint the one that was taken.

How a row becomes a step's probability: a two-class head (Qwen PRM, token classification)
reads class 1; Skywork's one-value head reads its sigmoid; Math-Shepherd and RLHFlow read
p(good) / (p(good) + p(bad)), which is the in-process softmax over the two label logits whether
the server returns those two columns or the whole vocabulary.

Batches go to the endpoints round robin, several at once; a failed request (connection
refused, timeout, 429, 5xx) is retried with back-off on the next endpoint. The API key is the
`api_key` argument or the `VLLM_API_KEY` environment variable (what `vllm serve` reads).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from prm.reward.scorer import BatchedStepScorer
from prm.reward.step_tokenizer import EncodedSteps

PREFIX = "vllm-pooling:"
TASKS = ("token_classify", "encode", "reward")  # the current name first; see the docstring
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
# which column of a row is "good" when the row has two columns: the two-class heads' class 1,
# the label-token families' first returned token (returned_token_ids = [good, bad])
GOOD_COLUMN = {"qwen-prm": 1, "token-classification": 1, "skywork": 0, "math-shepherd": 0, "rlhflow": 0}


class VLLMError(RuntimeError):
    """A vLLM server refused a request or could not be reached."""


def is_spec(spec: str | None) -> bool:
    return bool(spec) and str(spec).startswith(PREFIX)


def parse_spec(spec: str) -> tuple[str | None, list[str]]:
    """(MODEL or None, endpoint URLs) of `vllm-pooling:[MODEL@]URL[,URL...]`."""
    body = spec[len(PREFIX):].strip()
    model, _, urls = body.rpartition("@") if "@" in body else ("", "", body)
    endpoints = [url.strip().rstrip("/") for url in urls.split(",") if url.strip()]
    if not endpoints or not all(url.startswith(("http://", "https://")) for url in endpoints):
        raise ValueError(f"scorer {spec!r}: expected vllm-pooling:[MODEL@]http://HOST:PORT[,http://HOST:PORT...]")
    return model.strip() or None, endpoints


def served_model(endpoint: str, api_key: str | None = None, timeout: float = 30.0) -> str:
    """The model a vLLM server serves (GET /v1/models: the first model's `root`, else its id)."""
    request = urllib.request.Request(f"{endpoint}/v1/models", headers=_headers(api_key))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            models = json.loads(response.read())["data"]
    except (urllib.error.URLError, OSError, KeyError, ValueError) as error:
        raise VLLMError(f"cannot ask {endpoint}/v1/models which model it serves: {error}") from None
    if not models:
        raise VLLMError(f"{endpoint} serves no model")
    return models[0].get("root") or models[0]["id"]


def model_of_spec(spec: str, api_key: str | None = None) -> str:
    """The local folder, short name or hub name whose tokenizer and config the spec uses."""
    model, endpoints = parse_spec(spec)
    return model or served_model(endpoints[0], api_key or os.environ.get("VLLM_API_KEY"))


def _headers(api_key: str | None) -> dict:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


class ServedModel:
    """What the in-process scorers need of a model that runs on a server: its config."""

    def __init__(self, config):
        self.config = config

    def eval(self):
        return self


class VLLMPoolingScorer(BatchedStepScorer):
    """Step scores from vLLM `/pooling` servers, encoded and read as `local` (an in-process
    scorer of the family over a `ServedModel`) encodes and reads them.

    endpoints: server URLs (http://host:port). served_name: the `model` field sent (None:
    the server's only model). api_key: bearer key (default `VLLM_API_KEY`). task: "auto"
    (token_classify, falling back to encode, then reward) or one of `TASKS`. batch_size: traces per
    request; concurrency: requests in flight per endpoint; retries: further attempts of a
    failed request; timeout: seconds per request.
    """

    max_batch_tokens = 1 << 20  # the server schedules its own batches

    def __init__(self, local: BatchedStepScorer, family: str, endpoints: list[str], *,
                 served_name: str | None = None, api_key: str | None = None, task: str = "auto",
                 batch_size: int = 32, concurrency: int = 4, retries: int = 3, timeout: float = 300.0,
                 backoff: float = 0.5):
        if family not in GOOD_COLUMN:
            raise ValueError(f"vLLM pooling cannot score the {family!r} family; "
                             f"it scores {', '.join(GOOD_COLUMN)}")
        if task != "auto" and task not in TASKS:
            raise ValueError(f"task must be auto or one of {', '.join(TASKS)}, got {task!r}")
        if not endpoints:
            raise ValueError("no vLLM endpoint given")
        self.local, self.family, self.endpoints = local, family, list(endpoints)
        self.served_name, self.task = served_name, task
        self.api_key = api_key if api_key is not None else os.environ.get("VLLM_API_KEY")
        self.batch_size, self.concurrency, self.retries = batch_size, concurrency, retries
        self.timeout, self.backoff = timeout, backoff
        self.aggregation = local.aggregation
        self.label_ids = list(getattr(local, "label_ids", []) or [])
        self._tasks: dict[str, str] = {}  # endpoint -> the task it accepted
        self._next = itertools.count()
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: str, family_class, family: str, *, served_name: str | None = None,
                  api_key: str | None = None, task: str = "auto", batch_size: int | None = None,
                  concurrency: int = 4, retries: int = 3, timeout: float = 300.0, **kwargs) -> VLLMPoolingScorer:
        """The scorer of a `vllm-pooling:[MODEL@]URL[,URL...]` spec whose model is of `family`
        (`family_class`: its in-process scorer class; `prm.reward.loading.load_scorer` tells
        both). kwargs go to the in-process scorer (max_length, step_tag, step_separator, ...)."""
        from transformers import AutoConfig, AutoTokenizer

        from prm.model_names import resolve_model

        api_key = api_key if api_key is not None else os.environ.get("VLLM_API_KEY")
        _, endpoints = parse_spec(spec)
        path = resolve_model(model_of_spec(spec, api_key))
        if family not in GOOD_COLUMN:
            raise ValueError(f"{path} is a {family!r} model, which vLLM does not serve; "
                             f"vllm-pooling scores {', '.join(GOOD_COLUMN)}")
        kwargs = {k: v for k, v in kwargs.items() if k not in ("device", "dtype", "max_batch_tokens")}
        local = family_class(ServedModel(AutoConfig.from_pretrained(path)), AutoTokenizer.from_pretrained(path),
                             **kwargs)
        options = {"batch_size": batch_size} if batch_size else {}
        return cls(local, family, endpoints, served_name=served_name, api_key=api_key, task=task,
                   concurrency=concurrency, retries=retries, timeout=timeout, **options)

    # -- encoding and reading: the family's own ------------------------------------------------

    def _encode_many(self, items) -> list[EncodedSteps]:
        return self.local._encode_many(items)

    def _probability(self, row) -> float:
        if not isinstance(row, list):
            row = [row]
        if len(row) == 1:  # a one-value head, its activation (sigmoid) applied by the server
            return float(row[0])
        if len(row) == 2:
            good = GOOD_COLUMN[self.family]
            return float(row[good]) / (float(row[0]) + float(row[1]))
        if self.label_ids and len(row) > max(self.label_ids):  # a whole vocabulary's softmax
            good, bad = (float(row[i]) for i in self.label_ids)
            return good / (good + bad)
        raise VLLMError(f"the server returned rows of {len(row)} values; expected 1 or 2 (or a vocabulary "
                        "row holding the label tokens): is it serving this model with the pooler shown "
                        "in docs/reward_models.md?")

    def _read(self, rows, encoded: EncodedSteps) -> list[float]:
        """The kept steps' probabilities from one item's rows: one row per token, or one per step tag."""
        if len(rows) == len(encoded.input_ids):
            picked = [rows[p] for p in encoded.step_positions]
        elif len(rows) == len(encoded.step_positions):
            picked = rows
        else:
            raise VLLMError(f"the server returned {len(rows)} rows for {len(encoded.input_ids)} tokens with "
                            f"{len(encoded.step_positions)} steps: neither one per token nor one per step")
        return [self._probability(row) for row in picked]

    # -- batching over endpoints ---------------------------------------------------------------

    def _step_probabilities(self, batch: list[EncodedSteps]) -> list[list[float]]:
        results = self._post_pooling([list(e.input_ids) for e in batch])
        return [self._read(rows, e) for rows, e in zip(results, batch)]

    def _answer_batches(self, encoded, batches):
        """Several requests in flight: `concurrency` per endpoint, answers in batch order."""
        workers = max(1, min(len(batches), len(self.endpoints) * self.concurrency))
        with ThreadPoolExecutor(workers, thread_name_prefix="vllm-pooling") as pool:
            yield from zip(batches, pool.map(lambda batch: self._step_probabilities([encoded[i] for i in batch]),
                                             batches))

    def _post_pooling(self, inputs: list[list[int]]) -> list[list]:
        """The rows of each input, from the first endpoint that answers (round robin, retried)."""
        start = next(self._next)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            endpoint = self.endpoints[(start + attempt) % len(self.endpoints)]
            try:
                return self._ask(endpoint, inputs)
            except _Retryable as error:
                last = error.__cause__ or error
                if attempt < self.retries:
                    time.sleep(self.backoff * 2 ** attempt)
        raise VLLMError(f"vLLM pooling failed after {self.retries + 1} attempt(s): {last}")

    def _ask(self, endpoint: str, inputs: list[list[int]]) -> list[list]:
        tasks = [self._tasks[endpoint]] if endpoint in self._tasks else \
            list(TASKS) if self.task == "auto" else [self.task]
        first_refusal = None
        for task in tasks:
            body = {"input": inputs, "task": task, "add_special_tokens": False, "encoding_format": "float"}
            if self.served_name:
                body["model"] = self.served_name
            status, answer = self._http(endpoint, body)
            if status == 200:
                with self._lock:
                    self._tasks[endpoint] = task
                data = sorted(answer["data"], key=lambda d: d["index"])
                if len(data) != len(inputs):
                    raise VLLMError(f"{endpoint} answered {len(data)} results for {len(inputs)} inputs")
                return [d["data"] for d in data]
            message = _error_message(answer)
            if status in RETRY_STATUS:
                raise _Retryable(f"{endpoint} answered {status}: {message}")
            if status in (400, 404, 422):
                first_refusal = first_refusal or f"{endpoint}/pooling answered {status} to task {task!r}: {message}"
                continue  # perhaps an older server with another name for the task
            raise VLLMError(f"{endpoint}/pooling answered {status}: {message}")
        raise VLLMError(first_refusal)

    def _http(self, endpoint: str, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(f"{endpoint}/pooling", data=json.dumps(body).encode(),
                                         headers=_headers(self.api_key))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"message": text[:300]}
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            raise _Retryable(f"cannot reach {endpoint}: {error}") from error


class _Retryable(Exception):
    """A failure worth another attempt (on the next endpoint)."""


def _error_message(answer) -> str:
    """The message of vLLM's ErrorResponse: {"error": {"message": ...}} (newer) or
    {"object": "error", "message": ...} (older), or FastAPI's {"detail": ...}."""
    if not isinstance(answer, dict):
        return str(answer)[:300]
    error = answer.get("error")
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])[:300]
    return str(answer.get("message") or answer.get("detail") or answer)[:300]


def serve_command(model: str, family: str, served_as: str | None = None) -> str:
    """The `vllm serve` line (vLLM >= 0.11: `--runner pooling`, `--pooler-config`) that gives
    this scorer the rows it reads for `model` of `family`, with the label token ids of its own
    tokenizer. served_as: the name on the command line (default: `model`)."""
    import shlex

    from transformers import AutoTokenizer

    from prm.model_names import resolve_model
    from prm.reward.published.common import single_token_id

    line = f"vllm serve {shlex.quote(served_as or model)} --runner pooling"
    if family in ("math-shepherd", "rlhflow"):
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
        ids = [single_token_id(tokenizer, token) for token in ("+", "-")]
        pooler = {"pooling_type": "STEP", "returned_token_ids": ids}
        line += " --pooler-config " + shlex.quote(json.dumps(pooler))
    elif family == "skywork":
        line += "   # with Skywork's vLLM plugin installed (it registers Qwen2ForPrmModel)"
    elif family not in GOOD_COLUMN:
        raise ValueError(f"vLLM does not serve {family!r} models; it serves {', '.join(GOOD_COLUMN)}")
    return line



if __name__ == "__main__":  # python -m prm.reward.vllm_pooling MODEL FAMILY
    import sys

    print(serve_command(*sys.argv[1:3]))
