"""Step positions: one per step, on the right token, for byte BPE and WordPiece tokenizers."""

import pytest

from prm.reward.step_tokenizer import StepTokenizer, add_marker_token
from helpers.reward_models import bert_tokenizer, bpe_tokenizer

PROBLEM = "Natalia sold clips to 48 of her friends in April. How many?"
STEPS = [
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
    "A step\nthat spans two lines,\n\nwith a blank one",
    "   leading spaces and a trailing newline\n",
    "",  # an empty step still owns a position
    "Unicode: 3 × 4 = 12 — done ки",
    "#### 72",
]


@pytest.fixture(scope="module")
def bpe():
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def wordpiece():
    return bert_tokenizer()


def test_gpt2_byte_bpe_positions_end_each_step_exactly(bpe):
    encoder = StepTokenizer(bpe, max_length=None)
    encoded = encoder.encode(PROBLEM, STEPS)
    assert encoded.kept == len(STEPS) and encoded.dropped == 0
    ids, previous = encoded.input_ids, None
    prompt_end = encoded.step_positions[0] - len(bpe(STEPS[0] + "\n", add_special_tokens=False)["input_ids"])
    assert bpe.decode(ids[:prompt_end + 1]) == PROBLEM + "\n"
    previous = prompt_end
    for step, position in zip(STEPS, encoded.step_positions):
        # byte-level BPE is lossless: the tokens of each step decode to exactly the step + "\n"
        assert bpe.decode(ids[previous + 1:position + 1]) == step + "\n"
        previous = position
    assert position == len(ids) - 1


def test_bert_wordpiece_positions_are_the_sep_after_each_step_though_newlines_vanish(wordpiece):
    assert wordpiece("\n", add_special_tokens=False)["input_ids"] == []  # what breaks the usual recipe
    encoder = StepTokenizer(wordpiece, max_length=None)
    encoded = encoder.encode(PROBLEM, STEPS)
    ids = encoded.input_ids
    assert encoded.kept == len(STEPS)
    assert ids[0] == wordpiece.cls_token_id
    assert all(ids[p] == wordpiece.sep_token_id for p in encoded.step_positions)
    assert len(set(encoded.step_positions)) == len(STEPS)  # no two steps share a position
    # the tokens between two positions are exactly that step's word pieces
    starts = [ids.index(wordpiece.sep_token_id) + 1] + [p + 1 for p in encoded.step_positions[:-1]]
    for step, start, end in zip(STEPS, starts, encoded.step_positions):
        assert ids[start:end] == wordpiece(step, add_special_tokens=False)["input_ids"]
    assert encoder.describe()["appended_tokens"] == ["[SEP]"]


@pytest.mark.parametrize("make", [bpe_tokenizer, bert_tokenizer], ids=["gpt2-bpe", "bert-wordpiece"])
def test_special_token_marker_follows_every_step(make):
    tokenizer = make()
    assert add_marker_token(tokenizer)
    marker = tokenizer.convert_tokens_to_ids("<|step|>")
    encoder = StepTokenizer(tokenizer, step_marker="special-token", max_length=None)
    encoded = encoder.encode(PROBLEM, STEPS)
    assert [encoded.input_ids[p] for p in encoded.step_positions] == [marker] * len(STEPS)
    assert encoded.input_ids.count(marker) == len(STEPS)


def test_special_token_marker_must_be_in_the_vocabulary(bpe):
    with pytest.raises(ValueError, match="add_marker_token"):
        StepTokenizer(bpe, step_marker="special-token", marker_token="<|not-added|>")


@pytest.mark.parametrize("make", [bpe_tokenizer, bert_tokenizer], ids=["gpt2-bpe", "bert-wordpiece"])
def test_truncation_drops_whole_steps_from_the_end_and_says_how_many(make):
    tokenizer = make()
    full = StepTokenizer(tokenizer, max_length=None).encode(PROBLEM, STEPS)
    limit = full.step_positions[2] + 3  # room for steps 0-2 and part of step 3 or 4
    cut = StepTokenizer(tokenizer, max_length=limit).encode(PROBLEM, STEPS)
    assert len(cut.input_ids) <= limit
    assert cut.step_positions == full.step_positions[:cut.kept]
    assert cut.input_ids == full.input_ids[:len(cut.input_ids)]
    assert cut.input_ids[-1] == full.input_ids[cut.step_positions[-1]]  # ends on a step's end
    assert cut.dropped == len(STEPS) - cut.kept > 0
    assert cut.kept >= 3


def test_a_prompt_too_long_for_the_first_step_is_cut_from_the_front(wordpiece):
    encoder = StepTokenizer(wordpiece, max_length=16)
    encoded = encoder.encode("word " * 40 + "question?", ["short step", "another step"])
    assert encoded.prompt_truncated > 0
    assert encoded.input_ids[0] == wordpiece.cls_token_id  # the leading special token is kept
    assert len(encoded.input_ids) <= 16 and encoded.kept >= 1
    assert encoded.dropped == 2 - encoded.kept


def test_a_first_step_longer_than_max_length_is_dropped_not_cut(bpe):
    encoded = StepTokenizer(bpe, max_length=8).encode("Q?", ["a very long first step " * 5, "b"])
    assert encoded.kept == 0 and encoded.dropped == 2


def test_batched_encoding_equals_one_at_a_time(bpe):
    encoder = StepTokenizer(bpe, max_length=64)
    items = [(PROBLEM, STEPS), ("Q?", ["one"]), (PROBLEM * 3, STEPS[:2])]
    assert encoder.encode_many(items) == [encoder.encode(p, s) for p, s in items]
