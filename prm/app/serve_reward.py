"""`prm serve-reward MODEL`: serve a step scorer as a reward model over HTTP.

    prm serve-reward out/prm --host 0.0.0.0 --port 5000 --outcome-weight 1 --api-key "$KEY"
    # OpenRLHF: --reward.remote_url http://HOST:5000/get_reward (older: --remote_rm_url)
    # with a key, clients send `Authorization: Bearer $KEY`, or HTTP Basic auth with the key as
    # the password: OpenRLHF's client, through --reward.remote_url http://rl:$KEY@HOST:5000/get_reward
    # (/health stays open)

Needs the `serve` extra (FastAPI, uvicorn, prometheus-client). MODEL is any scorer spec
(`prm.app.scorers.load_step_scorer`: a reward-model folder, a published PRM, `checker:sympy`,
`MODEL+checker:sympy`). The protocol, the endpoints, batching
and limits are described in `prm.rl.server`; how queries are split in `prm.rl.text`.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys

from prm.aggregate import AGGREGATIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a scorer: model folder, short or hub name, checker:NAME")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port (printed at start)")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default=None,
                        help="step scores -> solution score (default: the model's own)")
    parser.add_argument("--process-weight", type=float, default=1.0, help="weight of the process reward")
    parser.add_argument("--outcome-weight", type=float, default=0.0,
                        help="weight of the outcome reward (answer == label, math-verify); needs `labels`")
    parser.add_argument("--format-penalty", type=float, default=0.0,
                        help="subtracted when a response states no final answer")
    parser.add_argument("--step-separator", default="\n", help="what separates steps (default: a newline)")
    parser.add_argument("--prompt-template", default=None,
                        help="how prompts wrap the problem, with {problem} (default: the model's own)")
    parser.add_argument("--response-marker", action="append", default=[], metavar="TEXT",
                        help="text that ends the prompt in a query sent without `prompts` (repeatable)")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="require the key on every route but /health: `Authorization: Bearer KEY`, or HTTP "
                             "Basic auth with it as the password (http://rl:KEY@HOST:PORT/get_reward) "
                             "(default: $PRM_API_KEY; neither: open, with a warning off loopback)")
    parser.add_argument("--served-model-name", default=None, metavar="NAME",
                        help="the model name /health shows (default: MODEL, a folder by its name, not its path)")
    parser.add_argument("--max-batch", type=int, default=64, help="most solutions scored in one batch")
    parser.add_argument("--max-wait", type=float, default=0.01, help="seconds to wait for more requests")
    parser.add_argument("--max-request-mb", type=float, default=16.0, help="largest request body (413 above)")
    parser.add_argument("--max-queries", type=int, default=4096, help="most queries per request (413 above)")
    parser.add_argument("--max-query-chars", type=int, default=200_000,
                        help="most characters per query (413 above)")
    parser.add_argument("--max-steps", type=int, default=2048, help="most steps per query (413 above)")
    parser.add_argument("--max-pending", type=int, default=1024,
                        help="requests answered at once; more get 503 with Retry-After")
    parser.add_argument("--request-timeout", type=float, default=600.0,
                        help="seconds a request may take before it gets 503")
    parser.add_argument("--read-timeout", type=float, default=60.0,
                        help="seconds a client may take to send a request (headers, then body; 408 after)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401 - the server's stack, checked before anything loads
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401

        from prm.rl.server import RewardServer
        from prm.serving import ServeConfig, ServeError
    except ImportError as error:
        print(f"prm serve-reward: error: {error.name or error} is missing; "
              "install the servers with: pip install 'prm-toolkit[serve]'", file=sys.stderr)
        return 2
    try:  # every option is checked, and the address taken, before the model loads
        for flag in ("process_weight", "outcome_weight", "format_penalty", "max_request_mb"):
            if not math.isfinite(getattr(args, flag)):
                raise ServeError(f"--{flag.replace('_', '-')} must be a finite number, got {getattr(args, flag)}")
        if args.max_request_mb <= 0:
            raise ServeError(f"--max-request-mb must be positive, got {args.max_request_mb}")
        config = ServeConfig(host=args.host, port=args.port, api_key=args.api_key, max_batch=args.max_batch,
                             max_wait=args.max_wait, max_body_bytes=max(1, int(args.max_request_mb * (1 << 20))),
                             max_queries=args.max_queries, max_query_chars=args.max_query_chars,
                             max_steps=args.max_steps, max_pending=args.max_pending,
                             request_timeout=args.request_timeout, read_timeout=args.read_timeout)
        config.listen(warn=False).close()
        check_device(args.device)
    except ServeError as error:
        print(f"prm serve-reward: error: {error}", file=sys.stderr)
        return 2

    import torch

    from prm.app.scorers import load_step_scorer
    from prm.rl.rewards import ProcessReward

    if args.threads:
        torch.set_num_threads(args.threads)
    scorer = load_step_scorer(args.model, device=args.device)
    reward = ProcessReward(scorer, aggregation=args.aggregation, process_weight=args.process_weight,
                           outcome_weight=args.outcome_weight, format_penalty=args.format_penalty,
                           prompt_template=_unescape(args.prompt_template),
                           step_separator=_unescape(args.step_separator))
    try:
        server = RewardServer(reward, model_name=args.served_model_name or display_name(args.model), config=config,
                              markers=tuple(_unescape(m) for m in args.response_marker))
    except ServeError as error:
        print(f"prm serve-reward: error: {error}", file=sys.stderr)
        return 2
    print(f"serving {args.model} at {server.url}/get_reward (health: {server.url}/health)", flush=True)
    # uvicorn shuts down gracefully on SIGTERM (the requests in flight are answered), then
    # raises the signal again: exit quietly with 0 then
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def check_device(spec: str | None) -> None:
    """Raise `ServeError` (one line) unless torch can place a model on device `spec` here:
    `cuda:7` on a CPU-only torch, or beyond the visible GPUs, is refused before the model loads."""
    from prm.serving import ServeError

    if spec is None:
        return
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as error:
        raise ServeError(f"--device {spec!r} is not a device: {str(error).splitlines()[0]}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            reason = (f"this torch ({torch.__version__}) is built without CUDA" if torch.version.cuda is None
                      else "no CUDA device is visible")
            raise ServeError(f"--device {spec}: {reason}; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ServeError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ServeError(f"--device {spec}: MPS is not available here; use --device cpu")


def display_name(spec: str) -> str:
    """What /health shows for a scorer spec: local folders by their name, not their path."""
    return "+".join(os.path.basename(os.path.normpath(part)) if os.path.exists(part) else part
                    for part in spec.split("+"))


def _unescape(text: str | None) -> str | None:
    """`\\n` and `\\t` typed on a command line as a newline and a tab."""
    return None if text is None else text.replace("\\n", "\n").replace("\\t", "\t")
