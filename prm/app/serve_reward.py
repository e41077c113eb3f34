"""`prm serve-reward MODEL`: serve a step scorer as a reward model over HTTP.

    prm serve-reward out/prm --host 0.0.0.0 --port 5000 --outcome-weight 1
    # OpenRLHF: --reward.remote_url http://HOST:5000/get_reward (older: --remote_rm_url)

MODEL is any scorer spec (`prm.app.scorers.load_step_scorer`: a reward-model folder, a
published PRM, `checker:sympy`, `MODEL+checker:sympy`). The protocol, the endpoints, batching
and limits are described in `prm.rl.server`; how queries are split in `prm.rl.text`.
"""

from __future__ import annotations

import argparse

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
    parser.add_argument("--max-batch", type=int, default=64, help="most solutions scored in one batch")
    parser.add_argument("--max-wait", type=float, default=0.01, help="seconds to wait for more requests")
    parser.add_argument("--max-request-mb", type=float, default=16.0, help="largest request body")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from prm.app.scorers import load_step_scorer
    from prm.rl.rewards import ProcessReward
    from prm.rl.server import RewardServer

    if args.threads:
        torch.set_num_threads(args.threads)
    scorer = load_step_scorer(args.model, device=args.device)
    reward = ProcessReward(scorer, aggregation=args.aggregation, process_weight=args.process_weight,
                           outcome_weight=args.outcome_weight, format_penalty=args.format_penalty,
                           prompt_template=_unescape(args.prompt_template),
                           step_separator=_unescape(args.step_separator))
    server = RewardServer(reward, args.host, args.port, model_name=args.model, max_batch=args.max_batch,
                          max_wait=args.max_wait, max_body_bytes=int(args.max_request_mb * (1 << 20)),
                          markers=tuple(_unescape(m) for m in args.response_marker))
    print(f"serving {args.model} at {server.url}/get_reward (health: {server.url}/health)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _unescape(text: str | None) -> str | None:
    """`\\n` and `\\t` typed on a command line as a newline and a tab."""
    return None if text is None else text.replace("\\n", "\n").replace("\\t", "\t")
