"""Jobs go out through `lua/enqueue.lua`, not RQ's `enqueue_many`: RQ must read them as its
own. The script writes the fields RQ's enqueue writes; this compares the two on the
installed RQ, so a new RQ that writes other fields fails here first."""

from stepup_dist.broker.broker import RedisBroker
from stepup_dist.broker.keys import Keys
from stepup_dist.broker.queue import PERFORM, make_queue
from stepup_dist.messages import CheckJob
from stepup_dist.wire import decode


def test_script_writes_the_jobs_rq_writes(client, prefix: str) -> None:  # type: ignore[no-untyped-def]
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
    queue = make_queue(client, keys, "build.b")
    theirs = queue.enqueue_many(
        [
            queue.prepare_data(
                PERFORM,
                args=[b"x"],
                timeout=-1,
                result_ttl=60,
                failure_ttl=24 * 3600,
                description="hash check 0",
                job_id="rq-made",
            )
        ]
    )[0]
    ours = client.hgetall(keys.rq_job(ids[0]))
    made = client.hgetall(keys.rq_job(theirs.id))
    assert set(ours) == set(made)
    for field in set(made) - {b"data", b"created_at", b"enqueued_at"}:
        assert ours[field] == made[field], field
    # RQ reads our job back: what a worker is handed is the signed payload of the step.
    job = queue.fetch_job(ids[0])
    assert job.func_name == PERFORM
    assert job.origin == "build.b"
    assert job.get_status() == "queued"
    assert job.timeout == -1
    assert job.result_ttl == 60
    assert decode(job.args[0]) == jobs[0][0]
    assert job.enqueued_at is not None
    assert job.created_at is not None
