"""Model-written Lean code: what the filter lets through to Lean, and the limits Lean runs
under. No Lean is needed: the filter is plain text processing, and the limits are checked on
real child processes (tests/test_checkers_lean.py checks them on the REPL process)."""

import resource
import sys

import pytest

from annotate.checkers.lean_filter import Refused, resource_limits, strip_comments, vet

ALLOWED = [
    "theorem two_add_two : 2 + 2 = 4 := rfl",
    "example (x : ℝ) (h : 2 * x + 1 = 7) : x = 3 := by linarith",
    "import Mathlib.Tactic\ntheorem t (a b : ℕ) : a + b = b + a := by omega",
    "import Mathlib\nopen Real\n\nlemma l (x : ℝ) (hx : 0 ≤ x) : Real.sqrt (x ^ 2) = x := by\n"
    "  rw [Real.sqrt_sq hx]",
    "@[simp] theorem t : 1 = 1 := by\n  rfl",
    "noncomputable def f (x : ℝ) : ℝ := x ^ 2\nlemma g : f 2 = 4 := by\n  unfold f\n  norm_num",
    "set_option linter.unusedVariables false in\ntheorem t (h : 1 = 1) : True := trivial",
    "namespace Step\nvariable (n : ℕ)\ntheorem t : n + 0 = n := by simp\nend Step",
]

REFUSED = [
    ("#eval 48 / 2", "#"),
    ("#exit", "#"),
    ("theorem t : True := trivial\n#print axioms t", "#"),
    ("import Lean\ntheorem t : 1 = 1 := rfl", "import of Lean"),
    ("import Mathlib\nimport Mycorp.Backdoor\ntheorem t : 1 = 1 := rfl", "import of Mycorp"),
    ("theorem t : 1 = 1 := rfl\nimport Mathlib", "'import'"),
    ('def f : IO Unit := IO.println "x"', "string"),
    ("def f : IO Unit := pure ()", "'IO'"),
    ("run_cmd Lean.logInfo 1", "'run_cmd'"),
    ("theorem t : True := by run_tac pure ()", "'run_tac'"),
    ("open Lean in\ntheorem t : True := trivial", "open ... in"),
    ("set_option maxHeartbeats 0 in\ntheorem t : True := trivial", "maxHeartbeats"),
    ("set_option maxRecDepth 100000", "maxRecDepth"),
    ("@[extern c_system] opaque f : Nat → Nat", "@[extern c_system]"),
    ("@[implemented_by g] def f : Nat := 1", "implemented_by"),
    ("unsafe def f : Nat := 1", "'unsafe'"),
    ("theorem t : True := by exact unsafeBaseIO (pure trivial)", "unsafeBaseIO"),
    ("macro x:term : term => pure x", "'macro'"),
    ("theorem t : True := trivial\nsyntax foo : term", "'syntax'"),
    ("elab foo : tactic => pure ()", "'elab'"),
    ("theorem t : 2 ^ 64 = 18446744073709551616 := by native_decide", "native_decide"),
    ("theorem t : True := trivial initialize pure ()", "'initialize'"),
    ("theorem t : True := trivial attribute [simp] t", "'attribute'"),
    ("instance : Inhabited Nat := ⟨1⟩", "'instance'"),
    ("theorem t : True := by exact (by_elab pure trivial)", "'by_elab'"),
    ("theorem t :\nTrue := trivial", "'True' is not an allowed command"),  # a hidden command
    ("def f := `(1)", "quotations"),
    ("def «run» := 1", "«»"),
    ("/- never closed\ntheorem t : True := trivial", "not closed"),
]


@pytest.mark.parametrize("code", ALLOWED)
def test_what_a_proof_needs_passes(code):
    assert vet(code) == strip_comments(code).strip()


@pytest.mark.parametrize("code, reason", REFUSED, ids=[c for c, _ in REFUSED])
def test_escapes_are_refused_with_the_reason(code, reason):
    with pytest.raises(Refused) as caught:
        vet(code)
    assert reason in str(caught.value), str(caught.value)


def test_comments_are_removed_and_hide_nothing():
    code = "-- #eval here is a comment\ntheorem t : 1 = 1 := /- IO /- nested -/ -/ rfl"
    assert vet(code) == "theorem t : 1 = 1 :=  rfl"
    with pytest.raises(Refused):  # a command after a comment closes is still seen
        vet("/- a -/ #eval 1")


def test_resource_limits_cap_cpu_time_and_memory_of_a_child():
    import subprocess

    probe = ("import resource; print(resource.getrlimit(resource.RLIMIT_CPU)[0], "
             "resource.getrlimit(resource.RLIMIT_DATA)[0])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          preexec_fn=resource_limits(1024, 7), check=True)
    assert done.stdout.split() == ["7", str(1024 * 1024 * 1024)]
    # the parent is untouched
    assert resource.getrlimit(resource.RLIMIT_CPU)[0] != 7
    # a child that tries to allocate more than its limit fails instead of exhausting the machine
    hog = subprocess.run([sys.executable, "-c", "x = bytearray(3 * 1024 ** 3)"],
                         capture_output=True, text=True, preexec_fn=resource_limits(1024, 30))
    assert hog.returncode != 0 and "MemoryError" in hog.stderr
