"""An output never destroys what was there (issue 18): every command that writes traces is run
with OUT as an existing folder holding the user's files and as the current folder, and
afterwards every file is still there, unchanged. A `datasets` folder replaces only an empty
folder or a dataset prm wrote itself (marked by `prm.io.OUTPUT_MARKER`)."""

import json
from pathlib import Path

import pytest

from prm.app.cli import main
from prm.errors import RecordError
from prm.io import OUTPUT_MARKER, check_output, read_traces, write_traces
from prm.records import Trace

RECORD = {"id": "a", "problem": "What is 2+3?", "steps": ["2+3 = 5", "The answer is 5"],
          "reference_answer": "5"}


def scored_prmbench_row(idx: str) -> dict:
    return {"original_question": "What is 2+3?", "modified_question": "What is 2+3?",
            "original_process": ["2+3 = 5"], "modified_process": ["2+3 = 6"], "error_steps": [1],
            "modified_steps": [1], "classification": "redundency", "idx": idx, "reason": "r"}


def user_folder(folder: Path) -> dict[str, bytes]:
    """A folder as a user has it: the input itself, notes, a sub-folder; returns its contents."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "in.jsonl").write_text(json.dumps(RECORD) + "\n", encoding="utf-8")
    (folder / "notes.txt").write_text("keep me\n", encoding="utf-8")
    (folder / "prmbench.jsonl").write_text(json.dumps(scored_prmbench_row("p1")) + "\n", encoding="utf-8")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "data.csv").write_text("a,b\n", encoding="utf-8")
    return snapshot(folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# every command that writes traces (or a report beside them), with IN and OUT placeholders
COMMANDS = {
    "check": ["check", "{IN}", "{OUT}", "--checkers", "sympy", "--workers", "1", "--no-progress"],
    "score": ["score", "checker:sympy", "{IN}", "{OUT}", "--threads", "1"],
    "convert": ["convert", "{IN}", "{OUT}"],
    "merge": ["merge", "{OUT}", "{IN}", "--input", "{IN}"],
    "annotate": ["annotate", "{IN}", "{OUT}", "--completer", "tiny-gsm", "--n", "2", "--no-progress"],
    "search": ["search", "{IN}", "{OUT}", "--strategy", "majority", "--budget", "2x",
               "--tokens-per-solution", "50", "--no-progress"],
    "consensus": ["consensus", "{OUT}", "mc={IN}", "judge={IN}"],
    "select": ["select", "{IN}", "{OUT}", "--budget-rollouts", "10", "--strategy", "random"],
    "import": ["import", "--from", "label-studio", "{IN}", "{IN}", "{OUT}"],
    "eval": ["eval", "--benchmark", "prmbench", "--scorer", "checker:sympy", "--data", "{PRMBENCH}",
             "--out", "{OUT}", "--threads", "1"],
}


def fill(argv: list[str], folder: Path, out: str) -> list[str]:
    names = {"{IN}": str(folder / "in.jsonl"), "{OUT}": out, "{PRMBENCH}": str(folder / "prmbench.jsonl")}
    return [names.get(a, a) for a in argv]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_existing_folder_of_the_users_files_as_out_loses_nothing(command, tmp_path, capsys):
    before = user_folder(tmp_path / "proj")
    code = main(fill(COMMANDS[command], tmp_path / "proj", str(tmp_path / "proj")))
    err = capsys.readouterr().err
    after = snapshot(tmp_path / "proj")
    assert {k: v for k, v in after.items() if k in before} == before, err
    if command != "eval":  # eval writes its report into the folder, beside what is there
        assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("spelling", [".", "../proj"])
def test_the_current_folder_as_out_loses_nothing(command, spelling, tmp_path, monkeypatch, capsys):
    before = user_folder(tmp_path / "proj")
    monkeypatch.chdir(tmp_path / "proj")
    code = main(fill(COMMANDS[command], tmp_path / "proj", spelling))
    err = capsys.readouterr().err
    assert {k: v for k, v in snapshot(tmp_path / "proj").items() if k in before} == before, err
    assert not [p.name for p in tmp_path.iterdir() if p.name != "proj"]  # nothing moved beside it
    if command != "eval":
        assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_dataset_folder_replaces_an_empty_folder_and_its_own_earlier_output(tmp_path):
    trace = Trace.from_dict(RECORD)
    empty = tmp_path / "empty"
    empty.mkdir()
    write_traces(empty, [trace])
    assert (empty / OUTPUT_MARKER).exists() and read_traces(empty) == [trace]
    write_traces(empty, [trace, Trace.from_dict({**RECORD, "id": "b"})])  # its own: replaced
    assert [t.id for t in read_traces(empty)] == ["a", "b"]
    (empty / "notes.txt").write_text("mine")  # a file the user put into it since: refused
    with pytest.raises(RecordError, match="notes.txt"):
        write_traces(empty, [trace])
    assert (empty / "notes.txt").read_text() == "mine"


def test_a_datasets_folder_not_written_by_prm_is_not_replaced(tmp_path):
    folder = tmp_path / "theirs"
    import datasets

    datasets.Dataset.from_list([{"x": 1}]).save_to_disk(str(folder))
    with pytest.raises(RecordError, match="other files"):
        check_output(folder)


def test_a_file_output_naming_a_folder_and_a_folder_output_naming_a_file_are_refused(tmp_path):
    (tmp_path / "out.jsonl").mkdir()
    with pytest.raises(RecordError, match="is a folder"):
        write_traces(tmp_path / "out.jsonl", [])
    (tmp_path / "plain").write_text("x")
    with pytest.raises(RecordError, match="is a file"):
        write_traces(tmp_path / "plain", [])
    assert (tmp_path / "plain").read_text() == "x"


# -- no output is an input (issue 27) ------------------------------------------------------------

SCORED = {**RECORD, "id": "s", "steps": [{"text": "2+3 = 5", "score": 0.9}, {"text": "The answer is 5", "score": 0.8}],
          "meta": {"gold_first_error": -1}}

# every command that writes, with its inputs named; OUT is set to each input in turn
OVER_INPUTS = {
    "check": (["check", "{in}", "{OUT}", "--checkers", "sympy", "--workers", "1", "--no-progress"], ["in"]),
    "score": (["score", "checker:sympy", "{in}", "{OUT}", "--threads", "1"], ["in"]),
    "convert": (["convert", "{in}", "{OUT}"], ["in"]),
    "merge": (["merge", "{OUT}", "{shard}", "--input", "{in}"], ["shard", "in"]),
    "annotate": (["annotate", "{in}", "{OUT}", "--completer", "tiny-gsm", "--n", "2", "--no-progress"], ["in"]),
    "search": (["search", "{in}", "{OUT}", "--strategy", "majority", "--budget", "2x", "--tokens-per-solution",
                "50", "--no-progress"], ["in"]),
    "consensus": (["consensus", "{OUT}", "mc={mc}", "judge={judge}"], ["mc", "judge"]),
    "consensus --disagreements": (["consensus", "{new}", "mc={mc}", "judge={judge}", "--disagreements", "{OUT}"],
                                  ["mc", "judge"]),
    "consensus --report": (["consensus", "{new}", "mc={mc}", "judge={judge}", "--report", "{OUT}"], ["mc", "judge"]),
    "select": (["select", "{pool}", "{OUT}", "--budget-rollouts", "10", "--strategy", "random", "--exclude", "{done}"],
               ["pool", "done"]),
    "import": (["import", "--from", "label-studio", "{export}", "{in}", "{OUT}"], ["export", "in"]),
    "eval": (["eval", "{scored}", "--out", "{OUT}"], ["scored"]),
    "eval --benchmark": (["eval", "--benchmark", "prmbench", "--scorer", "checker:sympy", "--data", "{prmbench}",
                          "--out", "{OUT}", "--threads", "1"], ["prmbench"]),
    "view": (["view", "{in}", "--out", "{OUT}"], ["in"]),
    "export": (["export", "--to", "label-studio", "{in}", "{OUT}"], ["in"]),
    "train": (["train", "{in}", "--backbone", "tiny-gsm", "--out", "{OUT}", "--eval", "{held}"], ["in", "held"]),
    "train --backbone": (["train", "{in}", "--backbone", "{model}", "--out", "{OUT}"], ["model"]),
    "check-report": (["check-report", "--out", "{OUT}", "--data", "{data}", "--parts", "c", "--limit", "1"], ["data"]),
    "demo": (["demo", "--quick", "--model", "{model}", "--out", "{OUT}"], ["model"]),
}


def inputs_folder(folder: Path) -> dict[str, Path]:
    """One file (or folder) per input slot, each a real input of its command."""
    folder.mkdir()
    line = json.dumps(RECORD) + "\n"
    paths = {name: folder / f"{name}.jsonl" for name in ("in", "shard", "mc", "judge", "pool", "done", "held")}
    for path in paths.values():
        path.write_text(line, encoding="utf-8")
    paths["done"].write_text(json.dumps({**RECORD, "id": "b"}) + "\n", encoding="utf-8")  # leaves "a" to select
    paths["scored"] = folder / "scored.jsonl"
    paths["scored"].write_text(json.dumps(SCORED) + "\n", encoding="utf-8")
    paths["export"] = folder / "export.json"
    paths["export"].write_text("[]\n", encoding="utf-8")  # no answer yet: a valid export
    paths["prmbench"] = folder / "prmbench.jsonl"
    paths["prmbench"].write_text(json.dumps(scored_prmbench_row("p1")) + "\n", encoding="utf-8")
    paths["model"] = folder / "model"
    paths["model"].mkdir()
    (paths["model"] / "config.json").write_text("{}\n")
    paths["data"] = folder / "data"
    (paths["data"] / "prmbench-train").mkdir(parents=True)
    paths["new"] = folder / "kept.jsonl"  # an output that is no input
    return paths


CASES = [(command, slot) for command, (_, slots) in OVER_INPUTS.items() for slot in slots]


@pytest.mark.parametrize("through", ["directly", "symlink"])
@pytest.mark.parametrize("command,slot", CASES, ids=[f"{c}:{s}" for c, s in CASES])
def test_an_output_that_is_one_of_the_inputs_is_refused_before_any_work(command, slot, through, tmp_path, capsys):
    paths = inputs_folder(tmp_path / "work")
    out = paths[slot]
    if through == "symlink":  # another name for the same input (same suffix, so only the input rule applies)
        out = tmp_path / f"link-{out.name}"
        out.symlink_to(paths[slot])
    before = snapshot(tmp_path)
    argv = [a.format(OUT=out, **paths) for a in OVER_INPUTS[command][0]]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "is also an input" in err, err
    assert snapshot(tmp_path) == before  # nothing written, nothing changed


def test_a_hard_link_to_the_input_is_the_input(tmp_path):
    from prm.io import refuse_output_over_inputs

    (tmp_path / "in.jsonl").write_text("x")
    (tmp_path / "other.jsonl").hardlink_to(tmp_path / "in.jsonl")
    with pytest.raises(RecordError, match="is also an input"):
        refuse_output_over_inputs(tmp_path / "other.jsonl", [tmp_path / "in.jsonl"])
    refuse_output_over_inputs(tmp_path / "new.jsonl", [tmp_path / "in.jsonl", None, "checker:sympy"])


def test_view_replaces_its_own_page_but_no_other_existing_file(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(RECORD) + "\n", encoding="utf-8")
    page = tmp_path / "in.html"
    assert main(["view", str(source)]) == 0 and page.exists()  # the default, IN.html
    assert main(["view", str(source), "--title", "again"]) == 0  # its own page: replaced
    assert "<title>again</title>" in page.read_text(encoding="utf-8")
    for name, text in [("mine.html", "<!DOCTYPE html><html><body>my notes</body></html>"),
                       ("notes.txt", "keep me\n"), ("other.jsonl", json.dumps(RECORD) + "\n")]:
        (tmp_path / name).write_text(text, encoding="utf-8")
        capsys.readouterr()
        assert main(["view", str(source), "--out", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert "not a page `prm view` wrote" in err and len(err.strip().splitlines()) == 1, err
        assert (tmp_path / name).read_text(encoding="utf-8") == text
    page.write_text("<!DOCTYPE html><p>mine now</p>", encoding="utf-8")  # the default name, but the user's
    assert main(["view", str(source)]) == 1 and page.read_text(encoding="utf-8") == "<!DOCTYPE html><p>mine now</p>"


@pytest.mark.parametrize("option", ["--disagreements", "--report"])
def test_consensus_refuses_two_of_its_outputs_on_one_file(option, tmp_path, capsys):
    paths = inputs_folder(tmp_path / "work")
    out = tmp_path / "kept.jsonl"
    assert main(["consensus", str(out), f"mc={paths['mc']}", f"judge={paths['judge']}", option, str(out)]) == 1
    err = capsys.readouterr().err
    assert "is also OUT" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
