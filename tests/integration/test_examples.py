"""Golden examples: each leaves the same files as StepUp 1.3.1 left when it was recorded.

`tests/examples/NAME/src/` is the project, `expected.txt` what StepUp 1.3.1 left
(re-record with `tests/examples/record_with_stepup.py`). A second build skips everything.
"""

import shutil
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.examples.record_with_stepup import listing

EXAMPLES = Path(__file__).parent.parent / "examples"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "src").is_dir())


@pytest.mark.parametrize("name", NAMES)
def test_example_leaves_the_files_stepup_leaves(name: str, tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(EXAMPLES / name / "src", root, symlinks=True)
    project = Project(root)
    first = project.build("-w2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert listing(root) == (EXAMPLES / name / "expected.txt").read_text()
    second = project.build("-w2")
    assert second.returncode == 0
    assert second.lines("SUCCESS") == []
    assert second.lines("SKIP")
