"""A client with plain Redis access that tries to make a stepup-worker run code.

Run as `python hostile_writer.py URL KIND JSON` with `RQ_KEY_PREFIX` set (RQ reads it once,
at import). Prints the ids of the jobs it put on the queue, one a line. JSON holds `target`
(the file a successful attack would make) and, per kind, `build`, `step`, `root`, `secret`
(the real one, for a payload that a planner once signed), `hook` (a URL).
"""

import json
import os
import sys
import time
import zlib

import msgpack
import rq
from redis import Redis
from rq.webhook import Webhook

from stepup_dist.messages import RunJob
from stepup_dist.signing import JOB, Keyring, seal
from stepup_dist.wire import MAX_PAYLOAD, MsgpackSerializer, encode

PERFORM = "stepup_dist.worker.perform"
OLD_BUILD = "0123456789abcdef"
"""A build long gone, named by the payloads its planner once signed."""


def run_job(params: dict, command: str, root: str | None = None, workdir: str = "./") -> bytes:
    job = RunJob(
        build=params.get("build", OLD_BUILD),
        step=params.get("step", command),
        attempt=1,
        command=command,
        root=root or params["root"],
        workdir=workdir,
        env={},
        out=[],
    )
    return encode(job)


def main() -> None:
    url, kind, raw = sys.argv[1:]
    params = json.loads(raw)
    target = params["target"]
    touch = f"touch {target}"
    conn = Redis.from_url(url)
    # The queue of the workers under attack (`steps`: workers that serve any folder).
    name = params.get("queue", "steps")
    queue = rq.Queue(name, connection=conn, serializer=MsgpackSerializer)
    real = Keyring((params.get("secret", "x" * 32).encode(),))
    old_params = {**params, "build": OLD_BUILD, "step": "old step"}
    payload: bytes | None = None
    if kind == "other-function":
        print(queue.enqueue("os.system", touch).id)
        return
    if kind == "pickle":

        class Evil:
            # Unpickling this runs the command: only a worker that unpickles makes the file.
            def __reduce__(self):  # type: ignore[no-untyped-def]
                return (os.system, (touch,))

        print(rq.Queue(name, connection=conn).enqueue("os.system", Evil()).id)
        return
    if kind == "unsigned":
        payload = run_job(params, touch)
    elif kind == "forged":
        wrong = Keyring((b"not-the-secret" * 3,))
        payload = seal(wrong, run_job(params, touch), build=params["build"], to=JOB)
    elif kind == "expired":
        long_ago = time.time() - real.ttl - 3600
        old = run_job(old_params, touch)
        payload = seal(real, old, build=OLD_BUILD, to=JOB, now=long_ago)
    elif kind == "outside-roots":
        old = run_job(old_params, touch, root="/", workdir="etc/")
        payload = seal(real, old, build=OLD_BUILD, to=JOB)
    elif kind == "malformed":
        payload = msgpack.packb({"v": 1, "t": "signed", "f": {"p": run_job(params, touch)}})
    elif kind == "oversized":
        payload = b"\x91" + b"\xc0" * (MAX_PAYLOAD + 1)
    elif kind == "replay":
        # A job its planner signed: the first copy runs, a second copy must not.
        command = f"echo ran >> {target}"
        payload = seal(real, run_job(old_params, command), build=OLD_BUILD, to=JOB)
        print(queue.enqueue(PERFORM, payload).id)
        print(queue.enqueue(PERFORM, payload).id)
        return
    elif kind == "webhook":
        # RQ 3 sends a job's webhooks when it ends: a worker must not call out for a writer.
        hooks = [Webhook(params["hook"], "failed"), Webhook(params["hook"], "finished")]
        job = queue.enqueue(PERFORM, run_job(params, touch), webhooks=hooks)
        print(job.id)
        return
    elif kind == "zlib-bomb":
        # Job data that inflates to 80 MiB (or to much more: same refusal, slower to make).
        job = rq.job.Job.create(PERFORM, args=[b"x"], connection=conn, serializer=MsgpackSerializer)
        job.origin = name
        job.save()
        conn.hset(job.key, "data", zlib.compress(b"\0" * (80 << 20), 1))
        conn.rpush(queue.key, job.id)
        print(job.id)
        return
    else:
        raise SystemExit(f"unknown kind {kind}")
    print(queue.enqueue(PERFORM, payload).id)


if __name__ == "__main__":
    main()
