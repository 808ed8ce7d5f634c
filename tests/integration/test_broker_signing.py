"""The signing edge of `RedisBroker` on a real server: what planners and workers accept."""

import time

import pytest
import redis

from stepup_dist.broker.broker import RedisBroker
from stepup_dist.broker.keys import Keys
from stepup_dist.errors import SignatureError, WireError
from stepup_dist.messages import Call, Checked, CheckJob, RunJob, Started, StepDone
from stepup_dist.signing import CLOCK_SKEW, INBOX, JOB, Keyring, seal
from stepup_dist.wire import encode
from stepup_dist.worker.vetting import refusal_report

OURS = Keyring((b"our-secret-0123456789abcdef",))
THEIRS = Keyring((b"their-secret-0123456789abcdef",))
BUILD = "b0b0b0b0b0b0b0b0"


def run_job(attempt: int = 1) -> RunJob:
    return RunJob(BUILD, "step", attempt, "true", "/tmp", "./", {}, [])


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


def brokers(client: redis.Redis, keys: Keys, planner: Keyring | None, worker: Keyring | None):  # type: ignore[no-untyped-def]
    return RedisBroker(client, keys, planner), RedisBroker(client, keys, worker)


def refuse(worker: RedisBroker, payload: bytes) -> None:
    """What stepup-worker does with a job: open it, and report a refusal to its build."""
    with pytest.raises(SignatureError) as info:
        worker.open_job(payload)
    report = refusal_report(info.value, payload, "h", "w")
    assert report is not None
    worker.post(report.build, report)


def test_signed_job_is_accepted_once(client: redis.Redis, keys: Keys) -> None:
    _, worker = brokers(client, keys, OURS, OURS)
    payload = seal(OURS, encode(run_job()), build=BUILD, to=JOB)
    assert worker.open_job(payload) == run_job()
    with pytest.raises(SignatureError, match="replayed") as info:
        worker.open_job(payload)
    assert refusal_report(info.value, payload, "h", "w") is None
    (seen,) = client.keys(f"{keys.prefix}:seen:*")
    ttl = client.ttl(seen)
    assert OURS.ttl < ttl <= OURS.ttl + CLOCK_SKEW + 1


def test_job_signed_for_another_build_is_refused(client: redis.Redis, keys: Keys) -> None:
    _, worker = brokers(client, keys, OURS, OURS)
    payload = seal(OURS, encode(run_job()), build="other", to=JOB)
    with pytest.raises(SignatureError, match="signed for build 'other'"):
        worker.open_job(payload)


def test_expired_job_fails_its_step_visibly(client: redis.Redis, keys: Keys) -> None:
    planner, worker = brokers(client, keys, OURS, OURS)
    refuse(worker, seal(OURS, encode(run_job()), build=BUILD, to=JOB, now=time.time() - 1e6))
    (done,) = planner.receive(BUILD, timeout=5)
    assert isinstance(done, StepDone)
    assert (done.step, done.attempt, done.returncode) == ("step", 1, -1)
    assert done.error.startswith("refused by worker w: signature expired")


def test_forged_job_naming_a_step_does_not_fail_it(client: redis.Redis, keys: Keys) -> None:
    planner, worker = brokers(client, keys, OURS, OURS)
    refuse(worker, seal(THEIRS, encode(run_job()), build=BUILD, to=JOB))
    refuse(worker, encode(run_job()))
    results = planner.receive(BUILD, timeout=5)
    assert len(results) == 2
    for result in results:
        assert isinstance(result, WireError)
        assert "refused job that this build did not sign" in str(result)


@pytest.mark.parametrize(
    ("planner_keys", "worker_keys", "reason"),
    [
        (OURS, None, "this worker has no secret"),
        (None, OURS, "not signed"),
        (OURS, THEIRS, "bad signature"),
    ],
)
def test_misconfigured_worker_fails_the_step_visibly(
    client: redis.Redis, keys: Keys, planner_keys, worker_keys, reason: str
) -> None:  # type: ignore[no-untyped-def]
    planner, worker = brokers(client, keys, planner_keys, worker_keys)
    # The payloads as `submit` seals them (rq stays unimported here: it fixes its key
    # prefix once per process).
    for job in (run_job(), CheckJob(BUILD, 4, "/", ["a"], [None])):
        refuse(worker, seal(planner.keyring, encode(job), build=BUILD, to=JOB))
    results = planner.receive(BUILD, timeout=5)
    assert len(results) == 2, results
    checked, done = sorted(results, key=lambda m: m.TYPE)
    assert isinstance(done, StepDone)
    assert isinstance(checked, Checked)
    assert done.returncode != 0
    assert reason in done.error
    assert (checked.request, checked.states) == (4, [])
    assert reason in checked.error


def test_unverified_results_are_dropped(client: redis.Redis, keys: Keys) -> None:
    planner, _ = brokers(client, keys, OURS, None)
    done = StepDone(BUILD, "step", 1, 0, 0.1, "h", "w", "", "", {})
    client.rpush(keys.inbox(BUILD), encode(done))
    client.rpush(keys.inbox(BUILD), seal(THEIRS, encode(done), build=BUILD, to=INBOX))
    client.rpush(keys.inbox(BUILD), seal(OURS, encode(done), build=BUILD, to=JOB))
    results = planner.receive(BUILD, timeout=5)
    assert [type(r) for r in results] == [SignatureError] * 3
    assert "not signed ('done' from host 'h')" in str(results[0])


def test_inbox_replay_and_stray_reply_keys_are_dropped(client: redis.Redis, keys: Keys) -> None:
    planner, worker = brokers(client, keys, OURS, OURS)
    started = Started(BUILD, "step", 1, "h", "w")
    worker.post(BUILD, started)
    raw = client.lindex(keys.inbox(BUILD), 0)
    client.rpush(keys.inbox(BUILD), raw)
    call = Call(BUILD, "./plan.py", "step", {}, f"{keys.prefix}:rq:queue:steps")
    client.rpush(keys.inbox(BUILD), seal(OURS, encode(call), build=BUILD, to=INBOX))
    first, replay, stray = planner.receive(BUILD, timeout=5)
    assert first == started
    assert isinstance(replay, SignatureError)
    assert replay.replayed
    assert isinstance(stray, WireError)
    assert "call wants its reply in" in str(stray)
    assert client.ttl(keys.inbox(BUILD)) == -2  # drained
    worker.post(BUILD, started)
    assert 0 < client.ttl(keys.inbox(BUILD)) <= 86400


def test_api_call_takes_only_a_reply_signed_for_it(
    client: redis.Redis, keys: Keys, server, tmp_path, capfd
) -> None:  # type: ignore[no-untyped-def]
    from stepup_dist.broker.call_client import CallClient
    from stepup_dist.config import load_config
    from stepup_dist.messages import Reply
    from tests.integration.servers import write_secret

    secret = write_secret(tmp_path / "secret", OURS.secrets[0].decode())
    config = load_config(
        environ={
            "STEPUP_DIST_REDIS_URL": server.url,
            "STEPUP_DIST_PREFIX": keys.prefix,
            "STEPUP_DIST_SECRET_FILE": str(secret),
        }
    )
    caller = CallClient(config, BUILD, "./plan.py")
    reply_to = keys.reply(BUILD, f"{caller._session}-1")
    forged = Reply(ok=True, value="forged")
    client.rpush(reply_to, encode(forged))  # unsigned
    client.rpush(reply_to, seal(THEIRS, encode(forged), build="", to=reply_to))
    other = keys.reply(BUILD, "other-call")
    client.rpush(reply_to, seal(OURS, encode(forged), build="", to=other))  # for another call
    client.rpush(
        reply_to, seal(OURS, encode(Reply(ok=True, value="genuine")), build="", to=reply_to)
    )
    reply = caller.call("getenv", {"name": "X"}, timeout=10)
    assert reply.value == "genuine"
    err = capfd.readouterr().err
    assert err.count("ignored a reply to getenv()") == 3, err
    # The call itself went to the planner's inbox, signed.
    (call,) = RedisBroker(client, keys, OURS).receive(BUILD, timeout=1)
    assert isinstance(call, Call)
    assert call.reply_to == reply_to
