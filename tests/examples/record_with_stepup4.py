"""Record the files StepUp 4.0.3 leaves for each 4.x example: `record_with_stepup4.py STEPUP`.

STEPUP is the `stepup` executable of a separate venv with `pip install stepup==4.0.3`
(the differential tests keep one in ~/.cache/stepup-dist-tests/stepup-4.0.3/venv).
The 4.x examples are the folders named `v4_*`, one per feature of StepUp 4's plan API. Each
holds `src/` (the project before the build) and gets `expected.txt`: one line per file the
build leaves (outside .stepup/), with its content. A file named in the example's `loose.txt`
is recorded without its content (its text is the tool's own, such as a graph dump): the test
checks that it is there. Name examples to record only those: `... STEPUP v4_run v4_glob`.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection
from pathlib import Path

HERE = Path(__file__).parent
PREFIX = "v4_"
LOOSE = "<content not compared>"


def loose(example: Path) -> set[str]:
    """The files of an example whose content is not compared."""
    path = example / "loose.txt"
    return set(path.read_text().split()) if path.is_file() else set()


def listing(root: Path, skip_content: Collection[str] = ()) -> str:
    lines = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".stepup" or "__pycache__" in rel.parts or path.is_dir():
            continue
        content = LOOSE if str(rel) in skip_content else repr(path.read_bytes())
        lines.append(f"{rel} {content}")
    return "\n".join(lines) + "\n"


def examples(names: list[str]) -> list[Path]:
    found = sorted(p for p in HERE.iterdir() if p.name.startswith(PREFIX) and (p / "src").is_dir())
    return [p for p in found if not names or p.name in names]


def main() -> None:
    stepup = sys.argv[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPUP", "PYTHON"))}
    env["PATH"] = f"{Path(stepup).parent}{os.pathsep}{env['PATH']}"
    for example in examples(sys.argv[2:]):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "p"
            shutil.copytree(example / "src", work, symlinks=True)
            proc = subprocess.run(
                [stepup, "build", "-j", "2", "--no-progress", "--no-watch"],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if proc.returncode != 0:
                print(proc.stdout + proc.stderr)
                raise SystemExit(f"{example.name}: StepUp failed (exit code {proc.returncode})")
            (example / "expected.txt").write_text(listing(work, loose(example)))
            print("recorded", example.name)


if __name__ == "__main__":
    main()
