"""The folder list is the architecture: which package may import which (read from the code).

- `broker/` (the Redis edge) imports no domain package;
- the shared vocabulary (modules right under `stepup_dist/`) imports no subpackage but
  `broker/` for nothing at all: it is what every process shares;
- the process packages import one way: `cli/` may use `planner/`, `broker/` and
  `dashboard/`; `planner/`, `worker/` and `dashboard/` use none of the other processes.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "stepup_dist"
SUBPACKAGES = ("broker", "planner", "worker", "cli", "dashboard")
MAY_IMPORT = {
    "shared": set(),
    "plan": {"broker"},
    "broker": set(),
    "planner": set(),
    "worker": {"broker"},
    "dashboard": {"broker"},
    "cli": {"broker", "planner", "dashboard"},
}
"""Subpackages each part may import, besides itself and the shared vocabulary."""
PLAN_MODULES = ("api", "api_tools", "call", "extapi", "render_jinja", "script")
"""Top-level modules that run in a step's process and call its planner."""


def _part(module: str) -> str:
    """`stepup_dist.planner.loop` -> `planner`; `stepup_dist.config` -> `shared`; the plan
    API and the script protocols, which run in a plan's (or a step's) own process and reach
    its planner, -> `plan`."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    if parts[1:2] and parts[1] in PLAN_MODULES:
        return "plan"
    return "shared"


def wrong_imports(module: str, imports: list[str]) -> list[str]:
    """The imports of `module` that point the wrong way."""
    part = _part(module)
    allowed = MAY_IMPORT[part] | {part, "shared"}
    return [name for name in imports if _part(name) not in allowed]


def _imports(path: Path) -> list[str]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    here = list(rel.parts)
    # The package a relative import starts from: `stepup_dist.worker` for worker/serve.py
    # and for worker/__init__.py alike (whose last part is `__init__`, not a package).
    package = here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            found += names
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [name for name in found if name.startswith("stepup_dist")]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_shim" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path: Path) -> None:
    rel = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    wrong = wrong_imports(rel, _imports(path))
    assert not wrong, f"{rel} ({_part(rel)}) imports {wrong}"


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("stepup_dist.broker.keys", "stepup_dist.planner.loop"),
        ("stepup_dist.broker.broker", "stepup_dist.worker.serve"),
        ("stepup_dist.broker.census", "stepup_dist.cli.status_line"),
        ("stepup_dist.planner.loop", "stepup_dist.cli.console"),
        ("stepup_dist.worker.serve", "stepup_dist.cli.commands"),
        ("stepup_dist.config", "stepup_dist.broker.keys"),
        ("stepup_dist.dashboard.source", "stepup_dist.cli.admin"),
        ("stepup_dist.varfiles", "stepup_dist.api_tools"),
    ],
)
def test_a_wrong_arrow_is_caught(module: str, imported: str) -> None:
    assert wrong_imports(module, [imported]) == [imported]


def test_relative_imports_are_read(tmp_path: Path) -> None:
    found = _imports(PACKAGE / "planner" / "loop.py")
    assert "stepup_dist.planner.graph" in found
    assert "stepup_dist.errors" in found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import one another, directly or round about (each a
    strongly connected component of more than one module), sorted."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return sorted(found)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports, a package's `__init__.py` as the package itself
    (`from . import perform` in a module of worker/ points at `stepup_dist.worker`)."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in _modules()}
    modules = {name.removesuffix(".__init__"): path for name, path in modules.items()}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            module = imported  # `pkg.mod.Name` -> `pkg.mod`
            while module and module not in modules:
                module = module.rpartition(".")[0]
            if module and module != name:
                targets.add(module)
        graph[name] = targets
    return graph


def test_no_module_imports_one_that_imports_it_back() -> None:
    """Imports under TYPE_CHECKING and inside functions count, and so do package
    `__init__` files: the planner's helpers see it as `planner/core.py`'s PlannerCore,
    never as loop.Planner; worker/step_worker.py takes `perform` from vetting.py, not from
    the package whose `main` imports it back through serve.py."""
    assert circles(import_graph()) == []


def test_a_package_init_is_a_module_of_the_graph() -> None:
    graph = import_graph()
    # worker/__init__.py's relative imports, the lazy one in main() included.
    assert {"stepup_dist.worker.serve", "stepup_dist.worker.vetting"} <= graph["stepup_dist.worker"]
    found = _imports(PACKAGE / "worker" / "__init__.py")
    assert "stepup_dist.worker.serve" in found


def test_a_circle_through_a_package_init_is_caught() -> None:
    graph = {"pkg": {"pkg.serve"}, "pkg.serve": {"pkg.step"}, "pkg.step": {"pkg"}}
    assert circles(graph) == [["pkg", "pkg.serve", "pkg.step"]]


def test_a_circle_is_caught() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
