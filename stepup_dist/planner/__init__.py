"""The planner: runs in `stepup-dist build` and owns the step graph of one build.

- `loop.py`: the `Planner` and its loop (dispatch, messages, leases);
- `graph.py`: steps and files; `plan_calls.py`: the API calls of running steps;
- `skipping.py` and `checks.py`: skip decisions and the hash checks they ask for;
- `jobs.py`: what is out with workers; `routing.py`: which queue each job goes to;
- `pools.py`: pool slots as leases; `recovery.py`: lost workers, a lost server, Ctrl-C;
- `results.py`: what a step's report does; `finish.py`: the end of a build;
- `store.py`: what a build remembers (`.stepup/graph.mpk` and its journal);
- `progress.py`: counts and ETA for the status line and dashboards.

It never touches Redis (a `Broker` does) and never reads file contents (workers report
file states).
"""
