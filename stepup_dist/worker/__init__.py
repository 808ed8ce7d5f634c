"""`stepup-worker`: what runs on a compute node. An RQ worker that runs steps and hash
checks for planners, and nothing else.

- `serve.py`: the command line and the serving loop (reconnects, `--processes`);
- `step_worker.py`: RQ's job life cycle around a step, lean, and which jobs are refused;
- `execute.py`: running a step's command and hashing files; `inputs.py`: waiting for
  inputs the shared filesystem does not show yet;
- `lease.py` and `watchdog.py`: the pool leases renewed while a step runs, and the process
  that kills the step when they are lost; `vetting.py`: what of a job hash is read;
- `forking.py`: many workers forked from one imported process.

`perform` is the one function name every job names (`stepup_dist.worker.perform`, stored
in each RQ job hash): RQ checks the name, and only `stepup-worker` executes jobs, inline. It
is defined in `vetting.py`, which imports neither this package nor rq: step_worker.py takes
it from there, so that no module of the package imports the package back.
"""

from .vetting import perform

__all__ = ("main", "perform")


def main() -> None:
    """The `stepup-worker` program."""
    from .serve import main as serve

    serve()
