"""StepUp's plan API beyond the basics, in real builds (no PyPI needed, unlike tests/differential).

Optional steps, deferred globs, named globs, script(), `$HERE`/`$ROOT`, `${VAR}` in paths,
and StepUp's refusals: a static path without a static folder, a folder nobody makes.
"""

from tests.conftest import Project


def test_optional_steps_run_only_when_a_step_needs_them(project: Project) -> None:
    for name in ("a", "b", "c"):
        project.write(f"raw_{name}.txt", f"{name}\n")
    project.plan(
        """
        from stepup.core.api import copy, glob, step

        for path in glob("raw_*.txt"):
            copy(path, "conv_" + path[4:], optional=True)
        copy("conv_b.txt", "used.txt")
        # Defined after the step that needs it, and needing another optional step.
        step("cat conv_c.txt > late.txt", inp="conv_c.txt", out="late.txt", optional=True)
        step("cat late.txt > final.txt", inp="late.txt", out="final.txt")
        """
    )
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    root = project.root
    assert (root / "used.txt").read_text() == "b\n"
    assert (root / "final.txt").read_text() == "c\n"
    assert not (root / "conv_a.txt").exists()
    assert "cp -aT raw_a.txt conv_a.txt" not in result.lines("START")


def test_a_deferred_glob_makes_used_inputs_static(project: Project) -> None:
    project.write("sub/used.txt", "used\n")
    project.write("sub/unused.txt", "unused\n")
    project.plan(
        """
        from stepup.core.api import plan, static

        static("sub/", "sub/plan.py")
        plan("sub/")
        """
    )
    project.plan(
        """
        from stepup.core.api import copy, glob

        glob("u*.txt", _defer=True)
        copy("used.txt", "copy.txt")
        """,
        relpath="sub/plan.py",
    )
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "sub/copy.txt").read_text() == "used\n"


def test_named_globs_here_root_and_variables(project: Project) -> None:
    project.write("ch-1-intro/sec-1-1-a.txt", "one\n")
    project.write("ch-2-end/sec-2-1-b.txt", "two\n")
    project.write("ch-2-end/sec-3-1-c.txt", "not in chapter 2\n")
    project.plan(
        """
        import os
        from stepup.core.api import glob, plan, static, step

        static("sub/", "sub/plan.py")
        for ch in glob("ch-${*ch}-${*name}/", ch="[0-9]"):
            for sec in glob(ch[0] / "sec-${*ch}-${*sec}-*.txt", ch=ch.ch, sec="[0-9]"):
                step("cp ${inp} ${out}", inp=sec[0], out=f"got-{ch.name}-{sec.sec}.txt")
        step("echo $NAME > ${out}", out="${NAME}.txt", env="NAME")
        plan("sub/")
        """
    )
    project.plan(
        """
        import os
        from stepup.core.api import step

        assert (os.environ["HERE"], os.environ["ROOT"]) == ("sub", ".."), os.environ["HERE"]
        step("echo $HERE $ROOT > where.txt", out="where.txt")
        """,
        relpath="sub/plan.py",
    )
    result = project.build("-w2", env={"NAME": "value"})
    assert result.returncode == 0, result.stdout + result.stderr
    root = project.root
    assert sorted(p.name for p in root.glob("got-*")) == ["got-end-1.txt", "got-intro-1.txt"]
    assert (root / "value.txt").read_text() == "value\n"
    assert (root / "sub/where.txt").read_text() == "sub ..\n"
    # The plan depends on the variable; without it, the plan fails as StepUp's does.
    unset = project.build("-w2")
    assert unset.returncode != 0
    assert "ValueError: Undefined shell variable: NAME" in unset.stdout + unset.stderr


def test_stepup_refusals(project: Project) -> None:
    # StepUp 4 asks for no static folders above a static path (StepUp 1.x refused
    # `glob("data/*.txt")` without `static("data/")`): the folder is static along with it.
    project.write("data/in.txt", "in\n")
    project.plan(
        """
        from stepup.core.api import glob, step

        glob("data/*.txt")
        step("cp data/in.txt out.txt", inp="data/in.txt", out="out.txt")
        """
    )
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "out.txt").read_text() == "in\n"
    # A folder that a step makes cannot hold a static path.
    project.write("made/in.txt", "in\n")
    project.plan(
        """
        from stepup.core.api import static, step

        step("mkdir -p made", out="made/")
        static("made/in.txt")
        """
    )
    made = project.build("-w2")
    assert made.returncode != 0
    assert "Static path has no static parent path node: made/in.txt" in made.stdout
    project.plan(
        """
        from stepup.core.api import mkdir

        mkdir("sub/blub/pup")
        """
    )
    nested = project.build("-w2")
    assert nested.returncode != 0
    assert "it needs sub/blub/, which is neither static nor made by any step" in nested.stdout
    assert not (project.root / "sub").exists()


def test_script_plans_its_cases(project: Project) -> None:
    project.write(
        "work.py",
        """
        #!/usr/bin/env python
        from stepup.core.script import driver

        CASE_FMT = "{:+03.1f}"


        def cases():
            yield -5.0
            yield 7.0


        def case_info(num):
            return {"out": f"data{num:+03.1f}.txt", "num": num, "stdout": f"log{num}.txt"}


        def run(num, out):
            with open(out, "w") as fh:
                fh.write(f"{num * 2}\\n")
            print("ran", num)


        if __name__ == "__main__":
            driver()
        """,
        executable=True,
    )
    project.plan(
        """
        from stepup.core.api import script, static

        static("work.py")
        script("work.py")
        """
    )
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    root = project.root
    assert (root / "data-5.0.txt").read_text() == "-10.0\n"
    assert (root / "data+7.0.txt").read_text() == "14.0\n"
    assert (root / "log7.0.txt").read_text() == "ran 7.0\n"
    assert "./work.py run -- '+7.0' > log7.0.txt" in result.lines("SUCCESS")


def test_a_glob_follows_the_files(project: Project) -> None:
    # As StepUp: a new match or a match that is gone runs the plan again; the outputs of a
    # step that is no longer planned are removed (CLEAN).
    for i in (1, 2):
        project.write(f"data/in{i}.txt", f"{i}\n")
    project.plan(
        """
        from stepup.core.api import glob, mkdir, static, step

        static("data/")
        mkdir("out/")
        for path in glob("data/in*.txt"):
            name = path[5:-4]
            step("cp ${inp} ${out}", inp=path, out=f"out/{name}.up")
        """
    )
    first = project.build("-w2")
    assert first.returncode == 0, first.stdout + first.stderr
    same = project.build("-w2")
    assert same.lines("SUCCESS") == []
    project.write("data/in3.txt", "3\n")
    added = project.build("-w2")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "./plan.py" in added.lines("SUCCESS")
    assert "cp data/in3.txt out/in3.up" in added.lines("SUCCESS")
    assert (project.root / "out/in3.up").read_text() == "3\n"
    (project.root / "data/in1.txt").unlink()
    removed = project.build("-w2")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "./plan.py" in removed.lines("SUCCESS")
    assert "out/in1.up" in removed.lines("CLEAN")
    assert not (project.root / "out/in1.up").exists()
    assert (project.root / "out/in2.up").exists()
