"""The planner's answers to API calls made by running steps: `step()`, `static()`, ...

Each handler validates its arguments (a plan is user input) and changes the graph. Calls that
define things (`static`, `step`, `pool`) are recorded on the calling step, so that when that
step is skipped in a later build they are replayed and define the same things again.
"""

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import parse_resources
from ..errors import ConfigError, PlanError
from ..messages import Call, Reply
from ..paths import norm, parent, step_key
from . import graph_files
from .graph import INP_DIGEST, Step, StepStatus

if TYPE_CHECKING:
    from .core import PlannerCore

__all__ = ("BATCHED", "RECORDED", "calls_of", "handle_call", "on_call")

RECORDED = ("static", "step", "pool", "defer", "glob")
"""Methods whose calls are replayed when their caller is skipped."""
BATCHED = ("static", "step", "pool", "defer", "glob")
"""Methods a plan may send in a `batch` call (their answers are not needed)."""


def _str(args: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    value = args.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or value == "":
        raise PlanError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _paths(args: dict[str, Any], name: str) -> list[str]:
    value = args.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PlanError(f"{name} must be a list of paths, got {value!r}")
    return [norm(v) for v in value]


def _names(args: dict[str, Any], name: str) -> list[str]:
    value = args.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PlanError(f"{name} must be a list of names, got {value!r}")
    return list(value)


def call_static(planner: "PlannerCore", caller: str, args: dict[str, Any]) -> None:
    """Static paths; `trees` (StepUp 4's static folders) are folders among them whose
    contents become static once a step needs them (at once when `eager`)."""
    paths = _paths(args, "paths")
    trees = _paths(args, "trees")
    if not all(t.endswith("/") and t in paths for t in trees):
        raise PlanError(f"trees must be folders among the static paths, got {trees!r}")
    stats = args.get("stats")
    if not isinstance(stats, list) or len(stats) != len(paths):
        stats = [None] * len(paths)
    pairs = sorted(zip(paths, stats, strict=True), key=lambda pair: pair[0])
    folders: list[str] = []
    for path, stat in pairs:
        if isinstance(stat, list) and stat == ["missing"]:
            raise PlanError(f"missing static input: {path} (declared by {caller!r})")
        for folder in _parents(planner, path, paths):
            if folder not in folders:
                folders.append(folder)
    for folder in sorted(folders):
        planner.declare_static(folder, None)
    for path, stat in pairs:
        planner.declare_static(path, stat)
    eager = args.get("eager") is True
    new = [
        t for t in trees if planner.trees.get(t) is not True and (eager or t not in planner.trees)
    ]
    for tree in new:
        planner.trees[tree] = eager
    if new and eager:
        # Inputs already waiting under a new eager tree: static now.
        planner.undefer(list(planner.graph.files), lazy=False)


def _parents(planner: "PlannerCore", path: str, others: list[str]) -> list[str]:
    """The folders above a static path that are not static yet: static too, as the folder of
    an existing path exists (StepUp 4 asks for no static folders; StepUp 1.x did).

    A folder a step makes cannot hold a static path (StepUp refuses it). An absolute path
    needs no static folders above it: data outside the project, which path maps name on a
    cluster, is declared by its own path.
    """
    result = []
    folder = parent(path)
    while folder is not None and folder != "./" and not folder.startswith(("/", "../")):
        if folder in others:
            break
        node = planner.graph.files.get(folder)
        if node is not None and node.static:
            break
        if node is not None and node.producer is not None:
            raise PlanError(f"Static path has no static parent path node: {path}")
        result.append(folder)
        folder = parent(folder)
    return result


def call_step(planner: "PlannerCore", caller: str, args: dict[str, Any]) -> str:
    command = _str(args, "command")
    workdir = norm(_str(args, "workdir"))
    if not workdir.endswith("/"):
        workdir += "/"
    inp, out, vol = _paths(args, "inp"), _paths(args, "out"), _paths(args, "vol")
    env = _names(args, "env")
    pool = _str(args, "pool", optional=True)
    key = step_key(command, workdir)
    if pool is not None and not planner.has_pool(pool):
        raise PlanError(
            f"step {key!r} uses undefined pool {pool!r}: define it with pool() in the plan, "
            f"or as a cluster pool with `stepup-dist pool set {pool} SIZE`"
        )
    resources = args.get("resources") or {}
    if isinstance(resources, str):
        try:
            resources = parse_resources(resources, bare=True)
        except ConfigError as exc:
            raise PlanError(f"step {key!r}: {exc}") from None
    if not isinstance(resources, dict) or not all(
        isinstance(name, str)
        and name
        and ":" not in name
        and "," not in name
        and "=" not in name
        and type(units) is int
        and units >= 1
        for name, units in resources.items()
    ):
        raise PlanError(
            f"step {key!r}: resources must be NAME:UNITS with UNITS >= 1, got {resources!r}"
        )
    step = Step(key, command, workdir, inp, out, vol, env, pool, caller, resources)
    step.optional = args.get("optional") is True
    step.env_overrides = _overrides(args, key, env)
    step.duration = _duration(args, key)
    planner.declare_step(step)
    return key


def _overrides(args: dict[str, Any], key: str, env: list[str]) -> dict[str, str]:
    """StepUp 4's `env_overrides`: values of variables for the command only."""
    value = args.get("env_overrides") or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise PlanError(f"step {key!r}: env_overrides must map names to strings, got {value!r}")
    both = sorted(set(value) & set(env))
    if both:
        raise PlanError(f"step {key!r}: {', '.join(both)} both in env and in env_overrides")
    return dict(value)


def _duration(args: dict[str, Any], key: str) -> float | None:
    """StepUp 4's `duration=` hint, in seconds (None when not given)."""
    value = args.get("duration")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise PlanError(f"step {key!r}: duration must be a number of seconds >= 0, got {value!r}")
    return float(value)


def call_glob(planner: "PlannerCore", caller: str, args: dict[str, Any]) -> None:
    """A glob and what it matched: recorded on the caller, which runs again when that changes
    (skipping.globs_unchanged)."""
    _paths(args, "patterns")
    _paths(args, "matches")
    subs = args.get("subs", {})
    if not isinstance(subs, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in subs.items()
    ):
        raise PlanError(f"subs must map names to patterns, got {subs!r}")
    if not isinstance(args.get("zero_dirs", False), bool):
        raise PlanError(f"zero_dirs must be true or false, got {args['zero_dirs']!r}")


def call_defer(planner: "PlannerCore", caller: str, args: dict[str, Any]) -> None:
    """A deferred glob: inputs that match it and that no step makes become static when used."""
    patterns = _paths(args, "patterns")
    for pattern in patterns:
        if "${*" in pattern:
            raise PlanError(f"Named wildcards are not supported in deferred globs: {pattern}")
    planner.defer(patterns)


def call_pool(planner: "PlannerCore", caller: str, args: dict[str, Any]) -> None:
    name = _str(args, "name")
    size = args.get("size")
    if type(size) is not int or size < 1:
        raise PlanError(f"pool {name!r}: size must be a positive integer, got {size!r}")
    planner.pools[name] = size


def call_amend(planner: "PlannerCore", caller: str, args: dict[str, Any]) -> bool:
    return planner.amend(
        caller, _paths(args, "inp"), _paths(args, "out"), _paths(args, "vol"), _names(args, "env")
    )


def call_info(planner: "PlannerCore", caller: str, args: dict[str, Any]) -> dict[str, Any]:
    """StepUp 4's `get_info()`: the calling step as it was defined (not what it amended, nor
    the folders of its outputs, which the graph adds to its inputs)."""
    step = planner.graph.steps[caller]
    inp, out, vol, env = step.declared
    return {
        "key": step.key,
        "command": step.command,
        "workdir": step.workdir,
        "inp": list(inp),
        "env": list(env),
        "out": list(out),
        "vol": list(vol),
    }


def call_graph(planner: "PlannerCore", caller: str, args: dict[str, Any]) -> None:
    """StepUp 4's `graph(prefix)`: write PREFIX.txt, PREFIX_dependency.dot and
    PREFIX_provenance.dot (relative to the root) of the graph as it is now."""
    prefix = _str(args, "prefix")
    try:
        graph_files.write(planner.root / prefix, graph_files.of_graph(planner.graph))
    except OSError as exc:
        raise PlanError(f"graph({prefix!r}): cannot write: {exc}") from None


def call_getenv(planner: "PlannerCore", caller: str, args: dict[str, Any]) -> str | None:
    name = _str(args, "name")
    planner.amend(caller, [], [], [], [name])
    # The calling step's process sees its own env_overrides (`VAR=value ./plan.py`) over
    # the build's environment, and StepUp 4's getenv() reads that process's environment.
    step = planner.graph.steps.get(caller)
    overrides = step.env_overrides if step is not None else {}
    value = overrides.get(name, planner.environ.get(name))
    if name == INP_DIGEST and step is not None and step.inp_digest:
        value = step.inp_digest
    default = args.get("default")
    return value if value is not None else default


_HANDLERS: dict[str, Callable[["PlannerCore", str, dict[str, Any]], Any]] = {
    "static": call_static,
    "step": call_step,
    "pool": call_pool,
    "amend": call_amend,
    "getenv": call_getenv,
    "info": call_info,
    "graph": call_graph,
    "defer": call_defer,
    "glob": call_glob,
}


def calls_of(method: str, args: Any) -> list[tuple[str, Any]]:
    """The calls one `Call` message carries: itself, or those of a batch, in order."""
    if method != "batch":
        return [(method, args)]
    calls = args.get("calls") if isinstance(args, dict) else None
    if not isinstance(calls, list) or not all(
        isinstance(c, list) and len(c) == 2 and c[0] in BATCHED for c in calls
    ):
        raise PlanError(f"a batch must list [method, arguments] pairs of {', '.join(BATCHED)}")
    return [(c[0], c[1]) for c in calls]


def handle_call(planner: "PlannerCore", caller: str, method: str, args: dict[str, Any]) -> Any:
    """Run one call; raise PlanError for a bad one."""
    handler = _HANDLERS.get(method)
    if handler is None:
        raise PlanError(f"unknown API call {method!r}")
    if not isinstance(args, dict):
        raise PlanError(f"arguments of {method}() must be a map")
    return handler(planner, caller, args)


def on_call(p: "PlannerCore", call: Call) -> None:
    """An API call message: run its calls (a batch's in order, up to the first bad one),
    record those a skipped caller must replay, and answer it."""
    step = p.graph.steps.get(call.step)
    try:
        if step is None or step.status is not StepStatus.QUEUED:
            raise PlanError(f"{call.method}() called by {call.step!r}, which is not running")
        p.store.called(call.step)  # its report alone would not say what it did (adopt.py)
        value = None
        for method, args in calls_of(call.method, call.args):
            value = handle_call(p, call.step, method, args)
            if method in RECORDED:
                step.calls.append([method, args])
    except PlanError as exc:
        p.plan_error(str(exc))
        p.broker.reply(call.reply_to, Reply(ok=False, error=str(exc)))
        return
    p.broker.reply(call.reply_to, Reply(ok=True, value=value))
