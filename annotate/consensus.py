"""Consensus of label sources (`prm consensus`): keep a trace only where its sources agree
on the first error.

Qwen's "The Lessons of Developing Process Reward Models in Mathematical Reasoning" (arXiv
2501.07301) labels each trace with Monte Carlo rollouts and with an LLM judge and trains only
on the traces where both put the first error at the same step (about 40% kept; the hard
labels of the kept traces then beat soft Monte Carlo labels). Here a source is a file of
labelled traces and a way to read its first error (`prm.agreement.first_error_of`): the
labels of an annotation run (`mc`, `binary`, `judge`, any name), `checker[:sympy,z3]`
(the refuted steps of `prm check` verdicts) or `gold`. The same file may serve several
sources (e.g. `mc=checked.jsonl checker:sympy=checked.jsonl`).

A trace is kept when every source has it and all of them tell the same first error; it is
written as the first source holds it (its labels and evidence), with the judge's judgement
copied from another source if the first has none, and `meta["consensus"]` listing each
source's first error. Every other trace goes to the disagreements (for review), with the
same meta. `ConsensusReport` counts what was kept and, for each pair of sources, how many
traces they agree on and the agreement matrix. `prm check --consensus-filter` is the special
case "labels and checkers of one file" (`annotate.checkers.combine.consensus_filter`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from prm.agreement import agreement_lines, agreement_matrix, first_errors
from prm.records import Trace


@dataclass
class ConsensusReport:
    """What `consensus` did. traces: ids in the first source; kept / disagreed / missing:
    counts; pair_kept: for each pair "a|b", the traces on which those two agree; matrix:
    `prm.agreement.agreement_matrix` of the sources."""

    sources: list[str]
    traces: int = 0
    kept: int = 0
    disagreed: int = 0
    unknown: int = 0  # disagreed because a source cannot tell the first error (unknown labels)
    missing: dict[str, int] = field(default_factory=dict)  # traces of the first source absent from another
    pair_kept: dict[str, int] = field(default_factory=dict)
    matrix: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def text(self) -> str:
        share = self.kept / self.traces if self.traces else 0.0
        lines = [f"consensus of {', '.join(self.sources)}: kept {self.kept} of {self.traces} trace(s) ({share:.0%}); "
                 f"{self.disagreed} disagree ({self.unknown} because a source cannot tell the first error)"]
        for name, count in self.missing.items():
            if count:
                lines.append(f"{count} trace(s) missing from {name} (counted as disagreements)")
        lines += ["", "traces two sources agree on:"]
        lines += [f"  {pair.replace('|', ' & ')}: {count}" for pair, count in self.pair_kept.items()]
        lines += ["", "agreement matrix (same first error / traces both can tell):", *agreement_lines(self.matrix)]
        return "\n".join(lines)


def consensus(sources: dict[str, list[Trace]]) -> tuple[list[Trace], list[Trace], ConsensusReport]:
    """(kept, disagreements, report) for `sources` (name -> traces; at least two). Traces are
    matched by id, in the first source's order."""
    if len(sources) < 2:
        raise ValueError("a consensus needs at least two sources")
    names = list(sources)
    errors = {name: first_errors(traces, name) for name, traces in sources.items()}
    by_id = {name: {t.id: t for t in traces} for name, traces in sources.items()}
    matrix = agreement_matrix(errors)
    report = ConsensusReport(sources=names, matrix=matrix, missing={name: 0 for name in names[1:]},
                             pair_kept={key: entry["agree"] for key, entry in matrix["pairs"].items()})
    kept, disagreements = [], []
    for trace in sources[names[0]]:
        report.traces += 1
        found = {name: errors[name].get(trace.id) for name in names}
        absent = [name for name in names[1:] if trace.id not in by_id[name]]
        for name in absent:
            report.missing[name] += 1
        out = copy.deepcopy(trace)
        if out.judgement is None:
            donor = next((by_id[n][trace.id].judgement for n in names[1:]
                          if trace.id in by_id[n] and by_id[n][trace.id].judgement is not None), None)
            out.judgement = copy.deepcopy(donor)
        agreed = not absent and None not in found.values() and len(set(found.values())) == 1
        out.meta["consensus"] = {"sources": {n: (None if n in absent else found[n]) for n in names},
                                 "agreed": agreed}
        if agreed:
            kept.append(out)
        else:
            report.unknown += not absent and None in found.values()
            disagreements.append(out)
    report.kept, report.disagreed = len(kept), len(disagreements)
    return kept, disagreements, report
