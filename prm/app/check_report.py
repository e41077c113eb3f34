"""`prm check-report --out DIR`: measure the checkers on real data, in one command.

Three measurements, written to DIR/report.md (tables) and DIR/report.json (all figures and
every listed step):

(a) GSM8K train reference solutions (all 7,473): how many calculator notes the symbolic
    checker verifies, refutes, leaves unknown; step verdicts of every checker with the time
    per step; every refuted step with its text and evidence, for inspection by hand (the
    solutions are nearly all correct, so a refutation is either a genuine slip in GSM8K or
    a parsing mistake of ours).
(b) The same solutions with one calculator result changed (`prm.formats.gsm8k.
    inject_calculator_error`, seeded): the fraction of corrupted steps refuted, and how
    often the first refuted step is exactly the corrupted one (first-error location).
(c) PRMBench train part: how many error steps the checkers refute, by error class (most
    classes are not arithmetic, so most are out of reach), and how many correct steps
    (unmarked steps of the modified solutions, and the original solutions) are refuted.
    error_steps are 1-based; the report re-checks this on the data.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import statistics
import sys
import time
from pathlib import Path

from prm.errors import RecordError
from prm.markdown import percent, table_lines

DEFAULT_DATA = Path("../shared/data")  # relative to the current directory
STATUSES = ("verified", "refuted", "unknown", "unavailable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for report.md and report.json")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="the shared data folder holding gsm8k/ and prmbench-train/ "
                             "(default: ../shared/data, relative to the current directory)")
    parser.add_argument("--checkers", default="sympy,z3", help="checkers to measure (default sympy,z3)")
    parser.add_argument("--parts", default="a,b,c", help="which measurements: a, b, c (default all)")
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N GSM8K solutions / PRMBench records per file (quick runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the injected errors")


# -- shared helpers --------------------------------------------------------------------------

CONTRADICTIONS_ONLY = "z3-contradictions"  # z3 as if run with refute="contradiction"


def _check_trace(trace, checkers: dict, progress=None) -> dict[str, list]:
    """Verdicts of every checker on every step: {name: [Verdict, ...]}.

    With z3, also "z3-contradictions": the same verdicts with the refutations for "does not
    follow" (counter-examples) counted as unknown, i.e. z3 with refute="contradiction",
    without running it twice.
    """
    texts = trace.step_texts
    verdicts = {name: [] for name in checkers}
    for index, text in enumerate(texts):
        for name, checker in checkers.items():
            verdicts[name].append(checker.check(trace.problem, texts[:index], text))
        if progress is not None:
            progress.update(1)
    if "z3" in verdicts:
        verdicts[CONTRADICTIONS_ONLY] = [_contradictions_only(v) for v in verdicts["z3"]]
    return verdicts


def _contradictions_only(verdict):
    from dataclasses import replace

    if verdict.status != "refuted" or "contradicts" in (verdict.evidence or "") \
            or "false:" in (verdict.evidence or ""):
        return verdict
    return replace(verdict, status="unknown")


def _names(checkers: dict) -> list[str]:
    return [*checkers, *([CONTRADICTIONS_ONLY] if "z3" in checkers else [])]


def _first_refuted(verdicts: list) -> int:
    return next((i for i, v in enumerate(verdicts) if v.status == "refuted"), -1)


def _timing(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    ordered = sorted(seconds)
    return {"mean_ms": 1000 * statistics.fmean(ordered), "median_ms": 1000 * ordered[len(ordered) // 2],
            "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))], "max_ms": 1000 * ordered[-1]}


def _fraction(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _tqdm(total: int, desc: str):
    from prm.progress import progress_bar  # a bar on a terminal, a log line every 30 s elsewhere

    return progress_bar(total, desc=desc, unit="step")


# -- (a) GSM8K reference solutions -----------------------------------------------------------

def gsm8k_reference(traces, checkers: dict) -> dict:
    from annotate.checkers.sympy_checker import SympyChecker

    symbolic = SympyChecker()
    notes = collections.Counter()
    note_results = collections.Counter()
    steps = {name: collections.Counter() for name in _names(checkers)}
    seconds = {name: [] for name in _names(checkers)}
    refuted = []
    with _tqdm(sum(len(t.steps) for t in traces), "(a) GSM8K reference") as progress:
        for trace in traces:
            verdicts = _check_trace(trace, checkers, progress)
            for index, step in enumerate(trace.steps):
                for claim_result in symbolic.check_claims(step.text):
                    if claim_result.claim.kind == "note":
                        notes[claim_result.status] += 1
                    elif claim_result.claim.kind == "note-result":
                        note_results[claim_result.status] += 1
                for name in _names(checkers):
                    verdict = verdicts[name][index]
                    steps[name][verdict.status] += 1
                    seconds[name].append(verdict.seconds or 0.0)
                    if verdict.status == "refuted" and name in checkers:
                        refuted.append({"trace": trace.id, "step": index, "checker": name,
                                        "text": step.text, "evidence": verdict.evidence})
    total_notes = sum(notes.values())
    total_steps = sum(len(t.steps) for t in traces)
    return {
        "solutions": len(traces), "steps": total_steps,
        "calculator_notes": {"total": total_notes, **{s: notes[s] for s in STATUSES[:3]},
                             **{f"{s}_fraction": _fraction(notes[s], total_notes) for s in STATUSES[:3]}},
        "written_results": {"total": sum(note_results.values()),
                            **{s: note_results[s] for s in STATUSES[:3]}},
        "steps_by_checker": {name: {"counts": dict(steps[name]),
                                    "refuted_fraction": _fraction(steps[name]["refuted"], total_steps),
                                    "time_per_step": _timing(seconds[name])}
                             for name in _names(checkers)},
        "refuted": refuted,
    }


# -- (b) injected calculator errors ----------------------------------------------------------

def gsm8k_injected(traces, checkers: dict, seed: int) -> dict:
    from prm.formats.gsm8k import inject_calculator_error

    rng = random.Random(seed)
    corrupted = [c for c in (inject_calculator_error(t, rng) for t in traces) if c is not None]
    per = {name: collections.Counter() for name in [*_names(checkers), "any"]}
    examples = {name: [] for name in per}
    with _tqdm(sum(len(t.steps) for t in corrupted), "(b) GSM8K injected errors") as progress:
        for trace in corrupted:
            gold = trace.meta["gold_first_error"]
            verdicts = _check_trace(trace, checkers, progress)
            firsts = {name: _first_refuted(v) for name, v in verdicts.items()}
            caught_by = {name: verdicts[name][gold].status == "refuted" for name in _names(checkers)}
            candidates = [f for name, f in firsts.items() if f != -1 and name in checkers]
            firsts["any"] = min(candidates) if candidates else -1
            caught_by["any"] = any(caught_by[name] for name in checkers)
            for name in per:
                counts, first = per[name], firsts[name]
                counts["corrupted"] += 1
                counts["caught"] += caught_by[name]
                counts["located"] += first == gold
                counts["too_early"] += first != -1 and first < gold
                counts["missed"] += first == -1 or first > gold
                if first != gold and len(examples[name]) < 25:
                    step = first if first != -1 and first < gold else gold
                    examples[name].append({
                        "trace": trace.id, "gold_first_error": gold, "checker_first_error": first,
                        "injected": trace.meta.get("injected"), "text": trace.steps[step].text,
                        "evidence": verdicts[name][step].evidence if name in verdicts else None})
    result = {"solutions_with_notes": len(corrupted), "seed": seed, "by_checker": {}}
    for name, counts in per.items():
        n = counts["corrupted"]
        result["by_checker"][name] = {
            **dict(counts), "caught_fraction": _fraction(counts["caught"], n),
            "location_accuracy": _fraction(counts["located"], n),
            "too_early_fraction": _fraction(counts["too_early"], n), "not_located": examples[name]}
    return result


# -- (c) PRMBench ----------------------------------------------------------------------------

def prmbench(folder: Path, checkers: dict, limit: int | None) -> dict:
    from prm.formats.prmbench import read_prmbench

    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise RecordError("no PRMBench .jsonl files", path=str(folder))
    modified, originals = [], {}
    for path in files:
        # each record gives two traces (modified and original): the limit counts records
        for trace in read_prmbench(path, include_original=True,
                                   limit=None if limit is None else 2 * limit):
            if trace.meta.get("error_class") == "correct":
                originals.setdefault(trace.id, trace)
            else:
                modified.append(trace)
    base = _one_based_evidence(files, limit)
    names = _names(checkers)
    by_class = collections.defaultdict(lambda: {n: collections.Counter() for n in [*names, "any"]})
    false_refutations = {n: [] for n in [*names, "any"]}
    original_counts = {n: collections.Counter() for n in [*names, "any"]}
    total = sum(len(t.steps) for t in modified) + sum(len(t.steps) for t in originals.values())
    with _tqdm(total, "(c) PRMBench") as progress:
        for trace in modified:
            verdicts = _check_trace(trace, checkers, progress)
            error_class = trace.meta.get("error_class", "?")
            first_error = trace.meta.get("gold_first_error")
            for index, step in enumerate(trace.steps):
                label = step.hard_label
                if label is None:
                    continue
                # a correct step after an inserted error may be false given the problem
                after_error = first_error is not None and 0 <= first_error < index
                statuses = {n: verdicts[n][index].status for n in names}
                statuses["any"] = "refuted" if any(statuses[n] == "refuted" for n in checkers) \
                    else "other"
                for name, status in statuses.items():
                    counts = by_class[error_class][name]
                    kind = "error" if label == 0 else "correct"
                    counts[f"{kind}_steps"] += 1
                    counts[f"{kind}_refuted"] += status == "refuted"
                    if kind == "correct":
                        where = "after" if after_error else "before"
                        counts[f"correct_{where}_error_steps"] += 1
                        counts[f"correct_{where}_error_refuted"] += status == "refuted"
                    if kind == "error":
                        counts["error_verified"] += status == "verified"
                    if kind == "correct" and status == "refuted" and name in checkers:
                        false_refutations[name].append({
                            "trace": trace.id, "class": error_class, "step": index,
                            "after_inserted_error": after_error,
                            "text": step.text, "evidence": verdicts[name][index].evidence})
        for trace in originals.values():
            verdicts = _check_trace(trace, checkers, progress)
            for index, step in enumerate(trace.steps):
                statuses = {n: verdicts[n][index].status for n in names}
                statuses["any"] = "refuted" if any(statuses[n] == "refuted" for n in checkers) \
                    else "other"
                for name, status in statuses.items():
                    original_counts[name]["steps"] += 1
                    original_counts[name]["refuted"] += status == "refuted"
                    if name != "any":
                        original_counts[name]["verified"] += status == "verified"
                    if status == "refuted" and name in checkers:
                        false_refutations[name].append({
                            "trace": trace.id, "class": "original", "step": index,
                            "text": step.text, "evidence": verdicts[name][index].evidence})
    classes = {}
    for error_class, per_checker in sorted(by_class.items()):
        classes[error_class] = {}
        for name, counts in per_checker.items():
            classes[error_class][name] = {
                **dict(counts),
                "error_refuted_fraction": _fraction(counts["error_refuted"], counts["error_steps"]),
                "correct_refuted_fraction": _fraction(counts["correct_refuted"], counts["correct_steps"])}
    return {"records": len(modified), "original_solutions": len(originals),
            "error_steps_base": base, "by_class": classes,
            "original_steps": {n: dict(c) for n, c in original_counts.items()},
            "refuted_correct_steps": false_refutations}


def _one_based_evidence(files: list[Path], limit: int | None) -> dict:
    """Is error_steps 1-based? Count records whose first named step differs from the
    original at that position read 1-based vs 0-based, and out-of-range numbers."""
    counts = collections.Counter()
    for path in files:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                if limit is not None and number >= limit:
                    break
                row = json.loads(line)
                steps, original, errors = row["modified_process"], row["original_process"], row["error_steps"]
                if not errors:
                    continue
                counts["records"] += 1
                counts["has_zero"] += 0 in errors
                counts["names_last_plus_one"] += max(errors) == len(steps)
                first = min(errors)
                if 1 <= first <= len(steps):
                    counts["changed_if_1_based"] += first - 1 >= len(original) or \
                        steps[first - 1] != original[first - 1]
                if 0 <= first < len(steps):
                    counts["changed_if_0_based"] += first >= len(original) or steps[first] != original[first]
    return dict(counts)


# -- the command -----------------------------------------------------------------------------

def run(args) -> int:
    from prm.app.check import build_checkers
    from prm.io import refuse_output_over_inputs

    data = Path(args.data)
    needed = [data / "gsm8k" / "train.jsonl"] if set(args.parts.split(",")) & {"a", "b"} else []
    needed += [data / "prmbench-train"] if "c" in args.parts.split(",") else []
    missing = [path for path in [data, *needed] if not path.exists()]
    if missing:
        raise RecordError("not found; pass --data FOLDER, the folder holding "
                          "gsm8k/train.jsonl and prmbench-train/", path=str(missing[0]))
    out = Path(args.out)
    refuse_output_over_inputs(out, [data])
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.checkers.split(",") if n.strip()]
    options = argparse.Namespace(timeout=5.0, z3_timeout_ms=1000, z3_refute="counterexample",
                                 lean_project=None)
    checkers = build_checkers(names, options)
    parts = {p.strip() for p in args.parts.split(",")}
    command = "prm check-report " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["check-report"] \
        else f"prm check-report --out {args.out}"
    report: dict = {"command": command, "checkers": {n: _backend(c) for n, c in checkers.items()}}
    started = time.perf_counter()
    if parts & {"a", "b"}:
        from prm.formats.gsm8k import read_gsm8k

        traces = read_gsm8k(data / "gsm8k" / "train.jsonl", limit=args.limit)
        if "a" in parts:
            report["a_gsm8k_reference"] = gsm8k_reference(traces, checkers)
        if "b" in parts:
            report["b_gsm8k_injected"] = gsm8k_injected(traces, checkers, args.seed)
    if "c" in parts:
        report["c_prmbench"] = prmbench(data / "prmbench-train", checkers, args.limit)
    report["seconds"] = time.perf_counter() - started
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report, brief=True))
    print(f"wrote {out / 'report.md'} and {out / 'report.json'}")
    return 0


def _backend(checker) -> str:
    return getattr(checker, "backend", None) or getattr(checker, "backend_name", checker.name)


def markdown(report: dict, brief: bool = False) -> str:
    lines = ["# Checker report", "", f"Command: `{report['command']}`", "",
             "Backends: " + ", ".join(f"{n} ({b})" for n, b in report["checkers"].items()), ""]
    a = report.get("a_gsm8k_reference")
    if a:
        notes = a["calculator_notes"]
        lines += ["## (a) GSM8K train reference solutions", "",
                  f"{a['solutions']} solutions, {a['steps']} steps, {notes['total']} calculator notes.", ""]
        lines += table_lines(["calculator notes", "verified", "refuted", "unknown"], [
            ["sympy"] + [f"{notes[s]} ({percent(notes[s + '_fraction'], 2)})"
                         for s in ("verified", "refuted", "unknown")]])
        lines += [""] + table_lines(
            ["steps", "verified", "refuted", "unknown", "mean ms/step", "median", "p99"],
            [[name, stats["counts"].get("verified", 0), stats["counts"].get("refuted", 0),
              stats["counts"].get("unknown", 0) + stats["counts"].get("unavailable", 0),
              f"{stats['time_per_step'].get('mean_ms', 0):.2f}",
              f"{stats['time_per_step'].get('median_ms', 0):.2f}",
              f"{stats['time_per_step'].get('p99_ms', 0):.2f}"]
             for name, stats in a["steps_by_checker"].items()])
        if not brief:
            lines += ["", "Every refuted step (inspect each):", ""] + table_lines(
                ["trace", "step", "checker", "text", "evidence"],
                [[r["trace"], r["step"], r["checker"], _short(r["text"]), _short(r["evidence"])]
                 for r in a["refuted"]])
        lines.append("")
    b = report.get("b_gsm8k_injected")
    if b:
        lines += ["## (b) GSM8K with one injected calculator error", "",
                  f"{b['solutions_with_notes']} corrupted solutions (seed {b['seed']}).", ""]
        lines += table_lines(
            ["checker", "corrupted step refuted", "first error at the right step", "refuted too early"],
            [[name, f"{s['caught']} ({percent(s['caught_fraction'], 2)})",
              f"{s['located']} ({percent(s['location_accuracy'], 2)})",
              f"{s['too_early']} ({percent(s['too_early_fraction'], 2)})"]
             for name, s in b["by_checker"].items()])
        lines.append("")
    c = report.get("c_prmbench")
    if c:
        base = c["error_steps_base"]
        lines += ["## (c) PRMBench train part", "",
                  f"{c['records']} records with inserted errors, {c['original_solutions']} original "
                  f"solutions. error_steps base check: {base}.", ""]
        lines += table_lines(
            ["class", "checker", "error steps", "refuted", "correct steps before the error", "refuted",
             "correct steps after it", "refuted"],
            [[error_class, name, s.get("error_steps", 0),
              f"{s.get('error_refuted', 0)} ({percent(s['error_refuted_fraction'], 2)})",
              s.get("correct_before_error_steps", 0), s.get("correct_before_error_refuted", 0),
              s.get("correct_after_error_steps", 0), s.get("correct_after_error_refuted", 0)]
             for error_class, per in c["by_class"].items() for name, s in per.items()])
        lines += [""] + table_lines(
            ["original solutions", "steps", "refuted", "verified"],
            [[name, s.get("steps", 0), s.get("refuted", 0), s.get("verified", 0)]
             for name, s in c["original_steps"].items()])
        if not brief:
            lines += ["", "Correct steps refuted (inspect each):", ""] + table_lines(
                ["checker", "trace", "class", "step", "text", "evidence"],
                [[name, r["trace"], r["class"], r["step"], _short(r["text"]), _short(r["evidence"])]
                 for name, items in c["refuted_correct_steps"].items() for r in items])
        lines.append("")
    lines.append(f"Total time: {report.get('seconds', 0):.0f} s")
    return "\n".join(lines) + "\n"


def _short(text: str | None) -> str:
    return (text or "")[:300]
