"""Jobs go out through `lua/enqueue.lua`, not RQ's `enqueue_many`: RQ must read them as its
own. The script writes the fields RQ's enqueue writes; this compares the two on the
installed RQ, so a new RQ that writes other fields fails here first.

RQ's half runs in an interpreter of its own: RQ reads its key prefix once, when it is first
imported, and another test of this process may have imported it under another prefix."""

import json
import subprocess
import sys

from stepup_dist.broker.broker import RedisBroker
from stepup_dist.broker.keys import Keys
from stepup_dist.broker.queue import PERFORM
from stepup_dist.messages import CheckJob
from stepup_dist.wire import decode
from tests.integration.servers import clean_env

RQ_SIDE = """
import json, sys
from stepup_dist.broker.connection import connect
from stepup_dist.broker.keys import Keys
from stepup_dist.broker.queue import PERFORM, make_queue

url, prefix, ours = sys.argv[1:]
client = connect(url)
keys = Keys(prefix)
queue = make_queue(client, keys, "build.b")
data = queue.prepare_data(
    PERFORM, args=[b"x"], timeout=-1, result_ttl=60, failure_ttl=24 * 3600,
    description="hash check 0", job_id="rq-made",
)
(theirs,) = queue.enqueue_many([data])
job = queue.fetch_job(ours)
print(json.dumps({
    "made": theirs.id,
    "func_name": job.func_name,
    "origin": job.origin,
    "queued": job.get_status() == "queued",
    "timeout": job.timeout,
    "result_ttl": job.result_ttl,
    "arg": job.args[0].hex(),
    "enqueued": job.enqueued_at is not None,
    "created": job.created_at is not None,
}))
"""


def test_script_writes_the_jobs_rq_writes(server, client, prefix: str) -> None:  # type: ignore[no-untyped-def]
    keys = Keys(prefix)
    broker = RedisBroker(client, keys, None)
    jobs = [
        (CheckJob("b", i, "/r", [f"p{i}"], [None]), f"hash check {i}", i == 2) for i in range(3)
    ]
    ids = broker.submit(jobs, "build.b")
    # As RQ's enqueue_many puts them: the one at the front first, the others in order.
    queued = [x.decode() for x in client.lrange(keys.rq_queue("build.b"), 0, -1)]
    assert queued == [ids[2], ids[0], ids[1]]
    assert keys.rq_queue("build.b").encode() in client.smembers(keys.rq_queues)
    rq_side = subprocess.run(
        [sys.executable, "-c", RQ_SIDE, server.url, prefix, ids[0]],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(RQ_KEY_PREFIX=keys.rq_prefix),
        check=False,
    )
    assert rq_side.returncode == 0, rq_side.stderr
    seen = json.loads(rq_side.stdout)
    ours = client.hgetall(keys.rq_job(ids[0]))
    made = client.hgetall(keys.rq_job(seen["made"]))
    assert set(ours) == set(made)
    for field in set(made) - {b"data", b"created_at", b"enqueued_at"}:
        assert ours[field] == made[field], field
    # RQ reads our job back: what a worker is handed is the signed payload of the step.
    assert seen["func_name"] == PERFORM
    assert seen["origin"] == "build.b"
    assert seen["queued"]
    assert seen["timeout"] == -1
    assert seen["result_ttl"] == 60
    assert decode(bytes.fromhex(seen["arg"])) == jobs[0][0]
    assert seen["enqueued"]
    assert seen["created"]
