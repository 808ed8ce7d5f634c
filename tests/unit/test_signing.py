"""Signed envelopes, refusal reports and job-data limits: pure functions, no server."""

import time
import zlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepup_dist.broker.broker import own_refusal
from stepup_dist.errors import SignatureError, WireError
from stepup_dist.messages import Checked, CheckJob, RunJob, StepDone
from stepup_dist.signing import INBOX, JOB, Keyring, seal, unseal
from stepup_dist.wire import decode, encode
from stepup_dist.worker.vetting import MAX_REFUSED, inflate, refusal_report

NEW = b"n" * 32
OLD = b"o" * 32
KEYRING = Keyring((NEW,))
JOB_MSG = RunJob("b1", "touch x", 1, "touch x", "/r", "./", {}, ["x"])
PAYLOAD = encode(JOB_MSG)


def test_round_trip_names_build_id_and_expiry() -> None:
    before = time.time()
    opened = unseal(KEYRING, seal(KEYRING, PAYLOAD, build="b1", to=JOB), to=JOB)
    assert opened.verified
    assert opened.payload == PAYLOAD
    assert opened.build == "b1"
    assert len(opened.id) == 32
    assert before + KEYRING.ttl - 1 <= opened.exp <= time.time() + KEYRING.ttl


def test_every_envelope_gets_its_own_id() -> None:
    ids = {unseal(KEYRING, seal(KEYRING, PAYLOAD, build="b", to=JOB), to=JOB).id for _ in range(50)}
    assert len(ids) == 50


def test_unsigned_payload_is_refused_with_its_content() -> None:
    with pytest.raises(SignatureError, match="not signed") as info:
        unseal(KEYRING, PAYLOAD, to=JOB)
    assert info.value.inner == PAYLOAD
    assert not info.value.replayed


def test_other_secret_is_refused() -> None:
    data = seal(Keyring((b"x" * 32,)), PAYLOAD, build="b1", to=JOB)
    with pytest.raises(SignatureError, match="bad signature") as info:
        unseal(KEYRING, data, to=JOB)
    assert info.value.inner == PAYLOAD


@pytest.mark.parametrize("field", ["build", "to", "exp", "id", "p"])
def test_any_changed_field_breaks_the_signature(field: str) -> None:
    obj = msgpack.unpackb(seal(KEYRING, PAYLOAD, build="b1", to=JOB))
    body = obj["f"]
    changed = {
        "build": "b2",
        "to": INBOX,
        "exp": body["exp"] + 3600,
        "id": "0" * 32,
        "p": encode(JOB_MSG.__class__(**{**JOB_MSG.__dict__, "command": "rm -rf ~"})),
    }
    body[field] = changed[field]
    with pytest.raises(SignatureError, match="bad signature"):
        unseal(KEYRING, msgpack.packb(obj), to=JOB)


def test_payload_for_another_place_is_refused() -> None:
    data = seal(KEYRING, PAYLOAD, build="b1", to=INBOX)
    with pytest.raises(SignatureError, match="signed for 'inbox', not for 'job'"):
        unseal(KEYRING, data, to=JOB)


def test_expired_payload_is_refused_unless_expiry_is_not_checked() -> None:
    data = seal(KEYRING, PAYLOAD, build="b1", to=JOB, now=time.time() - KEYRING.ttl - 10)
    with pytest.raises(SignatureError, match="expired"):
        unseal(KEYRING, data, to=JOB)
    assert unseal(KEYRING, data, to=JOB, check_expiry=False).payload == PAYLOAD


def test_rotation_signs_with_the_first_and_accepts_either() -> None:
    rolling = Keyring((NEW, OLD))
    old_only = Keyring((OLD,))
    assert unseal(rolling, seal(old_only, PAYLOAD, build="b", to=JOB), to=JOB).verified
    from_rolling = seal(rolling, PAYLOAD, build="b", to=JOB)
    assert unseal(KEYRING, from_rolling, to=JOB).verified
    with pytest.raises(SignatureError, match="bad signature"):
        unseal(old_only, from_rolling, to=JOB)


def test_without_keyring_nothing_is_checked() -> None:
    assert seal(None, PAYLOAD, build="b", to=JOB) == PAYLOAD
    assert unseal(None, PAYLOAD, to=JOB).payload == PAYLOAD
    opened = unseal(None, seal(Keyring((OLD,)), PAYLOAD, build="b", to=JOB), to=INBOX)
    assert (opened.payload, opened.verified) == (PAYLOAD, False)


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1 not msgpack",
        msgpack.packb({"v": 1, "t": "signed", "f": {"p": b"x"}}),
        msgpack.packb({"v": 2, "t": "signed", "f": {}}),
    ],
)
def test_broken_envelopes_are_wire_errors(data: bytes) -> None:
    with pytest.raises(WireError) as info:
        unseal(KEYRING, data, to=JOB)
    assert not isinstance(info.value, SignatureError)


def test_keyring_never_shows_its_secrets() -> None:
    assert "n" * 32 not in repr(Keyring((NEW, OLD)))
    with pytest.raises(ValueError, match="one or two"):
        Keyring((NEW, OLD, b"z" * 32))
    with pytest.raises(ValueError, match="one or two"):
        Keyring(())


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_no_single_byte_change_passes(data: st.DataObject) -> None:
    sealed = bytearray(seal(KEYRING, PAYLOAD, build="b1", to=JOB))
    index = data.draw(st.integers(0, len(sealed) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != sealed[index]))
    sealed[index] = value
    with pytest.raises(WireError):
        unseal(KEYRING, bytes(sealed), to=JOB)


# Refusal reports


def test_refusal_of_a_run_job_is_a_failure_carrying_the_job() -> None:
    report = refusal_report(SignatureError("bad signature", PAYLOAD), b"raw", "h", "w")
    assert isinstance(report, StepDone)
    assert (report.build, report.step, report.attempt) == ("b1", "touch x", 1)
    assert report.returncode != 0
    assert report.error == "refused by worker w: bad signature"
    assert report.refused == b"raw"
    assert report.out_states == {}


def test_refusal_of_a_check_job_is_a_checked_error() -> None:
    check = encode(CheckJob("b1", 7, "/r", ["a"], [None]))
    report = refusal_report(SignatureError("expired", check), b"raw", "h", "w")
    assert isinstance(report, Checked)
    assert (report.request, report.states, report.refused) == (7, [], b"raw")


@pytest.mark.parametrize(
    ("exc", "payload"),
    [
        (SignatureError("replayed", PAYLOAD, replayed=True), b"raw"),
        (SignatureError("not signed", b"\xc1garbage"), b"raw"),
        (SignatureError("not signed", None), b"raw"),
        (SignatureError("bad", encode(RunJob("b:x", "s", 1, "c", "/", "./", {}, []))), b"raw"),
        (SignatureError("bad", PAYLOAD), b"x" * (MAX_REFUSED + 1)),
    ],
)
def test_refusals_that_are_not_reported(exc: SignatureError, payload: bytes) -> None:
    assert refusal_report(exc, payload, "h", "w") is None


def test_planner_acts_only_on_refusals_of_jobs_it_signed() -> None:
    genuine = seal(KEYRING, PAYLOAD, build="b1", to=JOB, now=0.0)  # long expired
    forged = seal(Keyring((OLD,)), PAYLOAD, build="b1", to=JOB)

    def report(refused: bytes, attempt: int = 1) -> StepDone:
        done = refusal_report(SignatureError("x", PAYLOAD), refused, "h", "w")
        assert isinstance(done, StepDone)
        return StepDone(**{**done.__dict__, "attempt": attempt})

    assert own_refusal(KEYRING, report(genuine), "b1")
    assert not own_refusal(KEYRING, report(genuine), "b2")
    assert not own_refusal(KEYRING, report(genuine, attempt=2), "b1")
    assert not own_refusal(KEYRING, report(forged), "b1")
    assert not own_refusal(KEYRING, report(PAYLOAD), "b1")
    assert own_refusal(None, report(forged), "b1")


# Job data


def test_inflate_reads_rq_job_data() -> None:
    data = msgpack.packb(["stepup_dist.worker.perform", None, [PAYLOAD], {}])
    assert inflate(zlib.compress(data)) == data
    assert inflate(data) == data  # RQ's fallback for data that is not compressed


def test_inflate_refuses_a_zlib_bomb() -> None:
    bomb = zlib.compress(b"\0" * (8 << 20), 9)
    assert len(bomb) < 10_000
    with pytest.raises(WireError, match="inflates past 1048576 bytes"):
        inflate(bomb, limit=1 << 20)
    with pytest.raises(WireError, match="cut short"):
        inflate(zlib.compress(b"x" * 1000)[:-8])


def test_decode_of_signed_envelope_is_refused_as_a_message() -> None:
    with pytest.raises(WireError, match="unknown message type 'signed'"):
        decode(seal(KEYRING, PAYLOAD, build="b1", to=JOB))
