"""Traces for people to look at: the step view as HTML, for notebooks and for `prm view` pages.

A step is coloured by its label (green good, red bad, grey unknown), by its reward-model
score (red 0 to green 1), by its gold label or by the reviewers' label; the first error is
marked with a red bar (and the gold first error, when it differs, with a purple frame).
Each step lists its checker verdicts with their evidence, its Monte Carlo rollouts
(successes of N, the sampled answers, the continuations when kept), people's reviews, and
any judge critique.

Two renderers draw this view with the one stylesheet `prm/view.css`:
- `trace_html` / `show` here, in Python, for notebooks: static HTML, so that it shows on
  GitHub and nbviewer too, where notebook scripts do not run (`Trace._repr_html_` uses it);
- `prm/view_page.js`, in the browser, for `page_html`: the traces are embedded once as JSON
  and the script draws only the page of the list and the trace being looked at, so that a
  page of 10,000 traces loads in a second or two (bench/view.py).
`tests/test_view_browser.py` checks that both draw the same steps.

Traces are read through their public methods (`to_dict`, `first_error`) rather than by
importing `prm.records`, which imports this module for `Trace._repr_html_`.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources
from typing import Any

# The fields a step has today; a field added later (a judge's critique, say) is still shown.
STEP_FIELDS = {"text", "hard_label", "soft_label", "label_source", "verdicts", "rollouts", "score", "reviews"}
COLOURINGS = ("label", "score", "gold", "human")
# Signals a step can be judged by; a trace "disagrees" on a pair when both are known and differ.
SIGNALS = ("mc", "checker", "prm", "gold", "human")
SIGNAL_NAMES = {"mc": "Monte Carlo", "checker": "checker", "prm": "PRM", "gold": "gold", "human": "human"}
PRM_THRESHOLD = 0.5  # a score at or above it counts as the PRM calling the step good
PAGE_SIZE = 50


@cache
def stylesheet() -> str:
    return resources.files("prm").joinpath("view.css").read_text(encoding="utf-8")


@cache
def page_script() -> str:
    return resources.files("prm").joinpath("view_page.js").read_text(encoding="utf-8")


# -- what each step says: labels, checkers, rollouts, scores, gold, people ----------------------

def step_signals(step: dict[str, Any], gold: int | None) -> dict[str, int | None]:
    """Each signal's call on one step (1 good, 0 bad, None no call).

    mc: the Monte Carlo label when the step was labelled that way, else whether any rollout
    reached the answer; checker: refuted 0, verified 1 (any checker refuting wins);
    prm: score >= PRM_THRESHOLD; gold: meta.gold_labels; human: the latest review.
    """
    rollouts = step.get("rollouts") or None
    if step.get("label_source") in ("monte-carlo", "binary-search") and step.get("hard_label") is not None:
        mc = step["hard_label"]
    elif rollouts and rollouts.get("total"):
        mc = int(rollouts["correct"] > 0)
    else:
        mc = None
    statuses = {v.get("status") for v in step.get("verdicts") or []}
    checker = 0 if "refuted" in statuses else 1 if "verified" in statuses else None
    score = step.get("score")
    prm = None if score is None else int(score >= PRM_THRESHOLD)
    reviews = step.get("reviews") or []
    human = None
    if reviews:
        human = max(enumerate(reviews), key=lambda pair: (pair[1].get("time") or "", pair[0]))[1].get("hard_label")
    return {"mc": mc, "checker": checker, "prm": prm, "gold": gold, "human": human}


def disagreeing_pairs(signals: dict[str, int | None]) -> list[str]:
    """Pairs of signals ("mc-checker", ...) that both call the step and differ."""
    pairs = []
    for i, first in enumerate(SIGNALS):
        for second in SIGNALS[i + 1:]:
            a, b = signals[first], signals[second]
            if a is not None and b is not None and a != b:
                pairs.append(f"{first}-{second}")
    return pairs


def gold_labels(data: dict[str, Any]) -> list[int | None]:
    gold = (data.get("meta") or {}).get("gold_labels")
    steps = data["steps"]
    if not isinstance(gold, list) or len(gold) != len(steps):
        return [None] * len(steps)
    return [g if g in (0, 1) else None for g in gold]


def trace_facets(trace, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the page filters on, for one trace (a `prm.records.Trace`; `data`: its `to_dict()`
    when the caller has it already)."""
    data = trace.to_dict() if data is None else data
    meta = data.get("meta") or {}
    sources, pairs, scores = set(), set(), []
    refuted = False
    for step, gold in zip(data["steps"], gold_labels(data)):
        sources.add(step.get("label_source") or "none")
        if step.get("reviews"):
            sources.add("human review")
        refuted = refuted or any(v.get("status") == "refuted" for v in step.get("verdicts") or [])
        pairs.update(disagreeing_pairs(step_signals(step, gold)))
        if step.get("score") is not None:
            scores.append(step["score"])
    gold_first = meta.get("gold_first_error")
    return {"sources": sorted(sources), "refuted": refuted, "disagree": sorted(pairs),
            "first_error": trace.first_error(),
            "gold_first_error": gold_first if isinstance(gold_first, int) else None,
            "min_score": min(scores) if scores else None}


# -- colours (mirrored in view_page.js) -----------------------------------------------------------

def label_colour(label: int | None) -> str:
    return {1: "#d5f0da", 0: "#f7d2d2"}.get(label, "#eceef2")


def score_colour(score: float | None) -> str:
    """Red (0) through yellow to green (1) in HSL, light enough to read text on."""
    if score is None:
        return "#eceef2"
    return f"hsl({round(max(0.0, min(1.0, score)) * 120)}, 70%, 86%)"


# -- the step view in Python (notebooks) ------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _label_word(label: int | None) -> str:
    return {1: "good", 0: "bad"}.get(label, "unknown")


def _number(value: float | None) -> str:
    """3 significant digits, written as the page's script writes them (0.00001, not 1e-05)."""
    if value is None:
        return "–"
    return f"{float(f'{value:.3g}'):.10f}".rstrip("0").rstrip(".") or "0"


def _critique_html(name: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)
    return f'<div class="prm-judge"><b>{_e(name)}</b>: {_e(text)}</div>'


def _is_critique(name: str) -> bool:
    return "critique" in name or "judge" in name


def step_html(step: dict[str, Any], index: int, *, gold: int | None, first_error: int | None,
              gold_first_error: int | None, reference: str | None) -> str:
    """One step as a coloured box with its labels, verdicts, rollouts, reviews and critique."""
    signals = step_signals(step, gold)
    classes = ["prm-step"]
    if index == first_error:
        classes.append("first-error")
    if index == gold_first_error and gold_first_error != first_error:
        classes.append("gold-first-error")
    style = (f"--c-label:{label_colour(step.get('hard_label'))};--c-score:{score_colour(step.get('score'))};"
             f"--c-gold:{label_colour(gold)};--c-human:{label_colour(signals['human'])}")
    facts = [f'<span class="prm-badge {_label_word(step.get("hard_label"))}">{_label_word(step.get("hard_label"))}</span>']
    if step.get("label_source"):
        facts.append(f"source <b>{_e(step['label_source'])}</b>")
    if step.get("soft_label") is not None:
        facts.append(f"soft {_number(step['soft_label'])}")
    if step.get("score") is not None:
        facts.append(f"score <b>{_number(step['score'])}</b>")
    if gold is not None:
        facts.append(f'<span class="prm-badge gold">gold {_label_word(gold)}</span>')
    if index == first_error:
        facts.append('<span class="prm-badge bad">first error</span>')
    if index == gold_first_error and gold_first_error != first_error:
        facts.append('<span class="prm-badge gold">gold first error</span>')
    for pair in disagreeing_pairs(signals):
        a, b = pair.split("-")
        facts.append(f'<span class="prm-badge disagree">{SIGNAL_NAMES[a]} ≠ {SIGNAL_NAMES[b]}</span>')
    parts = [f'<div class="{" ".join(classes)}" data-step="{index}" style="{style}">',
             f'<div class="prm-step-top"><span class="prm-num">{index + 1}</span>'
             f'<span class="prm-text">{_e(step.get("text"))}</span></div>',
             f'<div class="prm-facts">{"".join(f"<span>{f}</span>" for f in facts)}</div>']
    for verdict in step.get("verdicts") or []:
        bits = [f'<span class="prm-badge {_e(verdict.get("status"))}">{_e(verdict.get("checker"))}: '
                f'{_e(verdict.get("status"))}</span>']
        if verdict.get("claim"):
            bits.append(f"claim <code>{_e(verdict['claim'])}</code>")
        if verdict.get("evidence"):
            bits.append(f"evidence <code>{_e(verdict['evidence'])}</code>")
        if verdict.get("backend"):
            bits.append(f'<span style="color:#6b7385">{_e(verdict["backend"])}</span>')
        parts.append(f'<div class="prm-verdict">{" ".join(bits)}</div>')
    rollouts = step.get("rollouts")
    if rollouts:
        answers = "".join(_answer_html(a, reference) for a in rollouts.get("answers") or [])
        parts.append(f'<div class="prm-verdict">Monte Carlo <b>{rollouts["correct"]}/{rollouts["total"]}</b> '
                     f"reached the answer {answers}</div>")
        texts = rollouts.get("texts") or []
        if texts:
            items = "".join(f"<pre>{_e(t)}</pre>" for t in texts)
            parts.append(f"<details><summary>{len(texts)} continuation(s)</summary>{items}</details>")
    for review in step.get("reviews") or []:
        when = f", {_e(review.get('time'))}" if review.get("time") else ""
        tool = f" in {_e(review.get('tool'))}" if review.get("tool") else ""
        comment = f": {_e(review.get('comment'))}" if review.get("comment") else ""
        parts.append(f'<div class="prm-verdict"><span class="prm-badge human">{_e(review.get("label_source"))}: '
                     f'{_label_word(review.get("hard_label"))}</span> {_e(review.get("reviewer"))}{tool}{when}'
                     f"{comment}</div>")
    for name in sorted(set(step) - STEP_FIELDS):
        if step[name] is None:
            continue
        if _is_critique(name):
            parts.append(_critique_html(name, step[name]))
        else:
            value = step[name] if isinstance(step[name], str) else json.dumps(step[name], ensure_ascii=False)
            parts.append(f'<div class="prm-verdict">{_e(name)}: <code>{_e(value)}</code></div>')
    parts.append("</div>")
    return "".join(parts)


def _answer_html(answer: str | None, reference: str | None) -> str:
    if answer is None:
        return '<span class="prm-answer none">none</span>'
    right = reference is not None and answer.strip() == reference.strip()
    return f'<span class="prm-answer{" right" if right else ""}">{_e(answer)}</span>'


def trace_html(trace, colour: str = "label", *, standalone: bool = True) -> str:
    """One trace's step view; `standalone` adds the stylesheet and the `.prm-view` wrapper."""
    if colour not in COLOURINGS:
        raise ValueError(f"colour must be one of {COLOURINGS}, got {colour!r}")
    data = trace.to_dict()
    facets = trace_facets(trace, data)
    meta = data.get("meta") or {}
    outcome = {1: "correct", 0: "wrong"}.get(data.get("outcome_label"), "unknown")
    head = [f'<span class="prm-id">{_e(data["id"])}</span>', f"{len(data['steps'])} steps",
            f"first error: <b>{_first_error_words(facets['first_error'])}</b>"]
    if facets["gold_first_error"] is not None:
        head.append(f"gold first error: <b>{_first_error_words(facets['gold_first_error'])}</b>")
    if facets["min_score"] is not None:
        head.append(f"min score {_number(facets['min_score'])}")
    answers = (f"final answer <b>{_e(data.get('final_answer') or '–')}</b> · reference "
               f"<b>{_e(data.get('reference_answer') or '–')}</b> · outcome <b>{outcome}</b>")
    golds = gold_labels(data)
    steps = "".join(step_html(step, i, gold=golds[i], first_error=facets["first_error"],
                              gold_first_error=facets["gold_first_error"],
                              reference=data.get("reference_answer"))
                    for i, step in enumerate(data["steps"]))
    critiques = "".join(_critique_html(k, v) for k, v in sorted(meta.items()) if _is_critique(k) and v)
    body = (f'<div class="prm-trace" data-trace="{_e(data["id"])}"><div class="prm-head">{"".join(f"<span>{h}</span>" for h in head)}</div>'
            f'<div class="prm-problem">{_e(data["problem"])}</div><div class="prm-answers">{answers}</div>'
            f"{critiques}{steps}</div>")
    if not standalone:
        return body
    return f'<style>{stylesheet()}</style><div class="prm-view by-{colour}">{_legend(colour)}{body}</div>'


def _first_error_words(index: int | None) -> str:
    if index is None:
        return "cannot tell"
    return "none" if index == -1 else f"step {index + 1}"


def _legend(colour: str) -> str:
    if colour == "score":
        swatches = [(score_colour(0.0), "0"), (score_colour(0.5), "0.5"), (score_colour(1.0), "1")]
        what = "coloured by PRM score"
    else:
        swatches = [(label_colour(1), "good"), (label_colour(0), "bad"), (label_colour(None), "unknown")]
        what = f"coloured by {colour} label"
    keys = "".join(f'<span class="prm-swatch" style="background:{c}"></span>{t}' for c, t in swatches)
    return f'<div class="prm-legend">{what}:{keys} · red bar: first error</div>'


class TraceView:
    """Traces drawn inline in a notebook (what `show` returns; Jupyter calls `_repr_html_`)."""

    def __init__(self, traces, colour: str = "label", limit: int = 20):
        if colour not in COLOURINGS:
            raise ValueError(f"colour must be one of {COLOURINGS}, got {colour!r}")
        self.traces, self.colour, self.limit = list(traces), colour, limit

    def _repr_html_(self) -> str:
        shown = self.traces[:self.limit]
        more = len(self.traces) - len(shown)
        note = (f'<div class="prm-legend">showing {len(shown)} of {len(self.traces)} traces '
                f"(show(traces, limit=N) for more; `prm view` pages through all of them)</div>") if more else ""
        body = "".join(trace_html(t, self.colour, standalone=False) for t in shown)
        return (f'<style>{stylesheet()}</style><div class="prm-view by-{self.colour}">'
                f"{_legend(self.colour)}{note}{body}</div>")


def show(traces, colour: str = "label", limit: int = 20) -> TraceView:
    """Draw traces in a notebook: `show(traces)`, `show(traces, colour="score")`, or pass one
    trace. The first `limit` traces are drawn; filter the list first to look at others."""
    if hasattr(traces, "to_dict"):
        traces = [traces]
    return TraceView(traces, colour, limit)


# -- the whole page (prm view) -------------------------------------------------------------------

def page_data(traces) -> list[dict[str, Any]]:
    """What the page embeds: each trace's record and its facets."""
    items = []
    for trace in traces:
        data = trace.to_dict()
        items.append({"t": data, "f": trace_facets(trace, data)})
    return items


def page_html(traces, title: str = "prm view") -> str:
    """One self-contained page (styles, script and data inline; nothing fetched at view time)."""
    data = json.dumps({"title": title, "pageSize": PAGE_SIZE, "prmThreshold": PRM_THRESHOLD,
                       "signals": SIGNAL_NAMES, "stepFields": sorted(STEP_FIELDS), "traces": page_data(traces)},
                      ensure_ascii=False, separators=(",", ":"))
    # Inside <script>, "</script" or "<!--" in a step's text would end the element early.
    data = data.replace("<", "\\u003c")
    return _PAGE.format(title=_e(title), style=stylesheet(), data=data, script=page_script())


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head><body>
<div id="app" class="prm-view by-label">loading…</div>
<script id="prm-data" type="application/json">{data}</script>
<script>{script}</script>
</body></html>
"""
