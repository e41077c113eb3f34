"""Benchmark: the shared-prefix sampler of TransformersCompleter against naive
`model.generate(num_return_sequences=N)`, one step prefix at a time.

    python bench/completers.py                  # tiny-gsm (or a config-built GPT-2 of its shape)
    python bench/completers.py --model smollm2-135m --traces 2 --max-new-tokens 48

Both paths sample N continuations of every step prefix of the same traces (reference
solutions of the embedded world with 4+ steps), with the same model, prompts, N,
temperature 1 / top-p 1 and seeds, and end a continuation the same way (end-of-sequence,
or after the `#### x` answer line). Reported, side by side in one process:

- wall time and generated tokens per second of (a) naive generate and (b) the shared-prefix
  sampler, and their ratio;
- the FLOPs (b) did (its counters: tokens through the model, attention pairs) divided by its
  time, as a fraction of this machine's float32 matmul throughput measured in the same run;
- equal output distributions: (b) gives exactly the samples of the completer's naive
  reference sampler (no cache, one sequence at a time) for the same seeds, on the first
  prompts; and (a) and (b) have equal solve rates (two-proportion z-test; `generate` draws its
  random numbers differently, so only the distributions can agree) and equal mean lengths.

Writes bench/results/completers.json. Uses 2 torch threads (the whole machine, `--threads`);
takes 1-4 minutes with the defaults, depending on how busy the machine is.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import Goal, Stopwatch, machine, matmul_peak, parser, print_goals, save_results  # noqa: E402

_SCRATCH = None

from completers.base import SamplingParams  # noqa: E402
from completers.text import cut_at_stop  # noqa: E402
from completers.transformers_completer import TransformersCompleter  # noqa: E402
from completers.world import generate_problems, parse_answer  # noqa: E402
from prm.formats.gsm8k import parse_gsm8k_answer  # noqa: E402


def arguments(argv):
    args = parser(__doc__, "completers", threads=2, quick="4 traces, 2 check prompts")
    args.add_argument("--model", default=None, help="default: tiny-gsm, or a random GPT-2 of its shape if absent")
    args.add_argument("--traces", type=int, default=16, help="traces (each gives one prompt per step)")
    args.add_argument("--min-steps", type=int, default=4)
    args.add_argument("--n", type=int, default=8, help="samples per step prefix")
    args.add_argument("--max-new-tokens", type=int, default=320,
                      help="at most; less where prompt + continuation would not fit the model's positions")
    args.add_argument("--batch-size", type=int, default=128, help="sequences decoded together by (b)")
    args.add_argument("--check-prompts", type=int, default=3,
                      help="prompts of the first trace whose samples are checked against the (slow, "
                           "cache-free) reference sampler")
    args.add_argument("--check-tokens", type=int, default=48, help="max_new_tokens of that check")
    args = args.parse_args(argv)
    if args.quick:
        args.traces, args.check_prompts = min(args.traces, 4), min(args.check_prompts, 2)
    return args


def step_prefixes(completer, args) -> tuple[list, list[str], list[int]]:
    """The world problems of `--min-steps`+ steps, the prompt of every step prefix, its answer."""
    problems = [p for p in generate_problems(20 * args.traces, seed=args.seed) if len(p.steps) >= args.min_steps]
    problems = problems[:args.traces]
    prompts, answers = [], []
    for problem in problems:
        for k in range(1, len(problem.steps) + 1):  # the prefix ending at each step
            prompts.append(completer.prompt_for(problem.question, problem.steps[:k]))
            answers.append(problem.answer)
    return problems, prompts, answers


def same_as_reference(completer, prompts: list[str], args) -> bool:
    """(b) on a few prompts with shorter continuations, against the reference sampler (which
    re-encodes the whole text for every token: its cost grows with the square of the length)."""
    params = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.check_tokens, seed=args.seed)
    with Stopwatch() as watch:
        identical = completer.reference_complete_prompts(prompts, params) == completer.complete_prompts(prompts, params)
    print(f"identical to the reference sampler on {len(prompts)} prompts x {args.n} samples x "
          f"<= {args.check_tokens} tokens: {identical} ({watch.seconds:.1f} s)", flush=True)
    return identical


def summary(results, seconds: float, answers: list[int]) -> dict:
    flat = [c for completions in results for c in completions]
    tokens = sum(c.tokens for c in flat)
    solved = sum(reaches(answer, c.text) for answer, completions in zip(answers, results) for c in completions)
    return {"seconds": round(seconds, 3), "completions": len(flat), "generated_tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1), "solved": solved,
            "solve_rate": round(solved / len(flat), 4), "mean_tokens": round(tokens / len(flat), 2),
            "finished_by_length": sum(c.finish_reason == "length" for c in flat),
            "_lengths": [c.tokens for c in flat]}


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    torch.set_num_threads(args.threads)
    machine_record = machine(args.threads)
    model_name, model_note = pick_model(args.model)
    completer = TransformersCompleter(model_name, batch_size=args.batch_size)
    problems, prompts, answers = step_prefixes(completer, args)
    params = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens,
                            seed=args.seed)
    print(f"model {model_name} ({model_note}); {len(problems)} traces, {len(prompts)} step prefixes, "
          f"N={args.n}, max_new_tokens={args.max_new_tokens}, {args.threads} threads", flush=True)

    peak = matmul_peak()
    print(f"float32 matmul throughput: {peak.gflops:.1f} GFLOP/s", flush=True)
    naive_seconds, naive = time_naive(completer, prompts, params)
    print(f"(a) naive generate: {naive_seconds:.1f} s", flush=True)
    for key in completer.counters:
        completer.counters[key] = 0
    with Stopwatch() as watch:
        shared = completer.complete_prompts(prompts, params)
    print(f"(b) shared-prefix:  {watch.seconds:.1f} s", flush=True)
    counters = dict(completer.counters)
    check_prompts = prompts[:min(args.check_prompts, len(problems[0].steps))]
    identical = same_as_reference(completer, check_prompts, args)

    a, b = summary(naive, naive_seconds, answers), summary(shared, watch.seconds, answers)
    solve_p = two_proportion_p(a["solved"], a["completions"], b["solved"], b["completions"])
    length_p = welch_p(a.pop("_lengths"), b.pop("_lengths"))
    flops = model_flops(completer.model, counters)
    achieved = flops / watch.seconds / 1e9
    result = {
        "command": "python bench/completers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": model_name, "model_note": model_note, "traces": len(problems), "step_prefixes": len(prompts),
        "steps_per_trace": [len(p.steps) for p in problems], "n": args.n, "max_new_tokens": args.max_new_tokens,
        "temperature": 1.0, "top_p": 1.0, "seed": args.seed, "threads": args.threads,
        "batch_size": args.batch_size, "matmul_gflops": round(peak.gflops, 2),
        "naive_generate": a, "shared_prefix": b,
        "speedup_wall": round(naive_seconds / watch.seconds, 2),
        "speedup_tokens_per_second": round(b["tokens_per_second"] / a["tokens_per_second"], 2),
        "shared_prefix_counters": counters,
        "shared_prefix_gflop": round(flops / 1e9, 3), "shared_prefix_gflops": round(achieved, 3),
        "fraction_of_matmul_peak": round(achieved / peak.gflops, 4),
        "identical_to_reference": {"prompts": len(check_prompts), "samples": len(check_prompts) * args.n,
                                   "max_new_tokens": args.check_tokens, "identical": identical},
        "equal_distribution": {"solve_rate_p_value": round(solve_p, 4), "mean_tokens_p_value": round(length_p, 4)},
    }
    print_table(result)
    goal_list = [Goal("(b) gives the reference sampler's samples", identical, "==", True),
                 Goal("same solve rate (a) and (b), z-test p", round(solve_p, 4), ">=", 0.05),
                 Goal("same mean length (a) and (b), Welch p", round(length_p, 4), ">=", 0.05)]
    print_goals(goal_list)
    save_results(args.results, result, machine_record, goal_list)
    return 0 if identical else 1


# -- the two paths ---------------------------------------------------------------------------


def time_naive(completer: TransformersCompleter, prompts: list[str], params: SamplingParams):
    """(a): one `generate(num_return_sequences=N)` call per prompt, stopping like (b)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class AnswerLineStop(StoppingCriteria):
        def __init__(self, prompt_length):
            self.prompt_length = prompt_length

        def __call__(self, input_ids, scores, **kwargs):
            texts = completer.tokenizer.batch_decode(input_ids[:, self.prompt_length:], skip_special_tokens=True)
            return torch.tensor([cut_at_stop(t, completer.stop, completer.stop_at_answer_line) is not None
                                 for t in texts], device=input_ids.device)

    model, pad = completer.model, completer.tokenizer.pad_token_id
    eos = sorted(completer.eos_ids)
    outputs, limits = [], []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i, prompt in enumerate(prompts):
            ids = torch.tensor([completer.encode(prompt)], device=completer.device)
            # the same cap as (b): prompt + continuation within the model's positions
            limit = min(params.max_new_tokens, (completer.max_length or 1 << 30) - ids.shape[1])
            torch.manual_seed(params.seed + i)
            output = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                temperature=params.temperature, top_p=params.top_p, top_k=0,
                max_new_tokens=limit, num_return_sequences=params.n,
                eos_token_id=eos, pad_token_id=pad if pad is not None else eos[0],
                stopping_criteria=StoppingCriteriaList([AnswerLineStop(ids.shape[1])]))
            outputs.append(output[:, ids.shape[1]:].tolist())
            limits.append(limit)
    seconds = time.perf_counter() - t0
    results = []  # (untimed) cut each row where its continuation ends, exactly as (b) decides it
    for rows, limit in zip(outputs, limits):
        completions = []
        for row in rows:
            done = None
            for length in range(1, len(row) + 1):
                done = completer.completion_if_ended(row[:length], limit, completer.stop)
                if done:
                    break
            completions.append(done)
        results.append(completions)
    return seconds, results


# -- measurements -------------------------------------------------------------------------------


def model_flops(model, counters: dict) -> float:
    """Forward FLOPs of the work counted by the completer: 2 x weights for every token through
    the body, 2 x the output head for every row whose logits were computed, and 4 x width per
    attended query-key pair per layer."""
    config = model.config.get_text_config()
    width = getattr(config, "hidden_size", None) or config.n_embd
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    head = model.get_output_embeddings()
    head_params = head.weight.numel() if head is not None else 0
    body_params = sum(m.weight.numel() for m in model.modules()
                      if m is not head and type(m).__name__ in ("Linear", "Conv1D"))
    tokens = counters["prefill_tokens"] + counters["decode_tokens"]
    return (2 * body_params * tokens + 2 * head_params * counters["lm_head_rows"]
            + 4 * width * layers * counters["attention_pairs"])


def reaches(answer: int, continuation: str) -> bool:
    """Whether a continuation ends on the reference answer (`#### answer`)."""
    return parse_answer(parse_gsm8k_answer(continuation)[1]) == answer


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1.0 when there is no variance)."""
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance == 0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test on the means (normal approximation; n is large)."""
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1)
    se = math.sqrt(va / len(a) + vb / len(b))
    return 1.0 if se == 0 else math.erfc(abs(ma - mb) / se / math.sqrt(2))


def pick_model(name: str | None) -> tuple[str, str]:
    if name:
        return name, "given"
    from prm.model_names import tiny_gsm_path

    try:
        return str(tiny_gsm_path()), "tiny-gsm"
    except FileNotFoundError:
        global _SCRATCH  # removed when the process exits
        _SCRATCH = tempfile.TemporaryDirectory(prefix="bench-completers-")
        folder = Path(_SCRATCH.name) / "random-gpt2"
        build_random_gpt2(folder)
        return str(folder), "tiny-gsm checkpoint absent: a random-weight GPT-2 of its shape"


def build_random_gpt2(folder: Path) -> None:
    """A GPT-2 with tiny-gsm's shape (4 layers, width 128, character tokenizer), random weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from completers.train_tiny import build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=128, n_layer=4,
                                       n_head=4, eos_token_id=tokenizer.eos_token_id,
                                       bos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def print_table(r: dict) -> None:
    a, b = r["naive_generate"], r["shared_prefix"]
    rows = [("path", "wall s", "gen tokens", "tokens/s", "solve rate", "mean tokens"),
            ("(a) generate(num_return_sequences=N)", a["seconds"], a["generated_tokens"], a["tokens_per_second"],
             a["solve_rate"], a["mean_tokens"]),
            ("(b) shared-prefix sampler", b["seconds"], b["generated_tokens"], b["tokens_per_second"],
             b["solve_rate"], b["mean_tokens"])]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    print(f"speedup (b)/(a): {r['speedup_wall']}x wall, {r['speedup_tokens_per_second']}x tokens/s")
    print(f"(b) reaches {r['shared_prefix_gflops']} GFLOP/s = {100 * r['fraction_of_matmul_peak']:.2f}% "
          f"of measured matmul {r['matmul_gflops']} GFLOP/s")
    d = r["equal_distribution"]
    print(f"identical to reference sampler: {r['identical_to_reference']['identical']}; "
          f"solve-rate z-test p={d['solve_rate_p_value']}, mean-length Welch p={d['mean_tokens_p_value']}")


if __name__ == "__main__":
    raise SystemExit(main())
