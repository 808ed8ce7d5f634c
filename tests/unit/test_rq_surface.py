"""RQ at arm's length: every name of RQ that worker/step_worker.py overrides or reads exists
in the installed RQ, and none of the names it adds does.

`step_worker.RQ_SURFACE` and `RQ_OWN` list them; the first test reads the module's code to
check that the lists name everything its two classes touch, the second checks the lists
against RQ in a process of its own (RQ takes its key prefix once per process, at import).
pyproject.toml pins `rq` to the versions this passed on.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import stepup_dist

SOURCE = Path(stepup_dist.__file__).parent / "worker" / "step_worker.py"
BASES = {"StepJob": "rq.job.Job", "StepWorker": "rq.worker.SimpleWorker"}
"""Our classes and the RQ class each extends."""
RECEIVERS = {"job": "rq.job.Job", "queue": "rq.queue.Queue", "execution": "rq.executions.Execution"}
"""What the parameters of StepWorker's methods with these names are."""


def _lists() -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    tree = ast.parse(SOURCE.read_text())
    found = {}
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id in ("RQ_SURFACE", "RQ_OWN")
        ):
            found[node.target.id] = ast.literal_eval(node.value)  # type: ignore[arg-type]
    return found["RQ_SURFACE"], found["RQ_OWN"]


def _dotted(node: ast.expr) -> str:
    """`rq.job` for the expression `rq.job`; "" for anything but names and attributes."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def touched() -> dict[str, set[str]]:
    """The names of RQ objects that step_worker.py's classes use, read from its code:
    methods and class attributes they define, `self.X` and `super().X`, `job.X`, `queue.X`
    and `execution.X`, and `Name.X` of names imported from rq."""
    tree = ast.parse(SOURCE.read_text())
    from_rq = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rq"):
            for alias in node.names:
                from_rq[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    used: dict[str, set[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name not in BASES:
            continue
        base = BASES[node.name]
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                used.setdefault(base, set()).add(item.name)
            elif isinstance(item, ast.Assign):
                for target in item.targets:
                    if isinstance(target, ast.Name):
                        used.setdefault(base, set()).add(target.id)
        for sub in ast.walk(node):
            if not isinstance(sub, ast.Attribute):
                continue
            value = sub.value
            owner = None
            is_self = isinstance(value, ast.Name) and value.id == "self"
            if is_self or (
                isinstance(value, ast.Call) and getattr(value.func, "id", None) == "super"
            ):
                owner = base
            elif isinstance(value, ast.Name) and value.id in RECEIVERS:
                owner = RECEIVERS[value.id]
            elif isinstance(value, ast.Name) and value.id in from_rq:
                owner = from_rq[value.id]
            elif _dotted(value).split(".")[0] == "rq":  # rq.exceptions.DeserializationError
                owner = _dotted(value)
            if owner is not None:
                used.setdefault(owner, set()).add(sub.attr)
    for where in from_rq.values():
        module, _, attr = where.rpartition(".")
        used.setdefault(module, set()).add(attr)
    return used


def test_the_lists_name_everything_the_classes_touch() -> None:
    surface, own = _lists()
    for owner, names in touched().items():
        listed = set(surface.get(owner, ())) | set(own.get(owner, ()))
        assert names - listed == set(), f"{owner}: list these in RQ_SURFACE or RQ_OWN"
    for owner, names in own.items():
        assert not set(names) & set(surface.get(owner, ())), owner


_CHECK = """
import inspect, json, re, sys
from importlib import import_module

from stepup_dist.broker.keys import Keys
from stepup_dist.broker.queue import load_rq

rq = load_rq(Keys("surface"))
from stepup_dist.worker import step_worker  # defines its classes against the installed RQ


def resolve(dotted):
    try:
        return import_module(dotted)
    except ImportError:
        module, _, name = dotted.rpartition(".")
        return getattr(import_module(module), name)


def init_sets(obj, name):
    # An instance attribute: set in the __init__ of a class RQ defines in its MRO.
    pattern = re.compile(rf"self\\.{re.escape(name)}\\s*(:[^=\\n]*)?=[^=]")
    return inspect.isclass(obj) and any(
        "__init__" in vars(cls) and pattern.search(inspect.getsource(vars(cls)["__init__"]))
        for cls in obj.__mro__
        if cls.__module__.startswith("rq")
    )


missing = [
    f"{dotted}.{name}"
    for dotted, names in step_worker.RQ_SURFACE.items()
    for name in names
    if not (hasattr(resolve(dotted), name) or init_sets(resolve(dotted), name))
]
clashing = [
    f"{dotted}.{name}"
    for dotted, names in step_worker.RQ_OWN.items()
    for name in names
    if hasattr(resolve(dotted), name) or init_sets(resolve(dotted), name)
]
print(json.dumps({"version": rq.__version__, "missing": missing, "clashing": clashing}))
"""


def test_every_name_exists_in_the_installed_rq_and_none_of_ours_does() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CHECK],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["missing"] == [], f"rq {found['version']} lacks {found['missing']}"
    assert found["clashing"] == [], f"rq {found['version']} has {found['clashing']} already"


def test_a_missing_name_is_caught() -> None:
    """The check itself: a name RQ never had is reported."""
    check = _CHECK.replace(
        "for dotted, names in step_worker.RQ_SURFACE.items()",
        "for dotted, names in {**step_worker.RQ_SURFACE, 'rq.job.Job': ('no_such_name',)}.items()",
    )
    proc = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["missing"] == ["rq.job.Job.no_such_name"]
