"""StepUp 4's composite plan functions (stepup_dist.api_tools): the steps they define.

The calls go to a recorder in place of the planner (tests/integration/test_stepup4_tools.py
runs the same functions in real builds); paths are those a step at the root sends.
"""

import json
import os
import pathlib
import shlex
from typing import Any

import pytest
import yaml

from stepup_dist import api
from stepup_dist.api import PathError, StepUpError
from stepup_dist.api_tools import call, dumpns, loadns, render_jinja, script


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def send(self, method: str, **args: Any) -> None:
        self.calls.append((method, args))

    def call(self, method: str, **args: Any) -> Any:
        self.calls.append((method, args))
        return args.get("default") if method == "getenv" else True

    def steps(self) -> list[dict[str, Any]]:
        return [args for method, args in self.calls if method == "step"]

    def amends(self) -> list[dict[str, Any]]:
        return [args for method, args in self.calls if method == "amend"]


@pytest.fixture
def planner(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(api._CLIENT, "active", True)
    # The plan's dialect (api._is_v4) starts as StepUp 1's in every test.
    monkeypatch.setattr(api._DIALECT, "v4", False)
    monkeypatch.setattr(api._CLIENT, "send", recorder.send)
    monkeypatch.setattr(api._CLIENT, "call", recorder.call)
    monkeypatch.setenv("HERE", ".")
    monkeypatch.chdir(tmp_path)
    return recorder


def _argv(command: str) -> list[str]:
    return shlex.split(command)


def test_call_passes_arguments_as_json_on_the_command_line(planner: Recorder) -> None:
    info = call("./work.py", "run", inp="data.txt", out=["result.txt"], price="$out", n=(1, 2))
    (sent,) = planner.steps()
    argv = _argv(sent["command"])
    assert argv[:2] == ["./work.py", "run"]
    assert json.loads(argv[2]) == {
        "price": "$out",
        "n": [1, 2],
        "inp": ["data.txt"],
        "out": ["result.txt"],
    }
    assert sent["inp"] == ["work.py", "data.txt"]
    assert sent["out"] == ["result.txt"]
    assert sent["workdir"] == "./"
    assert info.key == sent["command"]


def test_call_in_a_workdir_with_a_spaced_name(planner: Recorder) -> None:
    call("./my work.py", "go", workdir="sub", out="o.txt")
    (sent,) = planner.steps()
    assert _argv(sent["command"])[:2] == ["./my work.py", "go"]
    assert sent["workdir"] == "sub/"
    assert sent["inp"] == ["sub/my work.py"]
    assert sent["out"] == ["sub/o.txt"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_call_with_an_args_file_writes_it_and_names_it(
    planner: Recorder, tmp_path: pathlib.Path, suffix: str
) -> None:
    (tmp_path / "sub").mkdir()
    call("./work.py", "run", workdir="sub", inp="a.txt", args_file=f"args{suffix}", k=1)
    written = (tmp_path / f"sub/args{suffix}").read_text()
    data = json.loads(written) if suffix == ".json" else yaml.safe_load(written)
    assert data == {"k": 1, "inp": ["a.txt"]}
    # The caller makes the file (an amended output); the called step reads it.
    assert planner.amends()[0]["out"] == [f"sub/args{suffix}"]
    (sent,) = planner.steps()
    assert sent["command"] == f"./work.py run --inp=args{suffix}"
    assert sent["inp"] == ["sub/work.py", "sub/a.txt", f"sub/args{suffix}"]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("work.py", "run"), {}, PathError, "path separator"),
        (("/abs/work.py", "run"), {}, PathError, "absolute"),
        (("./work.py", "not-a-name"), {}, StepUpError, "valid Python function name"),
        (("./work.py", "class"), {}, StepUpError, "valid Python function name"),
        (("./work.py", "run"), {"optional": True, "planning": True}, StepUpError, "exclusive"),
        (("./work.py", "run"), {"args_file": "args.dat"}, StepUpError, "unsupported file"),
        (("./work.py", "run"), {"blob": "x" * (128 * 1024)}, StepUpError, "exceed 128 KiB"),
        (("./work.py", "run"), {"duration": -1.0}, StepUpError, "Invalid duration"),
    ],
)
def test_call_refuses_bad_arguments(
    planner: Recorder, args: tuple, kwargs: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        call(*args, **kwargs)
    assert planner.steps() == []


def test_script_in_stepup1_form(planner: Recorder) -> None:
    script("generate.py", "work/", True)
    script("other.py", workdir="w2", block=True)
    first, second = planner.steps()
    assert (first["command"], first["workdir"], first["inp"]) == (
        "./generate.py plan --optional",
        "work/",
        ["work/generate.py"],
    )
    assert (second["command"], second["inp"]) == ("./other.py plan", ["w2/other.py"])
    assert "env_overrides" not in first
    assert api._DIALECT.v4 is False


def test_script_in_stepup4_form(planner: Recorder) -> None:
    script("work.py", step_info="info.json", inp="config.txt", optional=True)
    (sent,) = planner.steps()
    assert sent["command"] == "./work.py plan --step-info=info.json --optional"
    assert sent["inp"] == ["config.txt", "work.py"]
    assert sent["out"] == ["info.json"]
    assert sent["env_overrides"] == {"STEPUP_DIST_API": "4"}


def _plan_module(source: str, **imported: object) -> None:
    """Run `source` as a plan module that imported `imported` from stepup.core.api."""
    exec(compile(source, "plan.py", "exec"), {"__name__": "plan", "script": script, **imported})


def test_an_ambiguous_script_call_takes_the_plans_form(planner: Recorder) -> None:
    _plan_module("script('work.py')")
    assert api._DIALECT.v4 is False
    _plan_module("script('work.py', optional=True)", run=api.run)
    old, new = planner.steps()
    assert old["command"] == "./work.py plan"
    assert "env_overrides" not in old
    # The plan imported run(), which only StepUp 4 has: the driver is told the form.
    assert new["command"] == "./work.py plan --optional"
    assert new["env_overrides"] == {"STEPUP_DIST_API": "4"}


def test_script_quotes_a_name_with_spaces(planner: Recorder) -> None:
    script("script is cool.py")
    assert planner.steps()[0]["command"] == "'./script is cool.py' plan"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("work.py", "sub/"), {"inp": "x"}),
        (("work.py",), {"block": True, "step_info": "i.json"}),
        (("work.py", "sub/"), {"workdir": "other/"}),
        (("work.py", "a/", False, False, "extra"), {}),
    ],
)
def test_script_refuses_mixed_or_doubled_arguments(
    planner: Recorder, args: tuple, kwargs: dict
) -> None:
    with pytest.raises(TypeError, match="script"):
        script(*args, **kwargs)
    assert planner.steps() == []


def test_render_jinja_makes_a_step_that_runs_the_renderer(planner: Recorder) -> None:
    render_jinja("tpl/main.tex", "vars.py", {"title": "${inp}"}, {"n": 2}, "out/")
    (sent,) = planner.steps()
    argv = _argv(sent["command"])
    assert argv[:3] == ["python3", "-m", "stepup.core.render_jinja"]
    assert argv[3:6] == ["tpl/main.tex", "vars.py", "out/main.tex"]
    assert json.loads(argv[6].removeprefix("--json=")) == {"title": "${inp}", "n": 2}
    assert sent["inp"] == ["tpl/main.tex", "vars.py"]
    assert sent["out"] == ["out/main.tex"]


def test_render_jinja_to_a_file_with_a_mode(planner: Recorder) -> None:
    render_jinja("t.txt", "v.yaml", "r.md", mode="latex", optional=True)
    (sent,) = planner.steps()
    assert _argv(sent["command"])[3:] == ["t.txt", "v.yaml", "r.md", "--mode=latex"]
    assert sent["optional"] is True


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("t.txt", "out.txt"), {}, TypeError, "three positional"),
        ((1, "v.py", "out.txt"), {}, TypeError, "template"),
        (("t.txt", "v.py", 3), {}, TypeError, "destination"),
        (("t.txt", 3, "out.txt"), {}, TypeError, "variables"),
        (("t.txt", "v.py", "out.txt"), {"mode": "html"}, StepUpError, "Unsupported mode"),
        (("t.txt", {}, "out.txt"), {}, StepUpError, "At least one file"),
        (("t.txt", "v.py", "./"), {}, PathError, "cannot equal"),
    ],
)
def test_render_jinja_refuses_bad_arguments(
    planner: Recorder, args: tuple, kwargs: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        render_jinja(*args, **kwargs)


def test_loadns_reads_files_and_makes_them_inputs(
    planner: Recorder, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.toml").write_text("x = 1\n")
    (tmp_path / "b.json").write_text('{"x": 2, "y": 3}')
    monkeypatch.setenv("NAME", "b")
    ns = loadns("a.toml", "${NAME}.json")
    assert (ns.x, ns.y) == (2, 3)
    amends = planner.amends()
    assert amends[0]["env"] == ["NAME"]
    assert amends[-1]["inp"] == ["a.toml", "b.json"]
    planner.calls.clear()
    loadns("a.toml", do_amend=False)
    assert planner.amends() == []


def test_dumpns_writes_and_declares_the_output(planner: Recorder, tmp_path: pathlib.Path) -> None:
    dumpns("out.yaml", {"k": [1]})
    assert yaml.safe_load((tmp_path / "out.yaml").read_text()) == {"k": [1]}
    assert planner.amends()[0]["out"] == ["out.yaml"]
    with pytest.raises(StepUpError, match="unsupported file format"):
        dumpns("out.toml", {"k": 1})
    assert not os.path.exists(tmp_path / "out.toml")
