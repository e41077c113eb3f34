"""Native storage: JSONL, `datasets` folder and Parquet round trips, and bad input errors."""

import json

import pytest

from prm.errors import RecordError
from prm.formats.gsm8k import read_gsm8k
from prm.io import ReadReport, read_traces, write_traces
from prm.records import Critique, Judgement, Review, Rollouts, Step, Trace, Verdict


def rich_traces() -> list[Trace]:
    """Traces using every field: unknown labels, soft labels, verdicts, rollouts, reviews, meta."""
    first = Trace(
        id="a", problem="What is 2+3*4?", final_answer="14", reference_answer="14", outcome_label=1,
        meta={"source": "hand", "gold_labels": [1, None], "nested": {"k": [1.5, None, "ü"]}},
        steps=[
            Step("3*4 = 12", hard_label=1, soft_label=0.75, label_source="monte-carlo",
                 rollouts=Rollouts(correct=3, total=4, answers=["14", "14", None, "14"], tokens=40,
                                   seconds=0.5, texts=["a", "b", "c", "d"]),
                 verdicts=[Verdict("sympy", "verified", claim="3*4=12", evidence="12",
                                   backend="sympy 1.14", seconds=0.01)],
                 score=0.9,
                 reviews=[Review("ana@example.org", 0, time="2024-05-01T10:00:00.000Z", tool="label-studio",
                                 comment="12 is right, the step is not"), Review("bo", None)]),
            Step("2+12 = 14 ✓", hard_label=None, soft_label=None,
                 verdicts=[Verdict("z3", "unavailable")]),
        ])
    second = Trace(id="b", problem="p", steps=[Step("only step", hard_label=0, label_source="judge")],
                   outcome_label=None,
                   judgement=Judgement(judge="http://127.0.0.1:8000/v1", template="processbench", vote=0,
                                       temperature=1.0, top_p=0.9, seed=7, seconds=1.5, critiques=[
                                           Critique("Step 0 is wrong. \\boxed{0}", answer="0", index=0, tokens=9),
                                           Critique("No box here", parse_error="no \\boxed{} answer", tokens=3)]))
    return [first, second]


@pytest.mark.parametrize("name", ["traces.jsonl", "traces.parquet", "traces_folder"])
def test_native_round_trip_is_lossless(tmp_path, name):
    traces = rich_traces()
    write_traces(tmp_path / name, traces)
    again = read_traces(tmp_path / name)
    assert again == traces
    assert again[0].steps[1].hard_label is None  # unknown stays unknown, never 0
    assert isinstance(again[0].steps[0].soft_label, float)


def test_native_round_trip_on_real_gsm8k(shared_data, tmp_path):
    traces = read_gsm8k(shared_data / "gsm8k" / "test.jsonl", limit=200)
    for name in ("g.jsonl", "g.parquet", "g_folder"):
        write_traces(tmp_path / name, traces)
        assert read_traces(tmp_path / name) == traces


def test_jsonl_keeps_one_record_a_line_and_non_ascii_as_is(tmp_path):
    path = tmp_path / "t.jsonl"
    write_traces(path, rich_traces())
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and "✓" in lines[0]
    assert json.loads(lines[1])["steps"][0]["hard_label"] == 0


GOOD = json.dumps({"id": "x", "problem": "p", "steps": ["s"]})


@pytest.mark.parametrize("bad_line, field, words", [
    ('{"id": "y", "problem": "p", "steps": [', None, "malformed JSON"),
    ('{"id": "y", "steps": ["s"]}', "problem", "missing"),
    ('{"id": "y", "problem": "p", "steps": []}', "steps", "non-empty"),
    ('{"id": "y", "problem": "p", "steps": [{"text": "s", "hard_label": 2}]}', "steps[0].hard_label", "0, 1"),
    ('{"id": "y", "problem": "p", "steps": [{"text": "s", "soft_label": 1.5}]}', "steps[0].soft_label",
     "[0, 1]"),
    ('{"id": "y", "problem": "p", "steps": ["s"], "colour": 1}', "colour", "unexpected"),
    ('{"id": "y", "problem": "p", "steps": ["s"], "judgement": {"judge": "j", "critiques": [{"text": "t", '
     '"index": "two"}]}}', "judgement.critiques.index", "step index"),
    ('{"id": "y", "problem": "p", "steps": ["s"], "judgement": {"judge": "j", "votes": 1}}', "judgement",
     "votes"),
])
def test_bad_native_line_names_file_line_and_field(tmp_path, bad_line, field, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD + "\n" + bad_line + "\n" + GOOD + "\n")
    with pytest.raises(RecordError) as caught:
        read_traces(path)
    err = caught.value
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    assert words in str(err) and "line 2" in str(err)


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    latin1 = '{"id": "é", "problem": "p", "steps": ["s"]}'.encode("latin-1")
    path.write_bytes(GOOD.encode() + b"\n" + latin1 + b"\n")
    with pytest.raises(RecordError, match=r"latin1\.jsonl, line 2: not valid UTF-8"):
        read_traces(path)


def test_skip_invalid_reports_each_skipped_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([GOOD, "{oops", '{"id": "z", "problem": "p", "steps": []}',
                               GOOD.replace('"x"', '"y"')]) + "\n")
    report = ReadReport()
    traces = read_traces(path, skip_invalid=True, report=report)
    assert len(traces) == 2
    assert [err.line for err in report.skipped] == [2, 3]
    assert "skipped 2" in report.summary()
