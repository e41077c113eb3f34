"""Problem + steps -> token ids with exactly one label position per step.

Why this is written by hand: the usual recipe (join the steps with a separator string and
look for the separator's token id afterwards) loses labels silently whenever the separator
tokenizes differently in context, is merged with a neighbouring character, or vanishes
(a BERT tokenizer drops "\\n"). Here each step is tokenized on its own and the index of its
last token is recorded while the sequence is being built, so the position is known by
construction and never searched for. Two ways of marking a step's end:

- ``"last-token"`` (default): a step is tokenized as ``step + separator``; its label sits on
  the last token of that piece. If the separator tokenizes to nothing on its own (BERT and
  ``"\\n"``), the tokenizer's ``sep_token`` (else ``eos_token``) is appended to every step
  instead, so every step, even an empty one, owns at least one token.
- ``"special-token"``: a dedicated marker token (default ``"<|step|>"``), added to the
  tokenizer as a special token, follows every step; the label sits on it.

The prompt is ``prompt_template`` with ``{problem}`` filled in, tokenized with the
tokenizer's special tokens (``[CLS] ... [SEP]`` for BERT, a BOS token where the tokenizer
adds one).

Truncation never cuts a step in half: whole steps are dropped from the end, and how many
is reported in ``EncodedSteps.dropped``. If even the first step does not fit, the prompt is
cut from the front (keeping a leading special token) to make room for it. Two optional
limits mirror TRL's PRMConfig: ``max_prompt_length`` keeps the prompt's last tokens (and a
leading special token), and ``max_completion_length`` bounds the steps' tokens, again by
dropping whole steps from the end; both are counted in ``EncodedSteps`` like ``max_length``.
"""

from __future__ import annotations

from dataclasses import dataclass

STEP_MARKERS = ("last-token", "special-token")
DEFAULT_MARKER_TOKEN = "<|step|>"


@dataclass
class EncodedSteps:
    """One trace as token ids.

    input_ids: the whole sequence. step_positions: for each kept step, the index in
    input_ids where its label is read. n_steps: steps given. dropped: steps cut from the
    end by truncation (their scores are unknown). prompt_truncated: prompt tokens removed
    from the front to make room for the first step. answer_start: where the steps begin.
    """

    input_ids: list[int]
    step_positions: list[int]
    n_steps: int
    dropped: int = 0
    prompt_truncated: int = 0
    answer_start: int = 0  # index of the first step's first token (the prompt's length)
    features: list[list[float]] | None = None  # per kept step, a model's step_features (else None)

    @property
    def kept(self) -> int:
        return len(self.step_positions)


class StepTokenizer:
    """Encodes (problem, steps) pairs for a reward model, in batches.

    Parameters mirror `RewardModelConfig`: prompt_template, step_separator, step_marker,
    marker_token and max_length. The tokenizer must already hold the marker token when
    step_marker is "special-token" (see `add_marker_token`).
    """

    def __init__(self, tokenizer, *, prompt_template: str = "{problem}\n", step_separator: str = "\n",
                 step_marker: str = "last-token", marker_token: str | None = None,
                 max_length: int | None = 512, max_prompt_length: int | None = None,
                 max_completion_length: int | None = None):
        if step_marker not in STEP_MARKERS:
            raise ValueError(f"step_marker must be one of {STEP_MARKERS}, got {step_marker!r}")
        if "{problem}" not in prompt_template:
            raise ValueError("prompt_template must contain '{problem}'")
        self.tokenizer = tokenizer
        self.prompt_template = prompt_template
        self.step_separator = step_separator
        self.step_marker = step_marker
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length
        self.max_completion_length = max_completion_length
        self.end_ids: list[int] = []  # appended after every step's own tokens
        if step_marker == "special-token":
            marker = marker_token or DEFAULT_MARKER_TOKEN
            marker_id = tokenizer.convert_tokens_to_ids(marker)
            if marker_id is None or marker_id == tokenizer.unk_token_id:
                raise ValueError(f"the tokenizer has no {marker!r} token; call add_marker_token() first")
            self.end_ids = [marker_id]
        elif not tokenizer(step_separator, add_special_tokens=False)["input_ids"]:
            fallback = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
            if fallback is None:
                raise ValueError(f"the separator {step_separator!r} tokenizes to nothing and the tokenizer "
                                 "has neither a sep nor an eos token; use step_marker='special-token'")
            self.end_ids = [fallback]
        self.separator_vanishes = step_marker == "last-token" and bool(self.end_ids)
        self._special_ids = set(tokenizer.all_special_ids)

    def describe(self) -> dict:
        """How steps are marked, for logs and the saved config."""
        return {"step_marker": self.step_marker, "step_separator": self.step_separator,
                "appended_ids": list(self.end_ids),
                "appended_tokens": self.tokenizer.convert_ids_to_tokens(self.end_ids)}

    def encode(self, problem: str, steps: list[str]) -> EncodedSteps:
        return self.encode_many([(problem, steps)])[0]

    def encode_many(self, items: list[tuple[str, list[str]]]) -> list[EncodedSteps]:
        """Encode many traces with two batched tokenizer calls (prompts, then all steps)."""
        if not items:
            return []
        prompts = [self.prompt_template.replace("{problem}", problem) for problem, _ in items]
        prompt_ids = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        suffix = self.step_separator if self.step_marker == "last-token" else ""
        pieces = [step + suffix for _, steps in items for step in steps]
        piece_ids = self.tokenizer(pieces, add_special_tokens=False)["input_ids"] if pieces else []
        encoded, start = [], 0
        for (_, steps), prompt in zip(items, prompt_ids):
            ids = [list(p) + self.end_ids for p in piece_ids[start:start + len(steps)]]
            start += len(steps)
            encoded.append(self._assemble(list(prompt), ids))
        return encoded

    def _assemble(self, prompt: list[int], pieces: list[list[int]]) -> EncodedSteps:
        n = len(pieces)
        limit = self.max_length
        prompt_truncated = 0
        keep_head = 1 if prompt and prompt[0] in self._special_ids else 0
        if self.max_prompt_length is not None and len(prompt) > max(self.max_prompt_length, keep_head):
            tail = max(self.max_prompt_length - keep_head, 0)
            prompt_truncated = len(prompt) - keep_head - tail
            prompt = prompt[:keep_head] + prompt[len(prompt) - tail:]
        if limit is not None and pieces and len(prompt) + len(pieces[0]) > limit:
            room = limit - len(pieces[0])
            if room >= keep_head + 1:
                tail = room - keep_head
                prompt_truncated += len(prompt) - room
                prompt = prompt[:keep_head] + prompt[len(prompt) - tail:]
        input_ids, positions = list(prompt), []
        for piece in pieces:
            if limit is not None and len(input_ids) + len(piece) > limit:
                break
            if (self.max_completion_length is not None
                    and len(input_ids) - len(prompt) + len(piece) > self.max_completion_length):
                break
            input_ids.extend(piece)
            positions.append(len(input_ids) - 1)
        return EncodedSteps(input_ids=input_ids, step_positions=positions, n_steps=n,
                            dropped=n - len(positions), prompt_truncated=prompt_truncated,
                            answer_start=len(prompt))


def add_marker_token(tokenizer, marker_token: str = DEFAULT_MARKER_TOKEN) -> bool:
    """Add the step marker as a special token; True if the vocabulary grew."""
    return tokenizer.add_tokens([marker_token], special_tokens=True) > 0


def pad_batch(batch: list[EncodedSteps], pad_id: int, labels: list[list[float]] | None = None,
              answer_start: bool = False) -> dict:
    """Right-pad a batch to its own longest sequence (dynamic padding).

    Returns tensors input_ids, attention_mask, step_positions (padding -1), if labels are
    given, labels (padding -100), if answer_start, each row's answer start, and if the items
    carry `features`, step_features (batch, steps, n_features; padding 0).
    """
    import torch

    rows, width = len(batch), max(len(e.input_ids) for e in batch)
    steps = max(1, max(e.kept for e in batch))
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((rows, width), dtype=torch.long)
    positions = torch.full((rows, steps), -1, dtype=torch.long)
    for row, e in enumerate(batch):
        input_ids[row, :len(e.input_ids)] = torch.tensor(e.input_ids, dtype=torch.long)
        attention_mask[row, :len(e.input_ids)] = 1
        positions[row, :e.kept] = torch.tensor(e.step_positions, dtype=torch.long)
    out = {"input_ids": input_ids, "attention_mask": attention_mask, "step_positions": positions}
    if answer_start:
        out["answer_start"] = torch.tensor([e.answer_start for e in batch], dtype=torch.long)
    if any(e.features for e in batch):
        width = max(len(row) for e in batch for row in (e.features or []))
        values = torch.zeros((rows, steps, width), dtype=torch.float32)
        for row, e in enumerate(batch):
            if e.features:
                values[row, :len(e.features)] = torch.tensor(e.features, dtype=torch.float32)
        out["step_features"] = values
    if labels is not None:
        target = torch.full((rows, steps), -100.0, dtype=torch.float32)
        for row, values in enumerate(labels):
            target[row, :len(values)] = torch.tensor(values, dtype=torch.float32)
        out["labels"] = target
    return out
