"""Every command a Lua script calls is granted to every role that runs the script.

A command refused inside a script ends the script half done (a release that took the slot
back but woke nobody), and a caller that swallows the error hides it: this reads the
scripts, so a new command in a script fails here before it fails on a cluster.
`tests/integration/test_roles.py` checks the code paths, against a real server.
"""

import re
from importlib.resources import files
from pathlib import Path

import pytest

from stepup_dist.broker.acl import ROLES, SCRIPTS

LUA = files("stepup_dist.broker") / "lua"
CALL = re.compile(r"""redis\.p?call\(\s*['"]([A-Za-z]+)['"]""")


def commands(script: str) -> set[str]:
    return {name.lower() for name in CALL.findall((LUA / f"{script}.lua").read_text())}


def test_every_script_has_its_roles() -> None:
    shipped = {
        path.name.removesuffix(".lua") for path in LUA.iterdir() if path.name.endswith(".lua")
    }
    assert shipped == set(SCRIPTS)


def test_commands_are_found() -> None:
    assert {"zrem", "zcount", "hlen", "zrange", "time"} <= commands("release")


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_roles_grant_what_the_script_calls(script: str) -> None:
    for role in {*SCRIPTS[script], "admin"}:
        missing = commands(script) - set(ROLES[role])
        assert not missing, f"{script}.lua calls {sorted(missing)}, which role {role} lacks"
    for role in SCRIPTS[script]:
        # Scripts run through EVALSHA, and SCRIPT LOAD when the server lost them.
        assert {"evalsha", "eval", "script|load"} <= set(ROLES[role])


def test_a_missing_command_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = tuple(c for c in ROLES["worker"] if c != "zcount")
    monkeypatch.setitem(ROLES, "worker", worker)
    with pytest.raises(AssertionError, match=r"release.lua calls \['zcount'\]"):
        test_roles_grant_what_the_script_calls("release")


def documented() -> dict[str, set[str]]:
    """Each role's commands as the table in docs/security.md lists them."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    table = text.split("## The roles and their commands", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {"planner": set(), "worker": set(), "admin": set()}
    for row in table.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = {n.replace("\\|", "|") for n in re.findall(r"`([^`]+)`", cells[0])}
        for role in cells[1].split(", "):
            listed[role] |= names
    listed["admin"] |= listed["planner"] | listed["worker"]
    return listed


def test_the_docs_list_each_roles_commands() -> None:
    listed = documented()
    for role in ("planner", "worker", "admin"):
        assert listed[role] == set(ROLES[role]), (
            f"docs/security.md, role {role}: not listed {sorted(set(ROLES[role]) - listed[role])}"
            f", not granted {sorted(listed[role] - set(ROLES[role]))}"
        )
