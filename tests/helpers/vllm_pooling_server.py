"""A loopback imitation of vLLM's `/pooling` endpoint that runs a tiny model in this process.

Written from vLLM's protocol classes (vllm-project/vllm main, v0.11-v0.14):
`vllm/entrypoints/pooling/pooling/protocol.py` (`PoolingCompletionRequest`: model, input as
ids or text, task, add_special_tokens, truncate_prompt_tokens, use_activation,
encoding_format; `PoolingResponse` / `PoolingResponseData`: data[i] = {index, object
"pooling", data: rows}), `vllm/entrypoints/pooling/base/protocol.py` (the request mixins),
the `ErrorResponse` shape ({"error": {"message", "type", "code"}}), the API-key middleware
(401 {"error": "Unauthorized"}), and the poolers of `vllm/model_executor/layers/pooler`:
`AllPooler` (the `token_classify` task: one activated row per token) and `StepPooler`
(`returned_token_ids` columns, then only the rows at `step_tag_id`; softmax over the columns).

`tasks` says which task names the server accepts: {"token_classify"} for a current vLLM,
{"reward"} for vLLM <= 0.10. `fail_first` answers that many requests with 503 first (a server
still loading), to exercise retries.
"""

from __future__ import annotations

from typing import Literal

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from prm.serving import Runner, ServeConfig


class PoolingCompletionRequest(BaseModel):
    model: str | None = None
    user: str | None = None
    input: list[int] | list[list[int]] | str | list[str]
    task: str | None = None
    add_special_tokens: bool = True
    truncate_prompt_tokens: int | None = None
    use_activation: bool | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    priority: int = 0


class ImitationPoolingServer:
    """Serves `forward(ids) -> logits [tokens, columns]` as vLLM's /pooling on 127.0.0.1."""

    def __init__(self, forward, tokenizer, model_name: str, *, tasks=("token_classify",), pooler: str = "all",
                 step_tag_id: int | None = None, returned_token_ids: list[int] | None = None,
                 api_key: str | None = None, fail_first: int = 0, root: str | None = None):
        self.forward, self.tokenizer, self.model_name = forward, tokenizer, model_name
        self.tasks, self.pooler = set(tasks), pooler
        self.step_tag_id, self.returned_token_ids = step_tag_id, returned_token_ids
        self.api_key, self.fail_first, self.root = api_key, fail_first, root or model_name
        self.requests: list[dict] = []
        self.runner = Runner(self._app(), ServeConfig(host="127.0.0.1", port=0, api_key=None), lambda: None)

    @property
    def url(self) -> str:
        return self.runner.url

    def __enter__(self):
        self.runner.start()
        return self

    def __exit__(self, *exc):
        self.runner.stop()

    def _error(self, status: int, message: str):
        return JSONResponse({"error": {"message": message, "type": "BadRequestError", "param": None,
                                       "code": status}}, status_code=status)

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def authenticate(request: Request, call_next):
            if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            return await call_next(request)

        @app.get("/v1/models")
        def models():
            return {"object": "list", "data": [{"id": self.model_name, "object": "model", "root": self.root}]}

        @app.post("/pooling")
        def pooling(request: PoolingCompletionRequest):
            self.requests.append(request.model_dump())
            if self.fail_first > 0:
                self.fail_first -= 1
                return self._error(503, "the engine is still loading")
            if request.model is not None and request.model != self.model_name:
                return JSONResponse({"error": {"message": f"The model `{request.model}` does not exist.",
                                               "type": "NotFoundError", "code": 404}}, status_code=404)
            if request.task not in self.tasks:
                return self._error(400, f"Unsupported task: {request.task!r} Supported tasks: {sorted(self.tasks)}")
            inputs = request.input
            if isinstance(inputs, str) or (inputs and isinstance(inputs[0], str)):
                texts = [inputs] if isinstance(inputs, str) else inputs
                inputs = self.tokenizer(texts, add_special_tokens=request.add_special_tokens)["input_ids"]
            elif inputs and isinstance(inputs[0], int):
                inputs = [inputs]
            data = [{"index": i, "object": "pooling", "data": self._pool(ids, request.use_activation)}
                    for i, ids in enumerate(inputs)]
            tokens = sum(len(ids) for ids in inputs)
            return {"id": "pool-imitation", "object": "list", "created": 0, "model": self.model_name, "data": data,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}

        return app

    @torch.inference_mode()
    def _pool(self, ids: list[int], use_activation: bool | None) -> list[list[float]]:
        scores = self.forward(ids).float()  # [tokens, columns]
        if self.returned_token_ids:
            scores = scores[:, self.returned_token_ids]
        if self.pooler == "step" and self.step_tag_id is not None:
            scores = scores[torch.tensor(ids) == self.step_tag_id]
        if use_activation is not False:
            scores = scores.sigmoid() if scores.size(-1) == 1 else scores.softmax(-1)
        return scores.tolist()
