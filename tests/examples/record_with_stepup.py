"""Record the files StepUp 1.3.1 leaves for each example: `python record_with_stepup.py STEPUP`.

STEPUP is the `stepup` executable of a separate venv with `pip install stepup==1.3.1`.
Each example folder holds `src/` (the project before the build) and gets `expected.txt`:
one line per file the build leaves (outside .stepup/), with its size and content.
The `v4_*` examples are StepUp 4's: `record_with_stepup4.py` records those.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def listing(root: Path) -> str:
    lines = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".stepup" or path.is_dir():
            continue
        lines.append(f"{rel} {path.read_bytes()!r}")
    return "\n".join(lines) + "\n"


def main() -> None:
    stepup = sys.argv[1]
    for example in sorted(p for p in HERE.iterdir() if (p / "src").is_dir()):
        if example.name.startswith("v4_"):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "p"
            shutil.copytree(example / "src", work, symlinks=True)
            subprocess.run([stepup, "-n", "-w", "2"], cwd=work, check=True, timeout=120)
            (example / "expected.txt").write_text(listing(work))
            print("recorded", example.name)


if __name__ == "__main__":
    main()
