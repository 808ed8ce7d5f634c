"""StepUp 1.3.1's own test cases, run under StepUp and under stepup-dist, compared.

StepUp's source distribution on PyPI carries `tests/cases/`: folders with a `plan.py` and the
files it needs. Nothing of it is copied into this repository: at test time, `reference()`
downloads StepUp's wheel (into a venv) and its sdist (for the cases) into a cache folder,
once, under a file lock so that parallel test workers share one download.

A case is run in a fresh copy of its folder, by StepUp (`stepup -n -w 2`, as a user would type
it) and by stepup-dist (`stepup-dist build -w2 -k`: StepUp 1.x keeps going after a failed
step, where stepup-dist drains as StepUp 4 does). What the run leaves is a `Listing`: every
path under the copy (directories with a trailing slash, symlinks as `-> target`), with its
content, `.stepup/` and `__pycache__/` aside; two listings are the same when their paths and
contents are. Whether the run failed is noted beside it (StepUp 1.3.1 exits with 0 even when
a step failed: its failure is a FAIL or ERROR line, or steps left pending). StepUp's listing
is cached beside the download (keyed by the case's files), after two runs in two fresh
copies: a case whose two StepUp runs disagree is unstable, and is left out, saying so.

Run as a script, it prints the count line for every case (or those named):
`python tests/differential/stepup_cases.py [CASE ...]`.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = (
    "CASES",
    "STEPUP_VERSION",
    "Listing",
    "Reference",
    "Unreachable",
    "cache_dir",
    "compare",
    "count_line",
    "listing",
    "reference",
    "run_stepup",
    "run_stepup_dist",
    "stepup_listing",
    "stepup_unstable",
    "unpack",
)

STEPUP_VERSION = "1.3.1"

CASES = (
    "absolute", "amend", "amend_delay", "amend_env_vars", "amend_missing",
    "amend_outdir_pending", "amend_self_static", "amend_voldir_pending", "deferred_glob1",
    "deferred_nonexisting_dir", "deferred_subdir", "env_vars", "env_vars_amend",
    "env_vars_path", "env_vars_subs", "env_vars_workdir", "error_cyclic_late",
    "error_deferred_nonexisting", "error_env_var", "error_not_executable",
    "error_overlap_deferred", "error_static_dir", "error_step", "makedirs", "mkdir",
    "mkdir_error", "no_data", "no_shebang", "no_static", "not_cyclic", "optional_convert",
    "output_not_created", "pending", "permissions_file_rerun", "permissions_plan_rerun",
    "permissions_plan_restart", "permissions_step_rerun", "permissions_step_restart", "pool",
    "pool_restart", "reqdir_missing", "restart_deferred_glob", "restart_input",
    "restart_nochanges", "restart_orphan", "restart_outdated_amend", "restart_output",
    "script_cases", "script_cases_settings", "script_single", "static", "static_abs",
    "static_dir", "static_glob", "static_nglob", "static_nglob_partial",
    "static_nglob_recursive", "static_nglob_subdir", "subdir", "watch_chain", "watch_input",
    "watch_nochanges", "watch_outdated_amend1", "watch_outdated_amend2", "watch_output",
)  # fmt: skip
"""The folders of StepUp 1.3.1's `tests/cases/` with a root `plan.py` (65)."""

RUN_TIMEOUT = 120.0
"""Seconds one build of one case may take."""


class Unreachable(Exception):
    """PyPI cannot be reached from this machine: the download cannot be made."""


def cache_dir() -> Path:
    """Where the download and StepUp's listings are kept between runs."""
    given = os.environ.get("STEPUP_DIST_TEST_CACHE")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stepup-dist-tests"


@dataclass(frozen=True)
class Reference:
    """A downloaded StepUp: its venv's `bin/` and the sdist's `tests/cases/`."""

    bin: Path
    """The `bin/` folder of the venv with StepUp installed (its `stepup` and `python`)."""
    cases: Path
    """The sdist's `tests/cases/` folder."""
    listings: Path
    """The folder of cached StepUp listings (one JSON file per case)."""


@dataclass(frozen=True)
class Listing:
    """What a build left behind."""

    ok: bool
    """Whether the build succeeded (all steps ran, none failed)."""
    files: dict[str, str]
    """Every path left (directories end with `/`) and its content (as text or repr)."""
    output: str = ""
    """The build's stdout and stderr, to explain a difference (not compared)."""

    def same(self, other: "Listing") -> bool:
        return self.files == other.files

    def diff(self, other: "Listing", names: tuple[str, str] = ("StepUp", "stepup-dist")) -> str:
        """The differences, one line each: a path only one side has, or with other content."""
        lines = [f"outcome: {names[0]} {_ok(self.ok)}, {names[1]} {_ok(other.ok)}"]
        for path in sorted(set(self.files) | set(other.files)):
            mine, theirs = self.files.get(path), other.files.get(path)
            if mine == theirs:
                continue
            if theirs is None:
                lines.append(f"only {names[0]}: {path}")
            elif mine is None:
                lines.append(f"only {names[1]}: {path}")
            else:
                lines.append(f"content: {path}: {names[0]} {mine!r} != {names[1]} {theirs!r}")
        return "\n".join(lines)


def _ok(ok: bool) -> str:
    return "succeeded" if ok else "failed"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/stepup/", timeout=20) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _pip(python: Path, *args: str) -> None:
    proc = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        if not _pypi_reachable():
            raise Unreachable(f"PyPI cannot be reached: pip {args[0]} failed: {proc.stderr[-500:]}")
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")


def unpack(archive: Path, dest: Path) -> None:
    """Unpack a tar archive into `dest`, refusing any member that would land outside it.

    Python 3.11.4 and later have `extractall(filter="data")`; 3.11.0 to 3.11.3 (Debian's
    3.11.2 among them) lack it. The same rules are checked here on every version, before
    anything is written: no absolute name, no `..` out of `dest`, no link (symbolic or hard)
    whose target lies outside it, and regular files, folders and links only.
    """
    root = dest.resolve()

    def inside(path: Path) -> bool:
        return path == root or root in path.parents

    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            name = member.name
            target = (root / name).resolve()
            if Path(name).is_absolute() or not inside(target):
                raise ValueError(f"{archive}: member {name!r} lies outside {dest}")
            if member.issym():
                link = (target.parent / member.linkname).resolve()
                if Path(member.linkname).is_absolute() or not inside(link):
                    raise ValueError(
                        f"{archive}: symlink {name!r} -> {member.linkname!r} leaves {dest}"
                    )
            elif member.islnk():
                if not inside((root / member.linkname).resolve()):
                    raise ValueError(
                        f"{archive}: hard link {name!r} -> {member.linkname!r} leaves {dest}"
                    )
            elif not (member.isfile() or member.isdir()):
                raise ValueError(f"{archive}: member {name!r} is not a file, folder or link")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, members=members, filter="data")
        else:
            # Every member was checked above.
            tar.extractall(root, members=members)


def reference(cache: Path | None = None) -> Reference:
    """StepUp's venv and cases, downloaded into the cache on first use."""
    root = (cache or cache_dir()) / f"stepup-{STEPUP_VERSION}"
    venv, sdist = root / "venv", root / "sdist"
    result = Reference(
        venv / "bin", sdist / f"stepup-{STEPUP_VERSION}" / "tests" / "cases", root / "listings"
    )
    with _locked(root.parent / f"stepup-{STEPUP_VERSION}.lock"):
        if not (venv / "done").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            _pip(
                venv / "bin" / "python",
                "install",
                "--only-binary",
                ":all:",
                f"stepup=={STEPUP_VERSION}",
            )
            (venv / "done").touch()
        if not (sdist / "done").is_file():
            shutil.rmtree(sdist, ignore_errors=True)
            sdist.mkdir(parents=True)
            # The project's own venv runs pip: the download needs no install.
            _pip(
                Path(sys.executable), "download", "--no-binary", ":all:", "--no-deps",
                "-d", str(sdist), f"stepup=={STEPUP_VERSION}",
            )  # fmt: skip
            (archive,) = sdist.glob("stepup-*.tar.gz")
            unpack(archive, sdist)
            (sdist / "done").touch()
    return result


def listing(root: Path) -> dict[str, str]:
    """Every path under `root` with its content; `.stepup/` and `__pycache__/` aside."""
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not (rel == Path(".") and d == ".stepup")]
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in list(dirnames):
            path = Path(dirpath) / name
            if path.is_symlink():
                files[str(rel / name)] = f"-> {os.readlink(path)}"
                dirnames.remove(name)
            else:
                files[str(rel / name) + "/"] = ""
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                files[str(rel / name)] = f"-> {os.readlink(path)}"
                continue
            data = path.read_bytes()
            try:
                files[str(rel / name)] = data.decode()
            except UnicodeDecodeError:
                files[str(rel / name)] = repr(data)
    return files


def _clean_env(bin_dir: Path) -> dict[str, str]:
    """The environment of a build: no StepUp or stepup-dist settings, `bin_dir` first on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STEPUP", "PYTHON", "VIRTUAL_ENV", "ENV_VAR_TEST_STEPUP"))
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def _stepup_ok(output: str) -> bool:
    for line in output.splitlines():
        head, sep, text = line.partition(" │ ")
        if sep and head.strip() in ("FAIL", "ERROR"):
            return False
        if sep and head.strip() == "WARNING" and "pending" in text:
            return False
    return True


def _run(args: list[str], src: Path, bin_dir: Path, *, stepup: bool = False) -> Listing:
    with tempfile.TemporaryDirectory(prefix="stepup-case-") as tmp:
        work = Path(tmp) / src.name
        shutil.copytree(src, work, symlinks=True)
        try:
            proc = subprocess.run(
                args,
                cwd=work,
                env=_clean_env(bin_dir),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = f"{exc.stdout or ''}{exc.stderr or ''}"
            return Listing(False, listing(work), f"timed out after {RUN_TIMEOUT} s\n{out}")
        output = proc.stdout + proc.stderr
        ok = _stepup_ok(output) if stepup else proc.returncode == 0
        return Listing(ok, listing(work), output)


def run_stepup(ref: Reference, case: str) -> Listing:
    return _run([str(ref.bin / "stepup"), "-n", "-w", "2"], ref.cases / case, ref.bin, stepup=True)


def run_stepup_dist(ref: Reference, case: str) -> Listing:
    bin_dir = Path(sys.executable).parent
    # -k: StepUp 1.x keeps going after a failed step; stepup-dist, as StepUp 4, drains
    # without it, so what else a failing case leaves would depend on timing.
    return _run([str(bin_dir / "stepup-dist"), "build", "-w2", "-k"], ref.cases / case, bin_dir)


def _case_hash(src: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(src.rglob("*")):
        digest.update(str(path.relative_to(src)).encode() + b"\0")
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class _Cache:
    """StepUp's runs of one case, kept in `listings/CASE.json` while the case is unchanged."""

    def __init__(self, ref: Reference, case: str):
        self.path = ref.listings / f"{case}.json"
        self.key = _case_hash(ref.cases / case)
        self.runs: list[dict[str, Any]] = []
        if self.path.is_file():
            data = json.loads(self.path.read_text())
            if data.get("key") == self.key:
                self.runs = data["runs"]

    def add(self, run: Listing) -> Listing:
        self.runs.append({"files": run.files, "output": run.output})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": self.key, "runs": self.runs}))
        tmp.replace(self.path)
        return run

    def run(self, index: int) -> Listing | None:
        if index >= len(self.runs):
            return None
        data = self.runs[index]
        return Listing(_stepup_ok(data["output"]), data["files"], data["output"])


def stepup_listing(ref: Reference, case: str) -> Listing:
    """What StepUp leaves for a case (run once, then cached)."""
    cache = _Cache(ref, case)
    return cache.run(0) or cache.add(run_stepup(ref, case))


def stepup_unstable(ref: Reference, case: str) -> str | None:
    """Why StepUp's result for a case cannot be the reference (two runs disagree), or None.

    The second run is made (and cached) only when asked: a case whose stepup-dist run
    matches StepUp's first run needs no second.
    """
    cache = _Cache(ref, case)
    first = cache.run(0) or cache.add(run_stepup(ref, case))
    second = cache.run(1) or cache.add(run_stepup(ref, case))
    if first.same(second):
        return None
    return "two StepUp runs disagree:\n" + first.diff(second, ("run 1", "run 2"))


def compare(ref: Reference, case: str) -> tuple[Listing, Listing, str | None]:
    """StepUp's listing, stepup-dist's listing, and why the case is left out (or None)."""
    expected = stepup_listing(ref, case)
    got = run_stepup_dist(ref, case)
    unstable = None if expected.same(got) else stepup_unstable(ref, case)
    return expected, got, unstable


def main(names: list[str]) -> None:
    ref = reference()
    found = sorted(p.parent.name for p in ref.cases.glob("*/plan.py"))
    if found != sorted(CASES):
        print(f"cases with a root plan.py differ from CASES: {sorted(set(found) ^ set(CASES))}")
    same, outcome, left_out = [], [], []
    for case in names or CASES:
        expected, got, unstable = compare(ref, case)
        if unstable:
            left_out.append(case)
            print(f"{case}: left out: {unstable}")
        elif expected.same(got):
            same.append(case)
            outcome += [case] if expected.ok == got.ok else []
            print(
                f"{case}: same ({_ok(expected.ok)})"
                + ("" if expected.ok == got.ok else " but stepup-dist " + _ok(got.ok))
            )
        else:
            print(f"{case}: DIFFERENT\n  " + expected.diff(got).replace("\n", "\n  "))
    print(count_line(len(same), len(names or CASES), len(left_out), len(outcome)))


def count_line(same: int, total: int, left_out: int, outcome: int | None = None) -> str:
    line = f"StepUp {STEPUP_VERSION} cases: {same} of {total} the same"
    if outcome is not None:
        line += f" ({outcome} of them with the same outcome)"
    if left_out:
        line += f", {left_out} left out (two StepUp runs disagree)"
    return line


if __name__ == "__main__":
    main(sys.argv[1:])
