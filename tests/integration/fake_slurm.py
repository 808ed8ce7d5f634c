"""Stand-ins for Slurm's commands, for tests: `python fake_slurm.py COMMAND ARGS...`.

Each call is appended to `$FAKE_SLURM/calls.jsonl` (command, arguments and the STEPUP_*
environment). Job states live in `$FAKE_SLURM/states.json` ({job id: [state, where]}),
which the tests rewrite to play Slurm's part:

- `sbatch`: a new job, PENDING; or, when `$FAKE_SLURM/sbatch.fail` exists, its text on
  stderr and exit code 1.
- `squeue --jobs=...`: `ID|STATE|WHERE` for each known job; like Slurm, an error when it
  knows none of them.
- `scancel`: plain, the job becomes CANCELLED; with `--signal`, nothing changes (the batch
  script relays the signal and the job ends when its workers have).
- `srun`: starts `--ntasks` copies of its command with `SLURM_PROCID` set and waits for
  them; on SIGTERM it SIGKILLs them, as the real srun does ("forcing job termination"). With
  `--overlap` it runs the command once.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_SLURM"])


def _record(command: str, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith("STEPUP_")}
    with open(STATE / "calls.jsonl", "a") as fh:
        fh.write(json.dumps({"cmd": command, "args": args, "env": env}) + "\n")


def _states() -> dict[str, list[str]]:
    path = STATE / "states.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(states: dict[str, list[str]]) -> None:
    (STATE / "states.json").write_text(json.dumps(states))


def sbatch(args: list[str]) -> int:
    fail = STATE / "sbatch.fail"
    if fail.exists():
        print(fail.read_text(), file=sys.stderr, end="")
        return 1
    states = _states()
    job = str(4200 + len(states))
    states[job] = ["PENDING", "(Priority)"]
    _save(states)
    print(f"{job};cluster" if "--parsable" in args else f"Submitted batch job {job}")
    return 0


def squeue(args: list[str]) -> int:
    jobs = next(a.split("=", 1)[1] for a in args if a.startswith("--jobs=")).split(",")
    assert "--format=%i|%T|%R" in args, args
    states = _states()
    known = [j for j in jobs if j in states]
    if not known:
        print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
        return 1
    for job in known:
        print(f"{job}|{states[job][0]}|{states[job][1]}")
    return 0


def scancel(args: list[str]) -> int:
    if not any(a.startswith("--signal") for a in args):
        states = _states()
        for job in (a for a in args if not a.startswith("-")):
            states[job] = ["CANCELLED", ""]
        _save(states)
    return 0


def srun(args: list[str]) -> int:
    split = next(i for i, a in enumerate(args) if not a.startswith("-"))
    options, command = args[:split], args[split:]
    if "--overlap" in options:
        return subprocess.call(command, env={**os.environ, "SLURM_PROCID": "0"})
    ntasks = int(next(a.split("=", 1)[1] for a in options if a.startswith("--ntasks=")))
    tasks = [
        subprocess.Popen(command, env={**os.environ, "SLURM_PROCID": str(i)}) for i in range(ntasks)
    ]

    def forced(signum: int, frame: object) -> None:
        (STATE / "srun.signalled").write_text(str(signum))
        for task in tasks:
            task.kill()

    signal.signal(signal.SIGTERM, forced)
    signal.signal(signal.SIGINT, forced)
    while any(task.poll() is None for task in tasks):
        time.sleep(0.05)
    return max(task.returncode for task in tasks)


def main() -> int:
    command, args = sys.argv[1], sys.argv[2:]
    _record(command, args)
    return {"sbatch": sbatch, "squeue": squeue, "scancel": scancel, "srun": srun}[command](args)


if __name__ == "__main__":
    sys.exit(main())
