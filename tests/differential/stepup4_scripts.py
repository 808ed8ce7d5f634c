"""StepUp 4's own example scripts (`tests/examples/*/main.sh`), run under both tools.

Each `main.sh` drives a build as people do (`sb -j 1 -w &`, `stepup wait`, edits,
`stepup rebuild`, `stepup join`, `wait -fn $PID`) and checks the result with its own
assertions (files, greps, the return-code bits); it passes when it exits with 0. It runs
twice, in fresh copies of its folder (with StepUp's `example.rc` beside it, as StepUp's
test runner places it), with `sb` and `stepup` on PATH as a small shim:

- under StepUp 4.0.3: `sb ARGS` is `stepup build ARGS`, `stepup CMD` is `stepup CMD`;
- under stepup-dist: `sb ARGS` is `stepup-dist build ARGS`, `stepup CMD` is
  `stepup-dist CMD`.

Nothing of StepUp is copied here: the scripts are read from a clone of StepUp's repository
(`stepup4_examples.reference4`, which also installs StepUp 4.0.3). Scripts that compare
StepUp's own output (`expected_stdout.txt`) are not compared here: only the script's exit
code counts.

`python tests/differential/stepup4_scripts.py [--every N] [NAME ...]` prints one line per
script and the count line `main.sh scripts: A of N pass under StepUp 4.0.3, B under
stepup-dist (C pass under both)`.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests.` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.differential.stepup4_examples import Reference4, reference4

__all__ = ("SCRIPT_TIMEOUT", "count_line", "run_script", "scripts")

SCRIPT_TIMEOUT = 120.0
"""Seconds one main.sh may take."""

BIN = Path(sys.executable).parent


def scripts(ref: Reference4) -> list[str]:
    """The names of the examples that have a main.sh, sorted."""
    base = ref.root / "tests" / "examples"
    return sorted(p.parent.name for p in base.glob("*/main.sh"))


def _shim(folder: Path, tool: str, ref: Reference4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if tool == "stepup":
        build, other = f'"{ref.bin}/stepup" build', f'"{ref.bin}/stepup"'
    else:
        build, other = f'"{BIN}/stepup-dist" build', f'"{BIN}/stepup-dist"'
    for name, command in (("sb", build), ("stepup", other)):
        path = folder / name
        path.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        path.chmod(0o755)
    return folder


def run_script(ref: Reference4, name: str, tool: str, work: Path) -> tuple[bool, str]:
    """Run one example's main.sh under `tool` (`stepup` or `stepup-dist`): (passed, the
    last lines of its output)."""
    source = ref.root / "tests" / "examples"
    dest = work / tool / "examples" / name
    shutil.rmtree(dest.parent, ignore_errors=True)
    shutil.copytree(source / name, dest, symlinks=True)
    shutil.copy(source / "example.rc", dest.parent / "example.rc")
    shim = _shim(work / tool / "shim", tool, ref)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPUP", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join([str(shim), str(ref.bin), env.get("PATH", "")])
    proc = subprocess.Popen(
        ["bash", "main.sh"],
        cwd=dest,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=SCRIPT_TIMEOUT)
        passed = proc.returncode == 0
    except subprocess.TimeoutExpired:
        passed = False
        out = f"timed out after {SCRIPT_TIMEOUT:.0f} s"
    finally:
        # What the script left in the background (a watching build) ends with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return passed, "\n".join(out.splitlines()[-5:])


def count_line(results: dict[str, dict[str, bool]]) -> str:
    n = len(results)
    ref = sum(r["stepup"] for r in results.values())
    ours = sum(r["stepup-dist"] for r in results.values())
    both = sum(r["stepup"] and r["stepup-dist"] for r in results.values())
    return (
        f"main.sh scripts: {ref} of {n} pass under StepUp 4.0.3, {ours} under stepup-dist "
        f"({both} pass under both)"
    )


def main(argv: list[str]) -> int:
    every = 1
    if argv[:1] == ["--every"]:
        every, argv = int(argv[1]), argv[2:]
    ref = reference4()
    names = argv or scripts(ref)[::every]
    results: dict[str, dict[str, bool]] = {}
    with tempfile.TemporaryDirectory(prefix="stepup4-scripts-") as tmp:
        for name in names:
            results[name] = {}
            tails = {}
            for tool in ("stepup", "stepup-dist"):
                results[name][tool], tails[tool] = run_script(ref, name, tool, Path(tmp))
            r = results[name]
            said = "same" if r["stepup"] == r["stepup-dist"] else "DIFFERENT"
            line = f"{name}: {said}: StepUp {'pass' if r['stepup'] else 'FAIL'}, "
            line += f"stepup-dist {'pass' if r['stepup-dist'] else 'FAIL'}"
            if r["stepup"] and not r["stepup-dist"]:
                last = tails["stepup-dist"].splitlines()[-1:] or [""]
                line += f" ({last[0][:150]})"
            print(line, flush=True)
    print(count_line(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
