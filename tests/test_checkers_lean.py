"""The Lean checker: its REPL protocol against recorded transcripts, and real Lean if present.

No Lean toolchain can be installed here, so the protocol (requests, multi-line JSON
responses, errors, sorries, REPL-level errors, timeouts) is exercised against transcripts in
the REPL's own output format (tests/data/lean/*.jsonl), replayed by a small process that
speaks the REPL's stdin/stdout protocol. Tests that need a real Lean skip without `lake`.
"""

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from annotate.checkers import get_checker
from annotate.checkers.lean_checker import (LeanChecker, build_request, encode_request,
                                            lean_code, parse_lean_json, read_response,
                                            verdict_from_response)

DATA = Path(__file__).parent / "data" / "lean"
TRANSCRIPTS = [json.loads(line) for line in (DATA / "repl_transcripts.jsonl").open(encoding="utf-8")]
LEAN_JSON = [json.loads(line) for line in (DATA / "lean_json_transcripts.jsonl").open(encoding="utf-8")]

# Answers each request with the recorded response for the same request, in the REPL's framing
# (commands separated by blank lines on stdin; responses printed as recorded). Modes: "silent"
# never answers; "limits" answers every request with the process's own resource limits.
REPLAY = textwrap.dedent('''
    import json, resource, sys, time
    records = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
    answers = {json.dumps(r["request"], sort_keys=True): r["response_text"] for r in records}
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    buffer = []
    for line in sys.stdin:
        if line.strip():
            buffer.append(line)
            continue
        if not buffer:
            continue
        request = json.loads("".join(buffer))
        buffer = []
        if mode == "silent":
            time.sleep(60)
        if mode == "limits":
            limits = {name: resource.getrlimit(getattr(resource, name))[0]
                      for name in ("RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_CORE")}
            message = {"severity": "info", "data": json.dumps(limits)}
            sys.stdout.write(json.dumps({"messages": [message], "env": 1}) + "\\n\\n")
        else:
            key = json.dumps(request, sort_keys=True)
            sys.stdout.write(answers.get(key, '{"message": "no recorded answer"}\\n\\n'))
        sys.stdout.flush()
''')


def step_with(code: str) -> str:
    return f"The step, stated formally:\n```lean\n{code}\n```\n"


@pytest.mark.parametrize("record", TRANSCRIPTS, ids=[r["name"] for r in TRANSCRIPTS])
def test_requests_are_built_as_recorded(record):
    env = record["request"].get("env")
    assert build_request(record["code"], env) == record["request"]
    wire = encode_request(build_request(record["code"], env)).decode("utf-8")
    assert wire.endswith("\n\n") and json.loads(wire) == record["request"]


@pytest.mark.parametrize("record", TRANSCRIPTS, ids=[r["name"] for r in TRANSCRIPTS])
def test_recorded_responses_give_the_right_verdict(record):
    response = read_response(iter(record["response_text"].splitlines(keepends=True)))
    status, evidence = verdict_from_response(response)
    assert status == record["status"], evidence


def test_error_evidence_names_the_position_and_message():
    record = next(r for r in TRANSCRIPTS if r["name"] == "false_statement")
    response = read_response(iter(record["response_text"].splitlines(keepends=True)))
    _, evidence = verdict_from_response(response)
    assert "line 1, column 27" in evidence and "type mismatch" in evidence


@pytest.mark.parametrize("record", LEAN_JSON, ids=[r["name"] for r in LEAN_JSON])
def test_lean_json_output_gives_the_right_verdict(record):
    assert verdict_from_response(parse_lean_json(record["stdout"]))[0] == record["status"]


def test_several_responses_are_read_one_after_another():
    text = "".join(r["response_text"] for r in TRANSCRIPTS)
    lines = iter(text.splitlines(keepends=True))
    statuses = [verdict_from_response(read_response(lines))[0] for _ in TRANSCRIPTS]
    assert statuses == [r["status"] for r in TRANSCRIPTS]
    with pytest.raises(EOFError):
        read_response(lines)


def test_lean_blocks_are_found_in_steps():
    assert lean_code(step_with("theorem t : 1 = 1 := rfl")) == "theorem t : 1 = 1 := rfl"
    assert lean_code("So 2 + 2 = 4.") is None


@pytest.fixture
def replay_script(tmp_path):
    script = tmp_path / "replay_repl.py"
    script.write_text(REPLAY, encoding="utf-8")
    return script


def test_checker_talks_to_a_repl_process_over_stdin(replay_script):
    command = [sys.executable, str(replay_script), str(DATA / "repl_transcripts.jsonl")]
    checker = LeanChecker(repl_command=command, header="import Mathlib", timeout=30)
    try:
        assert checker.available()
        by_name = {r["name"]: r for r in TRANSCRIPTS}
        for name in ("rfl_proof", "linarith_step", "false_statement", "wrong_tactic", "sorry_proof",
                     "own_imports"):
            verdict = checker.check("", [], step_with(by_name[name]["code"]))
            assert verdict.status == by_name[name]["status"], (name, verdict)
            assert verdict.backend == "lean-repl" and verdict.claim == by_name[name]["code"]
        no_block = checker.check("", [], "So 2 + 2 = 4.")
        assert no_block.status == "unknown"
    finally:
        checker.close()


def test_a_block_with_eval_is_refused_before_it_reaches_lean(replay_script):
    # the recorded REPL answers `#eval 48 / 2` with an info message (a pass if it were sent)
    record = next(r for r in TRANSCRIPTS if r["name"] == "eval_info")
    assert verdict_from_response(read_response(
        iter(record["response_text"].splitlines(keepends=True))))[0] == "verified"
    command = [sys.executable, str(replay_script), str(DATA / "repl_transcripts.jsonl")]
    checker = LeanChecker(repl_command=command, header="import Mathlib", timeout=30)
    try:
        verdict = checker.check("", [], step_with(record["code"]))
        assert verdict.status == "unknown" and verdict.evidence.startswith("not run: ")
        assert "#" in verdict.evidence
    finally:
        checker.close()


def test_the_repl_process_runs_under_a_memory_limit(replay_script):
    command = [sys.executable, str(replay_script), str(DATA / "repl_transcripts.jsonl"), "limits"]
    checker = LeanChecker(repl_command=command, memory_mb=2048, timeout=30)
    try:
        verdict = checker.check("", [], step_with("theorem t : 1 = 1 := rfl"))
    finally:
        checker.close()
    assert verdict.status == "verified"
    limits = json.loads(verdict.evidence[verdict.evidence.index("{"):verdict.evidence.rindex("}") + 1])
    assert limits == {"RLIMIT_DATA": 2048 * 1024 * 1024, "RLIMIT_FSIZE": 64 * 1024 * 1024,
                      "RLIMIT_CORE": 0}


def test_a_repl_that_does_not_answer_gives_unknown(replay_script):
    command = [sys.executable, str(replay_script), str(DATA / "repl_transcripts.jsonl"), "silent"]
    checker = LeanChecker(repl_command=command, timeout=1.0)
    try:
        verdict = checker.check("", [], step_with("theorem t : 1 = 1 := rfl"))
        assert verdict.status == "unknown" and "did not answer" in verdict.evidence
    finally:
        checker.close()


@pytest.mark.skipif(shutil.which("lake") is not None or shutil.which("lean") is not None,
                    reason="a Lean toolchain is installed here")
def test_without_lean_every_verdict_is_unavailable():
    checker = get_checker("lean")
    verdict = checker.check("", [], step_with("theorem t : 1 = 1 := rfl"))
    assert verdict.status == "unavailable" and not verdict.passed
    assert "not on PATH" in verdict.evidence


@pytest.mark.skipif(shutil.which("lake") is None,
                    reason="needs a Lean 4 toolchain: `lake` is not on PATH (no Lean can be installed "
                           "on this machine; see docs/checkers.md to enable it)")
def test_real_lean_proves_and_refutes():
    project = os.environ.get("PRM_LEAN_PROJECT")
    if not project:
        pytest.skip("set PRM_LEAN_PROJECT to a Lake project with the REPL (see docs/checkers.md)")
    checker = LeanChecker(project=project)
    try:
        assert checker.check("", [], step_with("theorem t : 2 + 2 = 4 := rfl")).status == "verified"
        assert checker.check("", [], step_with("theorem u : 2 + 2 = 5 := rfl")).status == "refuted"
        assert checker.check("", [], step_with("theorem v : 1 = 1 := by sorry")).status == "unknown"
    finally:
        checker.close()
