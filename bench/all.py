#!/usr/bin/env python
"""Every figure issue 5 asks for, in one command: `python bench/all.py [--quick]`.

Runs, one after the other and with this interpreter, `compare.py` (stepup-dist against
StepUp 4, installed into bench/.venv-stepup4 when absent: N = 500 and 2000), `scaling.py`
(32 workers, cold and warm) and `planner_scale.py` (20,000 steps), and prints their output
as it comes. About 15 minutes on 2 cores; `--quick` runs small versions in about 2.
"""

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small versions of each")
    args = parser.parse_args()
    runs = [
        ["compare.py", *(["--quick"] if args.quick else [])],
        ["scaling.py", *(["--runs", "1"] if args.quick else [])],
        ["planner_scale.py", *(["--steps", "2000"] if args.quick else [])],
    ]
    failed = []
    for script, *options in runs:
        print(f"\n===== python bench/{script} {' '.join(options)}".rstrip(), flush=True)
        code = subprocess.call([sys.executable, str(HERE / script), *options])
        if code != 0:
            failed.append(script)
    if failed:
        sys.exit(f"bench/all.py: {', '.join(failed)} failed")


if __name__ == "__main__":
    main()
