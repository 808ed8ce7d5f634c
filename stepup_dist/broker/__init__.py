"""The Redis edge: keys, Lua scripts, semaphores, RQ queue, embedded server, connections.

Nothing outside this package (and `worker.py`, `build.py`, which wire it up) imports redis or rq.
"""
