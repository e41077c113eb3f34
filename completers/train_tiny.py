"""Train (and measure) `tiny-gsm`, the small GPT-2 of the embedded world, from scratch.

    python -m completers.train_tiny                 # train into completers/tiny_gsm (CPU, 2 threads)
    python -m completers.train_tiny --evaluate      # measure the committed checkpoint

The model reads characters: the tokenizer is a character vocabulary (printable ASCII and
newline, anything else is `<|unk|>`) built with `tokenizers` and saved in Hugging Face
format beside the weights, so `AutoTokenizer` / `AutoModelForCausalLM.from_pretrained`
load the folder. It is trained on the world's reference solutions in exactly the format
`completers.prompts.plain_prompt(question, [])` + solution lines + "\\n" + eos, with the
loss on the answer part only. Every training example is a fresh problem from
`completers.world.generate_problems(steps * batch_size, seed)`; the held-out problems
(seed `eval_seed`) are kept out of it by question text.

A plain PyTorch loop (nanoGPT style) rather than `transformers.Trainer`: the model is tiny,
CPU-only and trained once, and the loop is shorter than the Trainer set-up it would need
(custom collator, log capture, wall-time guard).

`--evaluate` reports, on held-out problems with a fixed seed: the solve rate sampled at
temperature 1 (top-p 1, no top-k) and greedily, and how often continuations of a
reference prefix whose last step has a corrupted calculator value still reach the right
answer (next to the same prefixes uncorrupted). It writes the figures to
`<model dir>/evaluation.json` unless `--no-write`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from completers.prompts import plain_prompt
from completers.world import WorldProblem, generate_problems, parse_answer, split_solution

DEFAULT_OUT = Path(__file__).resolve().parent / "tiny_gsm"
PAD, EOS, UNK = "<|pad|>", "<|endoftext|>", "<|unk|>"
CHARACTERS = [chr(i) for i in range(32, 127)] + ["\n"]
HELD_OUT_LIMIT = 2000  # the first 2000 problems of eval_seed never appear in training


@dataclass
class TrainConfig:
    """Everything that decides the trained model; recorded in training_log.json."""

    seed: int = 0  # model init, batch order and the training problems' generator seed
    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    min_lr: float = 3e-4  # cosine decay floor
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 512  # characters of context: prompt + solution
    eval_seed: int = 1_000_003  # held-out problems, excluded from training
    eval_problems: int = 300
    threads: int = 2
    log_every: int = 25
    max_minutes: float = 30.0  # wall-time guard: stop early (and say so) past this


# --------------------------------------------------------------------------------------
# Tokenizer and data
# --------------------------------------------------------------------------------------


def build_tokenizer(model_max_length: int = 512):
    """A character-level tokenizer: one id per printable ASCII character and newline."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([PAD, EOS, UNK] + CHARACTERS)}
    # BPE with no merges = one token per character; Fuse joins them back with no spaces.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=EOS, bos_token=EOS, pad_token=PAD, unk_token=UNK,
        clean_up_tokenization_spaces=False, model_max_length=model_max_length)


def training_text(problem: WorldProblem) -> tuple[str, str]:
    """(prompt, answer part) of one training example; eos follows the answer part."""
    return plain_prompt(problem.question, []), problem.solution + "\n"


def encode_examples(tokenizer, problems: list[WorldProblem], max_length: int) -> list[tuple[list[int], int]]:
    """Token ids (eos appended) and prompt length per problem; too long ones are dropped."""
    prompts, answers = zip(*(training_text(p) for p in problems))
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    examples = []
    for p, a in zip(prompt_ids, answer_ids):
        ids = p + a + [tokenizer.eos_token_id]
        if len(ids) <= max_length:
            examples.append((ids, len(p)))
    return examples


def make_batch(examples: list[tuple[list[int], int]], pad_id: int):
    """Right-padded input ids, attention mask and labels (-100 on prompt and padding)."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        labels[row, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
        mask[row, :len(ids)] = 1
    return input_ids, mask, labels


def length_bucketed_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of example indices with similar lengths (less padding), in a seeded random
    order: shuffle, sort each window of 64 batches by length, cut, shuffle the batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 64
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches


def held_out_problems(config: TrainConfig, n: int | None = None) -> list[WorldProblem]:
    """The first `n` problems of `eval_seed` (at most HELD_OUT_LIMIT: those are kept out of training)."""
    n = n or config.eval_problems
    if n > HELD_OUT_LIMIT:
        raise ValueError(f"at most {HELD_OUT_LIMIT} held-out problems are kept out of training")
    return generate_problems(n, seed=config.eval_seed)


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def train(config: TrainConfig, out: Path) -> dict:
    """Train from scratch, save model + tokenizer + training_log.json into `out`."""
    import torch
    from tqdm import tqdm
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    started, cpu_started = time.time(), time.process_time()

    tokenizer = build_tokenizer(config.n_positions)
    held_out = {p.question for p in held_out_problems(config, HELD_OUT_LIMIT)}
    problems = [p for p in generate_problems(config.steps * config.batch_size, seed=config.seed)
                if p.question not in held_out]
    examples = encode_examples(tokenizer, problems, config.n_positions)
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.n_positions, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=config.lr, betas=(0.9, 0.98))
    floor = config.min_lr / config.lr

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine down to min_lr
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    batches = length_bucketed_batches([len(ids) for ids, _ in examples], config.batch_size, config.seed)
    curve, window, stopped_early = [], [], False
    model.train()
    progress = tqdm(range(config.steps), desc="train tiny-gsm", mininterval=5)
    for step in progress:
        picked = batches[step % len(batches)]
        input_ids, mask, labels = make_batch([examples[i] for i in picked], tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        window.append(loss.item())
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            curve.append({"step": step + 1, "loss": round(sum(window) / len(window), 4),
                          "lr": round(schedule.get_last_lr()[0], 6),
                          "seconds": round(time.time() - started, 1)})
            progress.set_postfix(loss=curve[-1]["loss"])
            window = []
        if time.time() - started > config.max_minutes * 60:
            stopped_early = True
            break
    wall = time.time() - started

    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=400,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    log = {"command": "python -m completers.train_tiny " + " ".join(_as_flags(config)),
           "config": asdict(config), "parameters": n_params,
           "training_problems": len(problems), "training_examples": len(examples),
           "steps_done": step + 1, "stopped_early_by_wall_time": stopped_early,
           "wall_seconds": round(wall, 1), "cpu_seconds": round(time.process_time() - cpu_started, 1),
           "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "seconds_per_step": round(wall / (step + 1), 3),
           "torch": torch.__version__, "loss_curve": curve}
    (out / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    return log


def _as_flags(config: TrainConfig) -> list[str]:
    default = TrainConfig()
    return [f"--{f.name.replace('_', '-')} {getattr(config, f.name)}" for f in fields(config)
            if getattr(config, f.name) != getattr(default, f.name)]


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


def load(model_dir: str | Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model.eval()
    return model, tokenizer


def generate_texts(model, tokenizer, prompts: list[str], *, greedy: bool, seed: int,
                   batch_size: int = 50, max_new_tokens: int = 400) -> list[str]:
    """Continuations of `prompts` (left-padded batches), decoded without special tokens.
    Sampling is at temperature 1, top-p 1, no top-k; batch b uses seed `seed + b`."""
    import torch

    tokenizer.padding_side = "left"
    texts = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False)
        room = model.config.n_positions - batch["input_ids"].shape[1]
        torch.manual_seed(seed + start // batch_size)
        with torch.no_grad():
            output = model.generate(
                **batch, do_sample=not greedy, temperature=None if greedy else 1.0,
                top_p=None if greedy else 1.0, top_k=None if greedy else 0,
                max_new_tokens=min(max_new_tokens, room), pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id)
        new = output[:, batch["input_ids"].shape[1]:]
        texts.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return texts


def reaches_answer(problem: WorldProblem, text: str) -> bool:
    return parse_answer(split_solution(text)[1]) == problem.answer


def corrupt_last_step(step: str, rng: random.Random, avoid: set[int]) -> str:
    """The step with its calculator value changed by +-1..10 (in the note and after `>>`)."""
    match = re.search(r"<<([^<>=]*)=(\d+)>>(\d+)", step)
    value = int(match.group(2))
    choices = [value + d for d in range(-10, 11) if d and value + d >= 0 and value + d not in avoid]
    wrong = rng.choice(choices)
    return step[:match.start()] + f"<<{match.group(1)}={wrong}>>{wrong}" + step[match.end():]


def evaluate(model_dir: str | Path, config: TrainConfig, n: int, seed: int = 0) -> dict:
    """Solve rates (T=1 and greedy) and wrong-prefix vs right-prefix success on `n`
    held-out problems."""
    import torch

    torch.set_num_threads(config.threads)
    model, tokenizer = load(model_dir)
    problems = held_out_problems(config, n)
    prompts = [plain_prompt(p.question, []) for p in problems]
    started = time.time()
    sampled = generate_texts(model, tokenizer, prompts, greedy=False, seed=seed)
    greedy = generate_texts(model, tokenizer, prompts, greedy=True, seed=seed)

    rng = random.Random(seed)
    right_prompts, wrong_prompts = [], []
    for p in problems:
        cut = rng.randrange(len(p.steps) - 1)  # prefix ends before the last step
        prefix = p.steps[:cut + 1]
        right_prompts.append(plain_prompt(p.question, prefix))
        wrong = prefix[:-1] + [corrupt_last_step(prefix[-1], rng, set(p.needed_values))]
        wrong_prompts.append(plain_prompt(p.question, wrong))
    from_right = generate_texts(model, tokenizer, right_prompts, greedy=False, seed=seed + 10_000)
    from_wrong = generate_texts(model, tokenizer, wrong_prompts, greedy=False, seed=seed + 20_000)

    def rate(texts):
        return round(sum(reaches_answer(p, t) for p, t in zip(problems, texts)) / len(problems), 4)

    by_steps = {}
    for p, t in zip(problems, sampled):
        by_steps.setdefault(len(p.steps), []).append(reaches_answer(p, t))
    return {"model": str(model_dir), "held_out_problems": n, "eval_seed": config.eval_seed,
            "sampling_seed": seed, "solve_rate_t1": rate(sampled), "solve_rate_greedy": rate(greedy),
            "solve_rate_t1_by_steps": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_steps.items())},
            "right_prefix_success_t1": rate(from_right), "wrong_prefix_success_t1": rate(from_wrong),
            "seconds": round(time.time() - started, 1), "example_samples": sampled[:3]}


def write_model_card(out: Path) -> str:
    """MODEL_CARD.md from training_log.json and evaluation.json in `out` (figures copied,
    never typed by hand)."""
    from completers.world import TEMPLATES

    log = json.loads((out / "training_log.json").read_text())
    ev = json.loads((out / "evaluation.json").read_text())
    c = log["config"]
    size = (out / "model.safetensors").stat().st_size / 1e6
    by_steps = ", ".join(f"{k} steps {v:.0%}" for k, v in ev["solve_rate_t1_by_steps"].items())
    card = f"""# tiny-gsm

A {log['parameters']:,}-parameter GPT-2 that writes GSM8K-format solutions to the word problems
of the project's embedded world (`completers/world.py`). It exists so that the toolkit's whole
pipeline (sampling, Monte Carlo step labels, reward-model training, evaluation against exact
gold labels) runs on a bare 2-core CPU machine with no model download. Short name: `tiny-gsm`
(`prm.model_names.resolve_model`).

## Architecture
`GPT2LMHeadModel` from `transformers`: {c['n_layer']} layers, {c['n_head']} heads, width {c['n_embd']},
context {c['n_positions']} characters, no dropout; {log['parameters']:,} parameters, float32
safetensors ({size:.1f} MB).

## Tokenizer
One token per character: the 95 printable ASCII characters and newline, plus `<|pad|>`,
`<|endoftext|>` (eos) and `<|unk|>` (any other character). Built with `tokenizers` (a BPE model with
no merges and a Fuse decoder) and saved as a `PreTrainedTokenizerFast`, so
`AutoTokenizer.from_pretrained` loads it; decoding returns the text exactly.

## Data
Reference solutions from `completers.world.generate_problems({log['training_problems']:,}, seed={c['seed']})`
(one fresh problem per training example, {log['training_examples']:,} examples), {len(TEMPLATES)} templates
({', '.join(sorted(TEMPLATES))}), 2 to 6 steps, integers only. Held-out problems
(`seed={c['eval_seed']}`) are removed from training by question text. Format of one example:
`completers.prompts.plain_prompt(question, [])` + the solution lines joined by newlines + newline + eos;
the loss is on the solution part only.

## Training
    {log['command']}

Seed {c['seed']}; {log['steps_done']:,} steps of batch {c['batch_size']} (length-bucketed), AdamW
(lr {c['lr']}, warm-up {c['warmup_steps']} steps, cosine to {c['min_lr']}, weight decay
{c['weight_decay']}, gradient clip {c['grad_clip']}), {c['threads']} torch threads, torch {log['torch']}.
Wall time on this machine (2 CPU cores shared with other jobs): {log['wall_seconds'] / 60:.1f} minutes
({log['seconds_per_step']} s a step; process CPU time {log['cpu_seconds'] / 60:.1f} minutes).
Final training loss {log['loss_curve'][-1]['loss']} (per character of the solution); the full loss
curve is in `training_log.json`.

## Measured (`python -m completers.train_tiny --evaluate`)
On {ev['held_out_problems']} held-out problems (world seed {ev['eval_seed']}, sampling seed {ev['sampling_seed']}):

| measure | value |
|---|---|
| solve rate, sampled at temperature 1 (top-p 1, no top-k) | {ev['solve_rate_t1']:.1%} |
| solve rate, greedy | {ev['solve_rate_greedy']:.1%} |
| continuations of a correct reference prefix that reach the answer (T=1) | {ev['right_prefix_success_t1']:.1%} |
| continuations of the same prefix with its last calculator value corrupted by +-1..10 (T=1) | {ev['wrong_prefix_success_t1']:.1%} |

Solve rate at T=1 by number of reference steps: {by_steps}.
The prefixes end at a random step before the last one; a corrupted prefix is right up to its
last step, whose `<<expr=v>>v` has `v` changed.

## Intended use and limits
For tests, demos and benchmarks of the toolkit: it samples both correct and flawed solutions,
and a wrong prefix mostly leads it to a wrong answer, so Monte Carlo step labels computed with it
are meaningful and can be compared with the world's exact gold labels (`completers.world`).
It knows only this world: its ten templates, small integers, one operation a line. It is not a
math model, reads nothing but printable ASCII, and should not be used for anything else.
Apache-2.0, like the project.
"""
    (out / "MODEL_CARD.md").write_text(card)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m completers.train_tiny", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model folder (default: %(default)s)")
    parser.add_argument("--evaluate", action="store_true", help="measure the model in --out instead of training")
    parser.add_argument("--eval-n", type=int, default=None, help="held-out problems to measure (default: eval_problems)")
    parser.add_argument("--sampling-seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="do not write evaluation.json")
    for f in fields(TrainConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = parser.parse_args(argv)
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    if not args.evaluate:
        log = train(config, args.out)
        print(json.dumps({k: v for k, v in log.items() if k != "loss_curve"}, indent=1))
    result = evaluate(args.out, config, args.eval_n or config.eval_problems, args.sampling_seed)
    if not args.no_write:
        (args.out / "evaluation.json").write_text(json.dumps(result, indent=1) + "\n")
        write_model_card(args.out)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
