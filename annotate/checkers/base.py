"""The one interface every step checker implements.

A checker looks at one step (with the problem and the steps before it for context) and
returns a `prm.records.Verdict`: verified, refuted, unknown, or unavailable, with the
evidence it used. Only `verified` is a pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from prm.records import Verdict


class Checker(ABC):
    """Verifies what a step claims. Subclasses set `name` and implement `check`."""

    name: str = "checker"

    @abstractmethod
    def check(self, problem: str, previous_steps: list[str], step: str) -> Verdict:
        """The verdict on `step`, never raising on untrusted text (bad text is `unknown`)."""

    def available(self) -> bool:
        """Whether the backend is installed here; if not, every verdict is `unavailable`."""
        return True
