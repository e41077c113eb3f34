"""Published PRM formats: Math-Shepherd tag scoring and TRL token-classification PRMs.

The checkpoints are not downloadable here, so tiny models are saved in those formats and
the scorers are checked against an independent computation done the way each format's
own code does it.
"""

import json

import pytest
import torch

from prm.formats.math_shepherd import read_math_shepherd
from prm.reward.loading import detect_family, load_scorer
from prm.reward.published.math_shepherd import MathShepherdScorer
from prm.reward.published.token_classification import TokenClassificationScorer
from prm.reward.model import RewardModel
from helpers.reward_models import SHARED, bpe_tokenizer, tiny_bert, tiny_gpt2

SAMPLE = SHARED / "samples" / "math-shepherd.sample.jsonl"


def shepherd_reference(model, tokenizer, text):
    """Math-Shepherd's published recipe: logits of '+'/'-' wherever the tag token occurs."""
    good, bad = tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]
    tag_id = tokenizer.encode(" ки")[-1]
    ids = torch.tensor([tokenizer.encode(text)])
    with torch.no_grad():
        logits = model(ids).logits[:, :, [good, bad]]
    return logits.softmax(dim=-1)[:, :, 0][ids == tag_id].tolist()


@pytest.fixture(scope="module")
def shepherd_folder(tmp_path_factory):
    """A tiny GPT-2 LM trained a few steps on the real Math-Shepherd sample to predict the
    label token at each tag, then saved as a plain causal LM."""
    from transformers import AutoModelForCausalLM

    folder = tiny_gpt2(tmp_path_factory.mktemp("shepherd") / "lm", lm_head=True)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = bpe_tokenizer()
    tag_id, good, bad = tokenizer.encode(" ки")[-1], tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    examples = []
    for row, trace in zip(rows, read_math_shepherd(SAMPLE)):  # labels as released (+ / -)
        ids = torch.tensor(tokenizer.encode(row["input"]))
        where = (ids == tag_id).nonzero().flatten()
        assert len(where) == len(trace.steps)
        examples.append((ids, where, torch.tensor([good if s.hard_label else bad for s in trace.steps])))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        for ids, where, target in examples:
            logits = model(ids[None]).logits[0, where]
            loss = torch.nn.functional.cross_entropy(logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.save_pretrained(folder)
    return folder


def test_math_shepherd_format_rebuilds_the_released_input_text():
    scorer_format = MathShepherdScorer.format.__get__(
        type("S", (), {"step_prefix": "Step {i}: ", "step_tag": " ки"})())
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    for row, trace in zip(rows, read_math_shepherd(SAMPLE)):
        text, ends = scorer_format(trace.problem, trace.step_texts)
        assert text == row["input"]
        assert all(text[:end].endswith(" ки") for end in ends)


def test_math_shepherd_scores_equal_the_published_recipe_and_separate_good_from_bad(shepherd_folder):
    from transformers import AutoModelForCausalLM

    scorer = MathShepherdScorer.from_pretrained(str(shepherd_folder))
    reference_model = AutoModelForCausalLM.from_pretrained(shepherd_folder).eval()
    traces = read_math_shepherd(SAMPLE)
    batched = scorer.score_many([(t.problem, t.step_texts) for t in traces], batch_size=3)
    good, bad = [], []
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    for trace, scores, row in zip(traces, batched, rows):
        expected = shepherd_reference(reference_model, scorer.tokenizer, row["input"])
        assert scores == pytest.approx(expected, abs=1e-5)
        for step, score in zip(trace.steps, scores):
            (good if step.hard_label == 1 else bad).append(score)
    assert bad and sum(good) / len(good) > sum(bad) / len(bad) + 0.2


def test_math_shepherd_steps_beyond_max_length_get_no_score(shepherd_folder):
    full = MathShepherdScorer.from_pretrained(str(shepherd_folder))
    trace = read_math_shepherd(SAMPLE)[0]
    tags = full._encode_many([(trace.problem, trace.step_texts)])[0].step_positions
    cut = MathShepherdScorer.from_pretrained(str(shepherd_folder), max_length=tags[1] + 1)
    scores = cut.score(trace.problem, trace.step_texts)
    assert scores[:2] == pytest.approx(full.score(trace.problem, trace.step_texts)[:2], abs=1e-6)
    assert scores[2:] == [None] * (len(trace.steps) - 2)


def trl_reference(tokenizer, prompt, steps, separator="\n"):
    """TRL PRMTrainer.tokenize_row, rewritten from its documented behaviour."""
    ids = ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + \
        tokenizer(prompt, add_special_tokens=False)["input_ids"]
    sep = tokenizer.encode(separator, add_special_tokens=False)
    positions = []
    for step in steps:
        ids += tokenizer(step, add_special_tokens=False)["input_ids"] + sep
        positions.append(len(ids) - 1)
    return ids, positions


@pytest.fixture(scope="module", params=["bert", "gpt2"])
def token_classification_folder(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokcls") / request.param
    if request.param == "bert":
        return tiny_bert(folder, token_classification=True)
    from transformers import AutoModelForTokenClassification

    tiny_gpt2(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder, num_labels=2)
    model.save_pretrained(folder)
    return folder


def test_trl_token_classification_scores_equal_a_hand_computation(token_classification_folder):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    scorer = TokenClassificationScorer.from_pretrained(str(token_classification_folder))
    model = AutoModelForTokenClassification.from_pretrained(token_classification_folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(token_classification_folder)
    trace = read_math_shepherd(SAMPLE)[1]
    ids, positions = trl_reference(tokenizer, trace.problem, trace.step_texts)
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits.softmax(-1)[0, positions, 1].tolist()
    assert scorer.score(trace.problem, trace.step_texts) == pytest.approx(expected, abs=1e-5)
    assert scorer.score_many([(trace.problem, trace.step_texts), ("Q?", ["a"])])[0] == pytest.approx(expected,
                                                                                                    abs=1e-5)


def test_token_classification_input_matches_trl_tokenize_row_when_trl_is_installed(token_classification_folder):
    prm_module = pytest.importorskip("trl.experimental.prm")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(token_classification_folder)
    scorer = TokenClassificationScorer.from_pretrained(str(token_classification_folder))
    trace = read_math_shepherd(SAMPLE)[2]
    row = prm_module.PRMTrainer.tokenize_row(
        {"prompt": trace.problem, "completions": trace.step_texts, "labels": [True] * len(trace.steps)},
        tokenizer, "\n", None, None, False, False)
    encoded = scorer._encode_many([(trace.problem, trace.step_texts)])[0]
    assert encoded.input_ids == row["input_ids"]
    assert encoded.step_positions == [i for i, label in enumerate(row["labels"]) if label != -100]


def test_load_scorer_tells_the_formats_apart(shepherd_folder, token_classification_folder, tmp_path):
    assert detect_family(str(shepherd_folder)) == "math-shepherd"
    assert detect_family(str(token_classification_folder)) == "token-classification"
    assert isinstance(load_scorer(str(shepherd_folder)), MathShepherdScorer)
    rm = RewardModel.from_backbone(str(tiny_bert(tmp_path / "bert")))
    rm.save_pretrained(tmp_path / "rm")
    assert detect_family(str(tmp_path / "rm")) == "reward-model"
    assert isinstance(load_scorer(str(tmp_path / "rm")), RewardModel)
