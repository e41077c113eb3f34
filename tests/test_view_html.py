"""The step view in Python (notebooks): what it marks, what it shows, and that it escapes text;
and the page's embedded data (see test_view_browser.py for the page in a browser)."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from prm.app.cli import main
from prm.formats import read
from prm.io import read_traces
from prm.records import Review, Rollouts, Step, Trace, Verdict
from prm.view_html import page_html, show, trace_facets

DATA = Path(__file__).parent / "data" / "label_studio"


class Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)


def visible_text(html: str) -> str:
    parser = Text()
    parser.feed(re.sub(r"<style>.*?</style>", "", html, flags=re.S))
    return " ".join("".join(parser.parts).split())


def test_repr_html_marks_the_first_error_and_shows_the_evidence():
    shop, train = read_traces(DATA / "traces.jsonl")
    html = shop._repr_html_()
    assert re.findall(r'class="prm-step([^"]*)" data-step="(\d)"', html) == [
        ("", "0"), (" gold-first-error", "1"), (" first-error", "2")]  # labels say step 3, gold step 2
    text = visible_text(html)
    for words in ("sympy: refuted", "computed 11, stated 12", "Monte Carlo 1/4 reached the answer",
                  "Monte Carlo ≠ checker", "gold first error", "first error: step 3"):
        assert words in text, words
    assert 'class="prm-answer right">11<' in html  # a sampled answer that is the reference answer
    assert "PRM ≠ checker" not in text and "checker ≠ PRM" in visible_text(train._repr_html_())


def test_reviews_and_unknown_fields_such_as_a_judge_critique_are_shown():
    class Judged:
        """A trace as a later record version might give it: extra step and meta fields."""

        def __init__(self, trace):
            self.trace = trace

        def to_dict(self):
            data = self.trace.to_dict()
            data["steps"][0]["critique"] = "The step multiplies before adding: fine."
            data["steps"][0]["judge_label"] = 1
            data["meta"]["judge"] = {"model": "some-judge", "verdict": "first error at step 2"}
            return data

        def first_error(self):
            return self.trace.first_error()

    trace = Trace("t", "p", [Step("2 + 2 = 4", hard_label=1, reviews=[
        Review("ana@example.org", 0, time="2024-05-01T10:00:00Z", tool="label-studio", comment="typo")])])
    text = visible_text(show(Judged(trace))._repr_html_())
    assert "critique: The step multiplies before adding: fine." in text
    assert "judge_label: 1" in text and "first error at step 2" in text
    assert "human: bad ana@example.org in label-studio, 2024-05-01T10:00:00Z: typo" in text
    assert trace_facets(trace)["disagree"] == []  # a label alone has nothing to disagree with
    trace.steps[0].rollouts = Rollouts(correct=3, total=4)  # Monte Carlo: good; ana: bad
    assert trace_facets(trace)["disagree"] == ["mc-human"]


def test_step_text_is_escaped_in_the_view_and_in_the_page():
    nasty = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'
    trace = Trace("x&y", nasty, [Step(nasty, verdicts=[Verdict("sympy", "refuted", evidence=nasty)])])
    view = trace._repr_html_()
    assert "<script" not in view and "<img" not in view
    page = page_html([trace])
    assert page.count("<script") == 2 and "<img" not in page  # the data and the page's own script
    data = re.search(r'<script id="prm-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["traces"][0]["t"]["steps"][0]["text"] == nasty


def test_show_draws_the_first_traces_and_says_how_many_are_left():
    traces = read_traces(DATA / "traces.jsonl")
    html = show(traces, colour="score", limit=1)._repr_html_()
    assert html.count('class="prm-trace"') == 1 and "showing 1 of 2 traces" in html
    assert 'class="prm-view by-score"' in html


def test_view_writes_a_page_beside_the_input(tmp_path, capsys):
    source = tmp_path / "traces.jsonl"
    source.write_bytes((DATA / "traces.jsonl").read_bytes())
    assert main(["view", str(source)]) == 0
    page = tmp_path / "traces.html"
    assert page.exists() and "wrote" in capsys.readouterr().out
    data = re.search(r'<script id="prm-data" type="application/json">(.*?)</script>', page.read_text(), re.S)
    facets = [item["f"] for item in json.loads(data.group(1))["traces"]]
    assert [f["first_error"] for f in facets] == [2, -1] and facets[0]["refuted"]


def test_view_of_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["view", str(tmp_path / "nope.jsonl")]) == 1
    err = capsys.readouterr().err.strip()
    assert "no such file" in err and len(err.splitlines()) == 1


def test_show_on_a_processbench_file_marks_its_first_wrong_step(tmp_path):
    rows = [{"id": "pb-1", "generator": "m", "problem": "2 + 2 * 3?", "steps": ["2 * 3 = 6", "2 + 6 = 9", "So 9."],
             "final_answer_correct": False, "label": 1},
            {"id": "pb-2", "generator": "m", "problem": "1 + 1?", "steps": ["1 + 1 = 2"], "final_answer_correct": True,
             "label": -1}]
    path = tmp_path / "gsm8k.json"
    path.write_text(json.dumps(rows))
    html = show(read(path))._repr_html_()
    assert re.findall(r'class="prm-step([^"]*)" data-step="(\d)"', html) == [
        ("", "0"), (" first-error", "1"), ("", "2"), ("", "0")]
    assert "first error: step 2" in visible_text(html) and "first error: none" in visible_text(html)
