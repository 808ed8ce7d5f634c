"""StepUp 4's example plans, run under StepUp 4.0.3 and under stepup-dist, compared.

StepUp 4's repository carries example plans: `tests/examples/NAME/` (a `plan.py`, the
scripts it runs and the files it reads, driven by a `main.sh`) and the examples of its
documentation (`docs/**/plan.py`). Nothing of them is copied into this repository: they are
read from a git clone of StepUp's repository (`STEPUP4_GIT`, or the places in
`GIT_CANDIDATES`) or from a folder that holds `tests/examples/` and `docs/`
(`STEPUP4_EXAMPLES`), and unpacked into the cache folder. Without either, `examples()` raises
`Unavailable`, saying why, and the tests and the script skip.

An example is a plan that can run as it is, once, without watch mode:
- of `tests/examples/`, those whose `main.sh` starts one build and does nothing before it
  (no input files made, no environment set): the plan runs on the files in the folder;
- of `docs/`, every folder with a `plan.py` but the root one (which builds the docs).
Each runs in a fresh copy of its folder, after removing what its `.gitignore` lists (as
StepUp's `main.sh` scripts do), under StepUp 4.0.3 (`stepup build -j 2 --no-progress
--no-watch`, with its own venv's `bin/` first on PATH) and under stepup-dist
(`stepup-dist build -w2`). An example is the same when both leave the same files (with the
same contents; `.stepup/` and `__pycache__/` aside, see `stepup_cases.listing`) and agree on
success (the exit code is 0). StepUp's run is cached beside its venv, keyed by the example's
files; when stepup-dist differs, StepUp runs once more: a file whose content differs between
StepUp's two runs (a volatile output with the time in it) is compared by its presence only,
and an example whose two StepUp runs disagree otherwise is left out, saying so.

Run as a script, it prints one line per example, a table of the causes of the differences
(the first error line of stepup-dist's output, or of StepUp's when only StepUp failed), and
the count line `StepUp 4.0.3 examples: N of M the same`:
`python tests/differential/stepup4_examples.py [--env=NAME=VALUE ...] [NAME ...]` (`--env`
sets a variable for stepup-dist's builds, such as `--env=STEPUP_DIST_API=4`).
"""

import ast
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tests.` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.differential.stepup_cases import (
    Listing,
    Unreachable,
    _clean_env,
    _locked,
    _pip,
    cache_dir,
    listing,
)

__all__ = (
    "GIT_CANDIDATES",
    "STEPUP4_VERSION",
    "Example",
    "Reference4",
    "Unavailable",
    "cause",
    "cause_table",
    "compare",
    "count_line",
    "examples",
    "imported_names",
    "name_table",
    "reference4",
    "run_stepup4",
    "run_stepup_dist",
    "select",
)

STEPUP4_VERSION = "4.0.3"

GIT_CANDIDATES = ("/work/.mirror/reproducible-reporting+stepup-core/repo",)
"""Where a (bare) git clone of StepUp's repository is looked for when STEPUP4_GIT is unset."""

RUN_TIMEOUT = 120.0
"""Seconds one build of one example may take."""


class Unavailable(Exception):
    """StepUp 4's examples (or StepUp 4.0.3 itself) cannot be had on this machine."""


@dataclass(frozen=True)
class Reference4:
    """StepUp 4.0.3's venv `bin/` and the unpacked examples."""

    bin: Path
    """The `bin/` folder of the venv with StepUp 4.0.3 (its `stepup` and `python`)."""
    root: Path
    """The unpacked tree with `tests/examples/` and `docs/`."""
    listings: Path
    """The folder of cached StepUp runs (one JSON file per example)."""


@dataclass(frozen=True)
class Example:
    name: str
    """`NAME` for `tests/examples/NAME`, the folder under the root for a docs example."""
    path: Path
    """The folder to copy and build in."""


def _tree_from_git(git_dir: Path, dest_root: Path) -> Path:
    proc = subprocess.run(
        ["git", f"--git-dir={git_dir}", "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise Unavailable(f"{git_dir} is not a git clone of StepUp: {proc.stderr.strip()}")
    dest = dest_root / f"examples-{proc.stdout.strip()[:12]}"
    with _locked(dest_root / "examples.lock"):
        if not (dest / "done").is_file():
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            archive = subprocess.run(
                ["git", f"--git-dir={git_dir}", "archive", "HEAD", "tests/examples", "docs"],
                capture_output=True,
                check=False,
            )
            if archive.returncode != 0:
                raise Unavailable(f"git archive in {git_dir} failed: {archive.stderr!r}")
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
            (dest / "done").touch()
    return dest


def _examples_root(dest_root: Path) -> Path:
    given = os.environ.get("STEPUP4_EXAMPLES")
    if given:
        if not (Path(given) / "tests" / "examples").is_dir():
            raise Unavailable(f"STEPUP4_EXAMPLES={given} has no tests/examples/")
        return Path(given)
    candidates = [os.environ["STEPUP4_GIT"]] if os.environ.get("STEPUP4_GIT") else []
    for candidate in candidates or GIT_CANDIDATES:
        if Path(candidate).is_dir():
            return _tree_from_git(Path(candidate), dest_root)
    raise Unavailable(
        "StepUp 4's examples are not on this machine (its PyPI sdist has none): "
        "set STEPUP4_GIT to a git clone of stepup-core or STEPUP4_EXAMPLES to a folder "
        "with its tests/examples/ and docs/"
    )


def reference4(cache: Path | None = None) -> Reference4:
    """StepUp 4.0.3's venv (installed from PyPI on first use) and the unpacked examples."""
    root = (cache or cache_dir()) / f"stepup-{STEPUP4_VERSION}"
    venv = root / "venv"
    tree = _examples_root(root)
    with _locked(root.parent / f"stepup-{STEPUP4_VERSION}.lock"):
        # A venv made by hand (without the mark) is used as it is when it has `stepup`.
        if not (venv / "done").is_file() and not (venv / "bin" / "stepup").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            try:
                _pip(venv / "bin" / "python", "install", f"stepup=={STEPUP4_VERSION}")
            except Unreachable as exc:
                raise Unavailable(str(exc)) from exc
            (venv / "done").touch()
    return Reference4(venv / "bin", tree, root / "listings")


def _main_sh_builds_once_as_is(main_sh: Path) -> bool:
    """Whether `main.sh` starts one build and runs nothing before it (but its boilerplate)."""
    lines = [
        line.strip()
        for line in main_sh.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    builds = [
        i
        for i, line in enumerate(lines)
        if re.search(r"(^|[\s(])(sb|stepup build|stepup boot)(\s|$)", line)
    ]
    if len(builds) != 1:
        return False
    before = [line for line in lines[: builds[0]] if line != "source ../example.rc"]
    return not before


def select(root: Path) -> list[Example]:
    """The examples under `root` (see the module's docstring), in a stable order."""
    found = []
    for plan in sorted((root / "tests" / "examples").glob("*/plan.py")):
        main_sh = plan.parent / "main.sh"
        if main_sh.is_file() and _main_sh_builds_once_as_is(main_sh):
            found.append(Example(plan.parent.name, plan.parent))
    docs = root / "docs"
    for plan in sorted(docs.rglob("plan.py")):
        if plan.parent != docs:
            found.append(Example(str(plan.parent.relative_to(root)), plan.parent))
    return found


def examples(ref: Reference4) -> list[Example]:
    return select(ref.root)


def _remove_ignored(work: Path) -> None:
    """Remove what the folder's `.gitignore` lists, as StepUp's `main.sh` scripts do first."""
    gitignore = work / ".gitignore"
    if not gitignore.is_file():
        return
    for line in gitignore.read_text().splitlines():
        pattern = line.strip().rstrip("/")
        if not pattern or pattern.startswith(("#", "!")):
            continue
        for path in work.glob(pattern.lstrip("/")):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _run(
    args: list[str], src: Path, bin_dir: Path, extra_env: dict[str, str] | None = None
) -> Listing:
    with tempfile.TemporaryDirectory(prefix="stepup4-example-") as tmp:
        work = Path(tmp) / src.name
        shutil.copytree(src, work, symlinks=True)
        _remove_ignored(work)
        env = _clean_env(bin_dir)
        env["COLUMNS"] = "80"
        env.update(extra_env or {})
        # A session of its own: what the build leaves running (a director, a forkserver, a
        # step) is ended with it, after a timeout too.
        proc = subprocess.Popen(
            args,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_session(proc.pid)
            out, err = proc.communicate()
            return Listing(False, listing(work), f"timed out after {RUN_TIMEOUT} s\n{out}{err}")
        finally:
            _kill_session(proc.pid)
        return Listing(proc.returncode == 0, listing(work), out + err)


def _kill_session(sid: int) -> None:
    """Kill what is left of a build: the processes of session `sid` and their descendants.

    StepUp's steps run in sessions of their own, under a forkserver in the build's session.
    """
    parents: dict[int, int] = {}
    sessions: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            sessions[int(entry.name)] = os.getsid(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    doomed = {pid for pid, s in sessions.items() if s == sid}
    grown = True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in doomed} - doomed
        doomed |= more
        grown = bool(more)
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def run_stepup4(ref: Reference4, example: Example) -> Listing:
    args = [str(ref.bin / "stepup"), "build", "-j", "2", "--no-progress", "--no-watch"]
    return _run(args, example.path, ref.bin)


def run_stepup_dist(example: Example, env: dict[str, str] | None = None) -> Listing:
    """stepup-dist's run of an example; `env`: variables to set for it (`--env` of main)."""
    bin_dir = Path(sys.executable).parent
    return _run([str(bin_dir / "stepup-dist"), "build", "-w2"], example.path, bin_dir, env)


def _example_hash(src: Path) -> str:
    digest = hashlib.sha256(STEPUP4_VERSION.encode())
    for path in sorted(src.rglob("*")):
        digest.update(str(path.relative_to(src)).encode() + b"\0")
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class _Cache:
    """StepUp's runs of one example, kept in `listings/NAME.json` while it is unchanged."""

    def __init__(self, ref: Reference4, example: Example):
        self.path = ref.listings / (example.name.replace("/", "__") + ".json")
        self.key = _example_hash(example.path)
        self.runs: list[dict[str, Any]] = []
        if self.path.is_file():
            data = json.loads(self.path.read_text())
            if data.get("key") == self.key:
                self.runs = data["runs"]

    def add(self, run: Listing) -> Listing:
        self.runs.append({"ok": run.ok, "files": run.files, "output": run.output})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": self.key, "runs": self.runs}))
        tmp.replace(self.path)
        return run

    def run(self, index: int) -> Listing | None:
        if index >= len(self.runs):
            return None
        data = self.runs[index]
        return Listing(data["ok"], data["files"], data["output"])


def _agree(a: Listing, b: Listing) -> bool:
    return a.ok == b.ok and a.same(b)


def compare(
    ref: Reference4, example: Example, env: dict[str, str] | None = None
) -> tuple[Listing, Listing, str | None]:
    """StepUp's run, stepup-dist's run, and why the example is left out (or None).

    When StepUp's two runs leave the same paths but some with other contents (a volatile
    output with the time in it), those contents are not compared: StepUp's first listing
    and stepup-dist's are returned with them blanked.
    """
    cache = _Cache(ref, example)
    expected = cache.run(0) or cache.add(run_stepup4(ref, example))
    got = run_stepup_dist(example, env)
    if _agree(expected, got):
        return expected, got, None
    second = cache.run(1) or cache.add(run_stepup4(ref, example))
    if _agree(expected, second):
        return expected, got, None
    if expected.ok == second.ok and set(expected.files) == set(second.files):
        varying = {p for p in expected.files if expected.files[p] != second.files[p]}
        return _blank(expected, varying), _blank(got, varying), None
    return expected, got, "two StepUp runs disagree:\n" + expected.diff(second, ("run 1", "run 2"))


def _blank(run: Listing, paths: set[str]) -> Listing:
    files = {p: ("<varies>" if p in paths else c) for p, c in run.files.items()}
    return Listing(run.ok, files, run.output)


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+(?:Error|Exception|Exit)\b|error:|Error:).*")
_STATUS_LINE = re.compile(r"^\s*(FAIL|ERROR|STUCK|WARNING)\s*│\s*(.*)")


def _first_error(output: str) -> str | None:
    status = None
    for line in output.splitlines():
        if _ERROR_LINE.match(line):
            return _normalise(line.strip())
        found = _STATUS_LINE.match(line)
        if found and status is None:
            status = f"{found.group(1)} {found.group(2)}"
    return None if status is None else _normalise(status)


def _normalise(line: str) -> str:
    """Drop what differs between runs of the same cause: file paths and hosts."""
    line = re.sub(r"\s*\(/[^)]*\)", "", line)
    line = re.sub(r"\s+\[[^\]]*\]$", "", line)
    return re.sub(r"/tmp/\S+", "TMP", line)


def cause(expected: Listing, got: Listing) -> str:
    """One line saying why stepup-dist's run differs from StepUp's."""
    if not got.ok:
        return _first_error(got.output) or "stepup-dist failed without an error line"
    if not expected.ok:
        first = _first_error(expected.output) or "no error line"
        return f"only StepUp failed: {first}"
    missing = sorted(set(expected.files) - set(got.files))
    extra = sorted(set(got.files) - set(expected.files))
    if missing:
        return f"both succeeded, stepup-dist did not make {missing[0]}"
    if extra:
        return f"both succeeded, stepup-dist also made {extra[0]}"
    changed = sorted(p for p in expected.files if expected.files[p] != got.files.get(p))
    return f"both succeeded, other content in {changed[0]}" if changed else "same"


def cause_table(causes: dict[str, str]) -> str:
    """The causes, most frequent first: count, cause and up to three example names."""
    counts = Counter(causes.values())
    lines = []
    for text, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        names = sorted(n for n, c in causes.items() if c == text)
        more = f", +{len(names) - 3}" if len(names) > 3 else ""
        lines.append(f"{count:4d}  {text[:110]}\n        ({', '.join(names[:3])}{more})")
    return "\n".join(lines)


def count_line(same: int, total: int, left_out: int = 0) -> str:
    line = f"StepUp {STEPUP4_VERSION} examples: {same} of {total} the same"
    if left_out:
        line += f", {left_out} left out (two StepUp runs disagree)"
    return line


def main(argv: list[str]) -> int:
    env = dict(a.removeprefix("--env=").split("=", 1) for a in argv if a.startswith("--env="))
    names = [a for a in argv if not a.startswith("--env=")]
    try:
        ref = reference4()
    except Unavailable as exc:
        print(f"skipped: {exc}")
        return 0
    chosen = examples(ref)
    if names:
        chosen = [e for e in chosen if e.name in names]
    same, left_out, causes = [], [], {}
    made = 0
    for example in chosen:
        expected, got, unstable = compare(ref, example, env)
        if unstable:
            left_out.append(example.name)
            print(f"{example.name}: left out: {unstable.splitlines()[0]}", flush=True)
        elif _agree(expected, got):
            same.append(example.name)
            made += any(p not in _inputs(example) for p in got.files)
            print(f"{example.name}: same ({'succeeded' if got.ok else 'failed'})", flush=True)
        else:
            causes[example.name] = cause(expected, got)
            print(f"{example.name}: DIFFERENT: {causes[example.name]}", flush=True)
    print("\nCauses:")
    print(cause_table(causes))
    print("\nBy name (examples whose Python files import it from stepup.core.api: the same):")
    print(name_table(chosen, set(same)))
    print(f"\n{made} of the same ones made a file")
    print(count_line(len(same), len(chosen), len(left_out)))
    return 0


def imported_names(example: Example) -> set[str]:
    """The names the example's Python files import from `stepup.core.api`, and the modules
    `stepup.core.call`, `.script` and `.extapi` when they import from those."""
    names: set[str] = set()
    for path in example.path.rglob("*.py"):
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            if node.module == "stepup.core.api":
                names |= {alias.name for alias in node.names}
            elif node.module in ("stepup.core.call", "stepup.core.script", "stepup.core.extapi"):
                names.add(node.module)
    return names


def name_table(chosen: list[Example], same: set[str]) -> str:
    """Per name: how many examples import it, and how many of those are the same."""
    users: dict[str, list[str]] = {}
    for example in chosen:
        for name in imported_names(example):
            users.setdefault(name, []).append(example.name)
    lines = []
    for name in sorted(users):
        n_same = sum(e in same for e in users[name])
        lines.append(f"  {name:28s} {n_same:3d} of {len(users[name]):3d}")
    return "\n".join(lines)


def _inputs(example: Example) -> set[str]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "x"
        shutil.copytree(example.path, work, symlinks=True)
        _remove_ignored(work)
        return set(listing(work))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
