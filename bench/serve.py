"""Load test of the two HTTP servers: the reward server (`prm serve-reward`'s RewardServer) and
the completion server (`completers.server`), each with dynamic batching on and off, at 1, 8
and 64 concurrent clients.

Each arm starts the server in its own process (so the clients' threads do not share its
interpreter), then for each client count runs that many threads for `--seconds`, each on one
keep-alive connection sending requests from a fixed set of queries, and reports requests/s,
scored steps/s (reward server) or sampled tokens/s (completion server), p50/p99 latency and
errors. Identical queries must get identical answers: every reward (or completion text) is
compared with the first answer to the same query, across arms and client counts.

The reward model: `--prm FOLDER` (e.g. the demo's `demo_out/prm`), else tiny-gsm's backbone
with a fresh (untrained) PRM head, LM features on: the same forward cost as a trained
demo PRM, built in a second. The reward cache is off (`cache_size=0`), so every request is
scored by the model; 256 distinct queries (world problems, reference solutions), each client
starting at a different one, so concurrent requests rarely repeat a query.

Batching on: `--max-batch 64 --max-wait 0.01` (the defaults of `prm serve-reward`); off:
`--max-batch 1 --max-wait 0` (one request per model call). The completion server samples
`--max-tokens` tokens (temperature 1, a seed per query) with tiny-gsm; on: up to 256 rows,
`max_wait` 0.01; off: one row per call.

Goals printed at the end (reward server and completion server each):
- zero errors and identical answers to identical queries at 64 clients;
- batched throughput at 64 clients >= 3x unbatched;
- p99 latency at 8 clients < 2 x (single-client latency + the batch wait).

    nice python bench/serve.py                  # both servers, 8 s per measurement
    python bench/serve.py --seconds 3 --servers reward
    python bench/serve.py --quick               # 2 s per measurement, 1 and 8 clients
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import ROOT, Goal, machine, parser, print_goals, save_results  # noqa: E402

ARMS = {"batched": {"max_batch": 64, "max_wait": 0.01}, "unbatched": {"max_batch": 1, "max_wait": 0.0}}
TOLERANCE = 1e-5  # two rewards of one query closer than this are the same (float32 rounding)
COMPLETION_ARMS = {"batched": {"max_batch": 256, "max_wait": 0.01}, "unbatched": {"max_batch": 1, "max_wait": 0.0}}


# -- the server process --------------------------------------------------------------------

def serve(args: argparse.Namespace) -> None:
    """Child mode: one server on a free port; prints its URL, serves until SIGTERM."""
    import torch

    torch.set_num_threads(args.threads)
    if args.kind == "reward":
        from prm.reward.loading import load_scorer
        from prm.rl.rewards import ProcessReward
        from prm.rl.server import RewardServer

        reward = ProcessReward(load_scorer(args.model, device="cpu"), cache_size=0)
        server = RewardServer(reward, max_batch=args.max_batch, max_wait=args.max_wait)
    else:
        from completers.server import CompletionServer
        from completers.transformers_completer import TransformersCompleter

        server = CompletionServer(TransformersCompleter("tiny-gsm"), "tiny-gsm", max_batch_rows=args.max_batch,
                                  max_wait=args.max_wait)
    print(server.url, flush=True)
    server.serve_forever()


def start_server(kind: str, model: str | None, arm: dict, threads: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, __file__, "--serve", kind, "--max-batch", str(arm["max_batch"]),
               "--max-wait", str(arm["max_wait"]), "--threads", str(threads)]
    if model:
        command += ["--model", model]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        raise SystemExit(f"the {kind} server did not start")
    return process, url


# -- the queries ---------------------------------------------------------------------------

def reward_queries(count: int) -> list[tuple[dict, int]]:
    from completers.text import plain_prompt
    from completers.world import generate_problems

    queries = []
    for problem in generate_problems(count, seed=2026):
        prompt = plain_prompt(problem.question, [])
        body = {"query": [prompt + problem.solution + "<|endoftext|>"], "prompts": [prompt]}
        queries.append((body, len(problem.steps)))
    return queries


def completion_queries(count: int, max_tokens: int) -> list[tuple[dict, int]]:
    from completers.text import plain_prompt
    from completers.world import generate_problems

    return [({"prompt": plain_prompt(p.question, []), "max_tokens": max_tokens, "temperature": 1.0, "seed": i,
              "stop": ["\n\n"]}, 0) for i, p in enumerate(generate_problems(count, seed=2027))]


# -- the clients ---------------------------------------------------------------------------

def load(url: str, path: str, queries: list[tuple[dict, int]], clients: int, seconds: float,
         answer_of, answers: dict) -> dict:
    """`clients` threads, each on one keep-alive connection, for `seconds`."""
    host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
    latencies, errors, work, mismatches, largest = [], [], [0], [0], [0.0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        index = number * len(queries) // max(clients, 1)
        start.wait()
        while time.monotonic() < stop_at:
            body, steps = queries[index % len(queries)]
            data = json.dumps(body).encode()
            began = time.perf_counter()
            try:
                connection.request("POST", path, data, {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = json.loads(response.read())
                took = time.perf_counter() - began
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}: {payload}")
                answer, amount = answer_of(payload, steps)
            except Exception as error:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"{type(error).__name__}: {error}"[:200])
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=120)
                continue
            with lock:
                latencies.append(took)
                work[0] += amount
                first = answers.setdefault(index % len(queries), answer)
                if isinstance(answer, float):  # padded batches differ in float32 rounding only
                    largest[0] = max(largest[0], abs(first - answer))
                    mismatches[0] += abs(first - answer) > TOLERANCE
                elif first != answer:
                    mismatches[0] += 1
            index += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {"clients": clients, "requests": len(latencies), "rps": len(latencies) / elapsed,
            "work_per_s": work[0] / elapsed, "p50_ms": 1000 * quantile(0.5), "p99_ms": 1000 * quantile(0.99),
            "mean_ms": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
            "errors": len(errors), "error_examples": errors[:3], "mismatches": mismatches[0],
            "largest_difference": largest[0]}


def reward_answer(payload: dict, steps: int):
    return payload["rewards"][0], steps


def completion_answer(payload: dict, steps: int):
    choice = payload["choices"][0]
    return choice["text"], payload["usage"]["completion_tokens"]


# -- one server, both arms -----------------------------------------------------------------

def bench_server(kind: str, args: argparse.Namespace, model: str | None) -> dict:
    if kind == "reward":
        queries, path, answer_of, arms = reward_queries(256), "/get_reward", reward_answer, ARMS
    else:
        queries = completion_queries(256, args.max_tokens)
        path, answer_of, arms = "/v1/completions", completion_answer, COMPLETION_ARMS
    answers: dict = {}  # query index -> first answer, shared by every arm and client count
    results = {}
    for arm_name, arm in arms.items():
        process, url = start_server(kind, model, arm, args.threads)
        try:
            load(url, path, queries[:4], 1, 1.0, answer_of, {})  # warm-up
            rows = []
            for clients in args.clients:
                row = load(url, path, queries, clients, args.seconds, answer_of, answers)
                rows.append(row)
                print(f"{kind:10s} {arm_name:9s} {clients:3d} clients: {row['rps']:7.1f} req/s "
                      f"{row['work_per_s']:8.1f} {'steps' if kind == 'reward' else 'tokens'}/s  "
                      f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}  "
                      f"mismatches {row['mismatches']}", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=120)
        results[arm_name] = {"arm": arm, "rows": rows}
    return results


def model_alone(model: str, threads: int, count: int = 64) -> dict:
    """The ceiling batching can reach for the reward model on this machine: `count` solutions
    scored one call each vs in one call, in this process, side by side."""
    import torch

    from prm.reward.loading import load_scorer

    torch.set_num_threads(threads)
    scorer = load_scorer(model, device="cpu")
    items = [(body["prompts"][0], ["x"]) for body, _ in reward_queries(1)]  # warm-up
    scorer.score_many(items)
    from completers.world import generate_problems

    items = [(p.question, p.steps) for p in generate_problems(count, seed=2026)]
    began = time.perf_counter()
    for item in items:
        scorer.score_many([item])
    alone = time.perf_counter() - began
    began = time.perf_counter()
    scorer.score_many(items)
    together = time.perf_counter() - began
    return {"solutions": count, "one_at_a_time_s": alone, "one_call_s": together, "speedup": alone / together}


def goals(kind: str, results: dict) -> list[Goal]:
    by = {arm: {row["clients"]: row for row in data["rows"]} for arm, data in results.items()}
    out = []
    on, off = by["batched"], by["unbatched"]
    if 64 in on:
        print(f"{kind}: 64 clients batched: {on[64]['requests']} requests, largest reward difference "
              f"{on[64]['largest_difference']:.1e} (tolerance {TOLERANCE:g})")
        out.append(Goal(f"{kind}: 64 clients batched, errors + answers differing from the first answer to the "
                        "same query", on[64]["errors"] + on[64]["mismatches"], "<=", 0))
    if 64 in on and 64 in off:
        out.append(Goal(f"{kind}: batched / unbatched throughput at 64 clients",
                        round(on[64]["rps"] / max(off[64]["rps"], 1e-9), 3), ">=", 3, "x"))
    if 8 in on and 1 in on:
        wait_ms = 1000 * results["batched"]["arm"]["max_wait"]
        out.append(Goal(f"{kind}: p99 at 8 clients below 2 x (single-client p50 {on[1]['p50_ms']:.1f} ms + wait "
                        f"{wait_ms:.0f} ms)", round(on[8]["p99_ms"], 1), "<", round(2 * (on[1]["p50_ms"] + wait_ms), 1),
                        "ms"))
    return out


def arguments(argv):
    args = parser(__doc__, "serve", quick="2 s per measurement, 1 and 8 clients")
    args.add_argument("--servers", nargs="+", choices=("reward", "completion"), default=["reward", "completion"])
    args.add_argument("--prm", default=None, help="a reward-model folder (default: tiny-gsm + a fresh head)")
    args.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    args.add_argument("--seconds", type=float, default=8.0, help="length of each measurement")
    args.add_argument("--max-tokens", type=int, default=24, help="tokens per completion")
    # child mode
    args.add_argument("--serve", choices=("reward", "completion"), dest="kind", help=argparse.SUPPRESS)
    args.add_argument("--model", help=argparse.SUPPRESS)
    args.add_argument("--max-batch", type=int, default=64, help=argparse.SUPPRESS)
    args.add_argument("--max-wait", type=float, default=0.01, help=argparse.SUPPRESS)
    args = args.parse_args(argv)  # --threads: torch threads of each server
    if args.quick:
        args.seconds, args.clients = min(args.seconds, 2.0), [1, 8]
    return args


def fresh_reward_model(folder: Path) -> str:
    """tiny-gsm's backbone with a fresh PRM head, LM features on: a trained demo PRM's forward cost."""
    import torch

    from completers.text import PLAIN_TEMPLATE
    from prm.reward.model import RewardModel, RewardModelOptions

    torch.manual_seed(0)
    RewardModel.from_backbone("tiny-gsm", RewardModelOptions(lm_features=True, prompt_template=PLAIN_TEMPLATE)
                              ).save_pretrained(str(folder))
    print("reward model: tiny-gsm backbone with a fresh PRM head (no --prm given)", flush=True)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if args.kind:
        serve(args)
        return 0
    machine_record = machine(args.threads)
    report = {"seconds": args.seconds, "clients": args.clients,
              "reward_model": args.prm or "tiny-gsm backbone + fresh PRM head"}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.prm
        if "reward" in args.servers and model is None:
            model = fresh_reward_model(Path(tmp) / "prm")
        if "reward" in args.servers:
            report["model_alone"] = ceiling = model_alone(model, args.threads)
            print(f"reward model alone: {ceiling['solutions']} solutions one call each "
                  f"{ceiling['one_at_a_time_s']:.2f} s, in one call {ceiling['one_call_s']:.2f} s: "
                  f"batching can gain at most {ceiling['speedup']:.2f}x here", flush=True)
        for kind in args.servers:
            report[kind] = bench_server(kind, args, model)
    goal_list = [goal for kind in args.servers for goal in goals(kind, report[kind])]
    print_goals(goal_list)
    save_results(args.results, report, machine_record, goal_list)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
