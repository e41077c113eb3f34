"""A step scorer that asks a reward server over HTTP (`prm serve-reward`'s POST /score_steps).

    scorer = RemoteStepScorer("http://10.0.0.5:5000", api_key=os.environ.get("PRM_API_KEY"))
    scorer.score_many([(problem, steps)])   # the server's model scores them, batched with other clients

So anything that takes a `StepScorer` (the verl reward manager, `ProcessGRPOTrainer`, dense
rewards) can use a PRM that sits on another machine or GPU. Plain `urllib` (no extra dependency);
an HTTP error is raised with the server's one-line message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from prm.reward.scorer import StepScorer


class RemoteStepScorer(StepScorer):
    """Step scores from a reward server at `url` (http://host:port); api_key: its bearer key."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 300.0, aggregation: str = "min"):
        self.url, self.api_key, self.timeout, self.aggregation = url.rstrip("/"), api_key, timeout, aggregation

    def score_many(self, items, batch_size=None, progress=False) -> list[list[float | None]]:
        body = {"items": [{"problem": problem, "steps": list(steps)} for problem, steps, *_ in items]}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(f"{self.url}/score_steps", data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())["step_scores"]
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"reward server {self.url} answered {error.code}: "
                               f"{error.read().decode(errors='replace')[:300]}") from None
