"""The build graph as files, with StepUp 4's names: `PREFIX.txt` (each step with its
paths), `PREFIX_dependency.dot` (step -> step that uses its output) and
`PREFIX_provenance.dot` (file -> step -> file, and creator -> step dashed).

Three places write them, from one description of the steps (`StepView`): a plan's
`graph(prefix)` and the watch mode's `g` key (`graph.txt`), from the planner's live graph
(`of_graph`), and `stepup-dist graph`, from the records of the last build.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .graph import Graph

__all__ = ("StepView", "dependency_dot", "of_graph", "provenance_dot", "text", "write")


@dataclass(frozen=True)
class StepView:
    key: str
    workdir: str
    state: str
    """What is known of it: its status in a live graph (`succeeded`), or `took 0.12 s`."""
    creator: str | None
    inp: list[str]
    out: list[str]
    """Outputs, volatile and amended ones included."""
    env: list[str]


def of_graph(graph: Graph) -> list[StepView]:
    return [
        StepView(
            key,
            step.workdir,
            step.status.value,
            step.creator,
            list(step.inp),
            [*step.out, *step.vol],
            list(step.env),
        )
        for key, step in sorted(graph.steps.items())
    ]


def text(steps: Iterable[StepView]) -> str:
    lines = []
    for s in steps:
        lines.append(f"step {s.key}")
        lines.append(f"    workdir {s.workdir}; {s.state}")
        if s.creator is not None:
            lines.append(f"    created by {s.creator}")
        for word, items in (("inp", s.inp), ("out", s.out), ("env", s.env)):
            lines.extend(f"    {word} {item}" for item in items)
        lines.append("")
    return "\n".join(lines) + "\n"


def dependency_dot(steps: Iterable[StepView]) -> str:
    steps = list(steps)
    producer = {path: s.key for s in steps for path in s.out}
    lines = ["digraph dependency {", "  rankdir=LR;", "  node [shape=box];"]
    for s in steps:
        lines.append(f"  {_q(s.key)};")
        lines.extend(f"  {_q(producer[p])} -> {_q(s.key)};" for p in s.inp if p in producer)
    return "\n".join([*lines, "}"]) + "\n"


def provenance_dot(steps: Iterable[StepView]) -> str:
    lines = ["digraph provenance {", "  rankdir=LR;"]
    for s in steps:
        if s.creator is not None:
            lines.append(f"  {_q(s.creator)} -> {_q(s.key)} [style=dashed];")
        lines.append(f"  {_q(s.key)} [shape=box];")
        lines.extend(f"  {_q(path)} -> {_q(s.key)};" for path in s.inp)
        lines.extend(f"  {_q(s.key)} -> {_q(path)};" for path in s.out)
    return "\n".join([*lines, "}"]) + "\n"


def write(prefix: Path, steps: Iterable[StepView]) -> list[Path]:
    """Write the three files next to `prefix` (its folders made); the paths written."""
    steps = list(steps)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, body in (
        (".txt", text(steps)),
        ("_dependency.dot", dependency_dot(steps)),
        ("_provenance.dot", provenance_dot(steps)),
    ):
        path = prefix.with_name(prefix.name + suffix)
        path.write_text(body)
        written.append(path)
    return written


def _q(name: str) -> str:
    return json.dumps(name)
