"""The Redis edge: keys, Lua scripts, semaphores, RQ queues, the embedded server, connections,
and `memory.py`, the same interface in memory for the planner's unit tests.

It imports no domain module (planner/, worker/, cli/, dashboard/): only the shared
vocabulary (`tests/unit/test_layout.py` checks). Outside it, only `worker/serve.py` and
`worker/step_worker.py`, which wire RQ's worker up, import redis or rq.
"""
