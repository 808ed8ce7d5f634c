"""The programs steps run: `stepup.core.call.driver`, `stepup.core.script.driver` (both
forms) and `python -m stepup.core.render_jinja`.

In-process tests record the API calls in place of a planner (see test_api_tools.py);
subprocess tests run scripts with the shim on PYTHONPATH, as a worker does
(worker/execute.py), outside a build, where the API calls do nothing.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from path import Path

from stepup_dist.call import _parse_args, command_lines, dispatch
from stepup_dist.script import _plan, _plan_4x, _Script
from stepup_dist.worker.execute import SHIM_DIR
from tests.unit.test_api_tools import Recorder, planner  # noqa: F401


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP")}
    env["PYTHONPATH"] = str(SHIM_DIR)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(textwrap.dedent(text).lstrip())
    path.chmod(0o755)
    return path


# call.driver


def test_dispatch_gives_a_function_the_arguments_it_declares() -> None:
    got = {}

    def run(out: list[Path], n: float, flag: bool = False) -> None:
        got.update(out=out, n=n, flag=flag)

    dispatch("w.py", {"run": run}, "run", {"inp": ["a"], "out": ["b"], "n": 2})
    assert got == {"out": ["b"], "n": 2.0, "flag": False}
    assert isinstance(got["out"][0], Path)
    assert isinstance(got["n"], float)


def test_dispatch_gives_everything_to_kwargs() -> None:
    def run(**kwargs: object) -> object:
        return kwargs

    assert dispatch("w.py", {"run": run}, "run", {"inp": ["a"], "x": 1}) == {
        "inp": ["a"],
        "x": 1,
    }


def test_dispatch_refuses_unknown_functions_arguments_and_types() -> None:
    def run(n: int) -> None:
        pass

    with pytest.raises(AttributeError, match="does not define a function 'plan'"):
        dispatch("w.py", {"run": run}, "plan", {})
    with pytest.raises(AttributeError, match="does not define"):
        dispatch("w.py", {"run": run, "data": 3}, "data", {})
    with pytest.raises(TypeError, match="unexpected arguments: m"):
        dispatch("w.py", {"run": run}, "run", {"n": 1, "m": 2, "inp": []})
    with pytest.raises(TypeError, match="argument 'n' expected"):
        dispatch("w.py", {"run": run}, "run", {"n": "many"})


def _plan_fn(inp: list[str], config: str = "default") -> None:
    pass


def _run_fn(inp: list[str], out: list[str]) -> None:
    pass


def test_command_lines_list_the_functions_a_script_offers() -> None:
    namespace = {"__name__": __name__, "plan": _plan_fn, "run": _run_fn, "_private": _run_fn}
    namespace["imported"] = json.dumps
    lines = command_lines("work.py", namespace)
    assert lines == [
        """./work.py plan '{"inp": null, "config": "default"}'""",
        """./work.py run '{"inp": null, "out": null}'""",
    ]
    assert command_lines("work.py", {**namespace, "__all__": ["run"]}) == [lines[1]]


def test_json_and_an_args_file_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        _parse_args("w.py", ["run", "{}", "--inp=args.json"])
    args = _parse_args("w.py", ["run", "--inp=args.json"])
    assert (args.function, args.json_inp, args.path_inp) == ("run", None, "args.json")


def test_a_called_script_runs_with_json_or_an_args_file(tmp_path: pathlib.Path) -> None:
    _write(
        tmp_path / "work.py",
        """
        #!/usr/bin/env python3
        from stepup.core.call import driver

        def run(out, n: int, tag="-"):
            with open(out[0], "w") as fh:
                fh.write(f"{tag}{n + 1}\\n")

        if __name__ == "__main__":
            driver()
        """,
    )
    (tmp_path / "args.yaml").write_text("out: [b.txt]\nn: '41'\n")
    for argv in (["run", '{"out": ["a.txt"], "n": 1, "tag": "$"}'], ["run", "--inp=args.yaml"]):
        done = subprocess.run(
            ["./work.py", *argv],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.txt").read_text() == "$2\n"
    assert (tmp_path / "b.txt").read_text() == "-42\n"
    listed = subprocess.run(
        ["./work.py"], cwd=tmp_path, env=_env(), capture_output=True, text=True, check=True
    )
    assert listed.stdout == """./work.py run '{"out": null, "n": null, "tag": "-"}'\n"""


# script.driver


def _cases_script(**info: object) -> SimpleNamespace:
    return SimpleNamespace(
        CASE_FMT="{:+03.1f}",
        cases=lambda: [-5.0, 7.0],
        case_info=lambda num: {"out": f"data{num:+03.1f}.txt", "num": num, **info},
        run=lambda num, out: None,
    )


def test_the_stepup4_form_quotes_cases_and_writes_step_info(
    planner: Recorder,  # noqa: F811
    tmp_path: pathlib.Path,
) -> None:
    _plan_4x(_Script(_cases_script(static=["s.txt"]), "work.py"), False, "info.json")
    commands = [s["command"] for s in planner.steps()]
    assert commands == ["./work.py run -- -5.0", "./work.py run +7.0"]
    assert [s["inp"] for s in planner.steps()] == [["work.py"], ["work.py"]]
    assert [args["paths"] for m, args in planner.calls if m == "static"] == [["s.txt"]] * 2
    info = json.loads((tmp_path / "info.json").read_text())
    assert info == [
        {
            "command": c,
            "inp": ["./work.py"],
            "env": [],
            "out": [f"data{n}.txt"],
            "vol": [],
            "workdir": ".",
        }
        for c, n in zip(commands, ("-5.0", "+7.0"), strict=True)
    ]


def test_the_stepup4_form_of_a_single_run_writes_one_object(
    planner: Recorder,  # noqa: F811
    tmp_path: pathlib.Path,
) -> None:
    obj = SimpleNamespace(info=lambda: {"inp": "c.json", "stdout": "log.txt"}, run=lambda: None)
    _plan_4x(_Script(obj, "gen.py"), True, "info.json")
    (sent,) = planner.steps()
    # StepUp 4 redirects nothing: `stdout` is an info key like any other.
    assert (sent["command"], sent["inp"], sent["out"]) == ("./gen.py run", ["gen.py", "c.json"], [])
    assert sent["optional"] is True
    assert json.loads((tmp_path / "info.json").read_text())["inp"] == ["./gen.py", "c.json"]


def test_the_stepup1_form_is_unchanged(planner: Recorder) -> None:  # noqa: F811
    _plan(_Script(_cases_script(stdout="log.txt"), "work.py"), False)
    commands = [s["command"] for s in planner.steps()]
    assert commands == [
        "./work.py run -- '-5.0' > log.txt",
        "./work.py run -- '+7.0' > log.txt",
    ]
    assert planner.steps()[0]["out"] == ["data-5.0.txt", "log.txt"]
    assert planner.steps()[0]["inp"] == ["work.py"]


def test_a_script_plans_and_runs_in_both_forms(tmp_path: pathlib.Path) -> None:
    _write(
        tmp_path / "work.py",
        """
        #!/usr/bin/env python3
        from stepup.core.script import driver

        CASE_FMT = "{:d}"

        def cases():
            return [-1, 2]

        def case_info(n):
            return {"out": f"o{n}.txt", "n": n}

        def run(n, out):
            with open(out, "w") as fh:
                fh.write(str(n))

        if __name__ == "__main__":
            driver()
        """,
    )
    env = _env()
    cases = subprocess.run(
        ["./work.py", "cases"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert cases.stdout == "./work.py run -- '-1'\n./work.py run -- '2'\n"
    plan = subprocess.run(
        ["./work.py", "plan", "--step-info=si.json"], cwd=tmp_path, env=env, check=True
    )
    assert plan.returncode == 0
    assert [i["command"] for i in json.loads((tmp_path / "si.json").read_text())] == [
        "./work.py run -- -1",
        "./work.py run 2",
    ]
    for argv in (["run", "--", "-1"], ["run", "2"]):
        subprocess.run(["./work.py", *argv], cwd=tmp_path, env=env, check=True)
    assert (tmp_path / "o-1.txt").read_text() == "-1"
    assert (tmp_path / "o2.txt").read_text() == "2"


# render_jinja


def test_render_jinja_runs_as_a_module(tmp_path: pathlib.Path) -> None:
    (tmp_path / "t.sh").write_text("#!/bin/sh\necho {{ greeting }} {{ n }}\n")
    (tmp_path / "t.sh").chmod(0o751)
    (tmp_path / "v.yaml").write_text("greeting: hello\nn: 1\n")
    (tmp_path / "doc.tex").write_text(
        "\\title{<< title >>}\n%== for x in items\n<< x >>{}\n%== endfor\n"
    )
    (tmp_path / "v.py").write_text("title = 'T'\nitems = ['a', 'b']\n")
    base = [sys.executable, "-m", "stepup.core.render_jinja"]
    for argv in (
        ["t.sh", "v.yaml", "out.sh", '--json={"n": 2}'],
        ["doc.tex", "v.py", "out.tex"],
    ):
        done = subprocess.run(
            base + argv, cwd=tmp_path, env=_env(), capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.sh").read_text() == "#!/bin/sh\necho hello 2\n"
    assert (tmp_path / "out.sh").stat().st_mode & 0o777 == 0o751
    assert (tmp_path / "out.tex").read_text() == "\\title{T}\na{}\nb{}\n"
    failed = subprocess.run(
        [*base, "t.sh", "v.py", "bad.sh"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        check=False,
    )
    assert failed.returncode != 0
    assert b"'greeting' is undefined" in failed.stderr


# the shim


STEPUP4_ALL = [
    "CommandArg",
    "amend",
    "call",
    "copy",
    "dumpns",
    "get_info",
    "get_job_i",
    "get_rpc_client",
    "getenv",
    "glob",
    "graph",
    "hold",
    "loadns",
    "plan",
    "render_jinja",
    "run",
    "script",
    "shq",
    "static",
    "step",
    "subs_env_vars",
]
"""StepUp 4.0.3's `stepup.core.api.__all__`."""


def test_the_shim_offers_stepup4s_names_and_modules(tmp_path: pathlib.Path) -> None:
    probe = textwrap.dedent(
        """
        import json
        import stepup.core.api as api
        import stepup.core.call, stepup.core.extapi, stepup.core.render_jinja
        import stepup.core.script
        names = {n: getattr(api, n).__module__ for n in api.__all__ if hasattr(api, n)}
        print(json.dumps([sorted(api.__all__), names["call"], names["script"],
                          stepup.core.call.driver.__module__, stepup.core.script.driver.__module__,
                          stepup.core.extapi.run_subprocess.__module__]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    names, *modules = json.loads(done.stdout)
    assert set(STEPUP4_ALL) <= set(names)
    assert {"mkdir", "pool"} <= set(names)  # StepUp 1's too
    assert modules == [
        "stepup_dist.api_tools",
        "stepup_dist.api_tools",
        "stepup_dist.call",
        "stepup_dist.script",
        "stepup_dist.extapi",
    ]
