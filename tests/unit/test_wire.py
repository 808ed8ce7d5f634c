"""The wire format: every message round-trips; anything else is refused with WireError."""

import dataclasses
import math
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepup_dist import messages, wire
from stepup_dist.errors import WireError
from stepup_dist.messages import (
    Call,
    Checked,
    CheckJob,
    Control,
    FileState,
    Message,
    Reply,
    RunJob,
    Started,
    StepDone,
    Wake,
)
from stepup_dist.wire import MAX_PAYLOAD, VERSION, MsgpackSerializer, decode, encode

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STATE = FileState(0o100644, 1_700_000_000_123_456_789, 12, 2**40, b"\x01" * 16)
DIR_STATE = FileState(0o040755, 0, 0, 0, b"")

EXAMPLES: list[Message] = [
    RunJob(
        build="b1",
        step="cp a b",
        attempt=1,
        command="cp a b",
        root="/data/project",
        workdir="./",
        env={"HOME": "/home/x", "UNSET": None},
        out=["b", "sub/"],
        pools=["b1:gpu"],
        token="tok",
        lease=12.5,
    ),
    RunJob("b1", "s", 2, "true", "/r", "sub/", {}, []),
    CheckJob("b1", 7, "/r", ["a", "sub/", "gone"], [STATE, DIR_STATE, None]),
    CheckJob("b1", 0, "/r", [], []),
    Started("b1", "s", 3, "node01", "worker-1"),
    StepDone(
        build="b1",
        step="s",
        attempt=1,
        returncode=-9,
        duration=0.25,
        host="node01",
        worker="w",
        stdout="out ✓\n",
        stderr="",
        out_states={"b": STATE, "sub/": DIR_STATE},
        error="lost lease",
    ),
    StepDone("b1", "s", 1, 0, 1.0, "h", "w", "", "", {}),
    Checked("b1", 7, "node01", [STATE, None]),
    Call(
        build="b1",
        step="./plan.py",
        method="step",
        args={
            "command": "cp a b",
            "inp": ["a"],
            "pool": None,
            "nested": {"x": [1, 2.5, True, b"raw", {"y": None}]},
        },
        reply_to="stepup:reply:1",
    ),
    Reply(ok=True, value="cp a b"),
    Reply(ok=True, value={"k": [1, -2, 3.0, None, False, b"\x00"]}),
    Reply(ok=False, error="step 'x' is defined twice"),
    Reply(ok=True),
    Wake(),
    Control(build="b1", action="drain"),
]

MESSAGE_CLASSES = [
    cls
    for name in messages.__all__
    if isinstance(cls := getattr(messages, name), type)
    and issubclass(cls, Message)
    and cls is not Message
]


def raw_payload(tag: str, body: Any, version: Any = VERSION) -> bytes:
    return msgpack.packb({"v": version, "t": tag, "f": body})


def body_of(message: Message) -> dict[str, Any]:
    return msgpack.unpackb(encode(message))["f"]


def assert_refused(data: Any, match: str | None = None) -> WireError:
    with pytest.raises(WireError, match=match) as info:
        decode(data)
    return info.value


# Round trips


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    data = encode(message)
    assert isinstance(data, bytes)
    back = decode(data)
    assert back == message
    assert type(back) is type(message)
    assert decode(data, type(message)) == message


def test_examples_cover_every_message_class() -> None:
    assert {type(m) for m in EXAMPLES} == set(MESSAGE_CLASSES)
    assert set(wire._CLASSES.values()) == set(MESSAGE_CLASSES)
    assert len(MESSAGE_CLASSES) == 9


def test_payload_layout_is_the_documented_one() -> None:
    obj = msgpack.unpackb(encode(Checked("b", 1, "h", [STATE, None])))
    assert obj == {
        "v": 1,
        "t": "checked",
        "f": {
            "build": "b",
            "request": 1,
            "host": "h",
            "states": [[STATE.mode, STATE.mtime_ns, STATE.size, STATE.inode, STATE.digest], None],
            "error": "",
            "refused": b"",
        },
    }


def test_defaults_may_be_left_out() -> None:
    back = decode(raw_payload("reply", {"ok": True}))
    assert back == Reply(ok=True, value=None, error="")
    job = decode(
        raw_payload(
            "run",
            {
                "build": "b",
                "step": "s",
                "attempt": 1,
                "command": "c",
                "root": "/r",
                "workdir": "./",
                "env": {},
                "out": [],
            },
        )
    )
    assert isinstance(job, RunJob)
    assert (job.pools, job.token, job.lease) == ([], "", 30.0)


def test_an_integer_is_accepted_for_a_float_field() -> None:
    body = body_of(StepDone("b", "s", 1, 0, 1.0, "h", "w", "", "", {}))
    body["duration"] = 3
    back = decode(raw_payload("done", body))
    assert isinstance(back, StepDone)
    assert back.duration == 3.0
    assert type(back.duration) is float


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode(EXAMPLES[0])
    # RQ and redis-py may hand over any buffer; the annotation only says bytes.
    assert decode(bytearray(data)) == EXAMPLES[0]  # type: ignore[arg-type]
    assert decode(memoryview(data)) == EXAMPLES[0]  # type: ignore[arg-type]


def test_expected_classes() -> None:
    data = encode(Started("b", "s", 1, "h", "w"))
    assert decode(data, StepDone, Started) == Started("b", "s", 1, "h", "w")
    err = assert_refused_expected(data, StepDone, Checked)
    assert "expected done, checked" in str(err)


def assert_refused_expected(data: bytes, *expected: type[Message]) -> WireError:
    with pytest.raises(WireError, match="got message type 'started'") as info:
        decode(data, *expected)
    return info.value


def test_serializer_round_trip() -> None:
    payload = encode(EXAMPLES[0])
    job: tuple[Any, ...] = ("stepup_dist.worker.perform", None, [payload], {})
    data = MsgpackSerializer.dumps(job)
    assert MsgpackSerializer.loads(data) == ["stepup_dist.worker.perform", None, [payload], {}]
    with pytest.raises(WireError, match="not msgpack"):
        MsgpackSerializer.loads(b"\x80\x03cos\nsystem\n")  # the start of a pickle


def test_serializer_refuses_objects_it_cannot_encode() -> None:
    with pytest.raises(TypeError, match="cannot encode object"):
        MsgpackSerializer.dumps(object())


# Refusals


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        b"hello world",  # one small int, then extra data
        b"\x80\x04\x95\x10\x00\x00\x00",  # a pickle header
        b"\x92\x01",  # an array of two with one item
    ],
)
def test_garbage_is_refused(data: bytes) -> None:
    err = assert_refused(data)
    assert err.payload == data
    assert "malformed message" in str(err)


@pytest.mark.parametrize("obj", [None, 1, "run", [1, "run", {}], {"v": 1, "t": "reply"}])
def test_msgpack_that_is_not_a_message_is_refused(obj: Any) -> None:
    assert_refused(msgpack.packb(obj), "expected keys v, t, f")


def test_extra_top_level_key_is_refused() -> None:
    data = msgpack.packb({"v": 1, "t": "reply", "f": {"ok": True}, "x": 0})
    assert_refused(data, "expected keys v, t, f")


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_truncated_payload_is_refused(message: Message) -> None:
    data = encode(message)
    for end in range(len(data)):
        err = assert_refused(data[:end])
        assert err.payload == data[:end]


def test_trailing_bytes_are_refused() -> None:
    assert_refused(encode(Reply(ok=True)) + b"\x00", "not msgpack")


def test_non_bytes_are_refused() -> None:
    assert_refused("text", "expected bytes, got str")
    assert_refused(None, "expected bytes, got NoneType")


@pytest.mark.parametrize("version", [0, 2, -1, "1", 1.5, None, [1], True, 1.0])
def test_wrong_version_is_refused(version: Any) -> None:
    assert_refused(raw_payload("reply", {"ok": True}, version), "unsupported version")


@pytest.mark.parametrize("tag", ["nope", "", "Reply", "TYPE", 1, None, b"reply", ["reply"]])
def test_unknown_type_is_refused(tag: Any) -> None:
    assert_refused(raw_payload(tag, {"ok": True}), "unknown message type")


@pytest.mark.parametrize("body", [None, [], ["ok", True], "ok", 1])
def test_fields_that_are_not_a_map_are_refused(body: Any) -> None:
    assert_refused(raw_payload("reply", body), "not a map")


WITH_FIELDS = [m for m in EXAMPLES if dataclasses.fields(m)]


@pytest.mark.parametrize("message", WITH_FIELDS, ids=lambda m: type(m).__name__)
def test_every_missing_required_field_is_refused(message: Message) -> None:
    required = [
        f.name
        for f in dataclasses.fields(message)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    assert required
    for name in required:
        body = body_of(message)
        del body[name]
        assert_refused(raw_payload(message.TYPE, body), f"missing fields \\['{name}'\\]")


@pytest.mark.parametrize("extra", ["bogus", "TYPE", "__class__"])
def test_unknown_field_is_refused(extra: str) -> None:
    body = body_of(Started("b", "s", 1, "h", "w"))
    body[extra] = "x"
    assert_refused(raw_payload("started", body), f"unknown fields \\['{extra}'\\]")


def test_unknown_binary_field_name_is_refused() -> None:
    body: dict[Any, Any] = body_of(Reply(ok=True))
    body[b"ok"] = True
    assert_refused(raw_payload("reply", body), "unknown fields")


@pytest.mark.parametrize(
    ("message", "name", "value"),
    [
        (Started("b", "s", 1, "h", "w"), "attempt", "1"),
        (Started("b", "s", 1, "h", "w"), "attempt", True),
        (Started("b", "s", 1, "h", "w"), "attempt", 1.0),
        (Started("b", "s", 1, "h", "w"), "host", b"h"),
        (Started("b", "s", 1, "h", "w"), "host", None),
        (Reply(ok=True), "ok", 1),
        (Reply(ok=True), "error", None),
        (EXAMPLES[0], "env", {"HOME": 5}),
        (EXAMPLES[0], "env", [["HOME", "x"]]),
        (EXAMPLES[0], "out", "b"),
        (EXAMPLES[0], "out", ["b", 1]),
        (EXAMPLES[0], "lease", "30"),
        (EXAMPLES[0], "lease", True),
        (EXAMPLES[2], "known", [[1, 2, 3, 4]]),
        (EXAMPLES[2], "known", [[1, 2, 3, 4, b"d", 6]]),
        (EXAMPLES[2], "known", [[1, 2, 3, "4", b"d"]]),
        (EXAMPLES[2], "known", [[1, 2, 3, True, b"d"]]),
        (EXAMPLES[2], "known", [[1, 2, 3, 4, "d"]]),
        (EXAMPLES[2], "known", [{"mode": 1}]),
        (EXAMPLES[2], "known", None),
        (EXAMPLES[5], "out_states", {"b": None}),
        (EXAMPLES[5], "duration", "0.5"),
        (EXAMPLES[8], "args", ["not", "a", "map"]),
        (
            EXAMPLES[8],
            "args",
            {"x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
        ),
    ],
)
def test_wrong_field_type_is_refused(message: Message, name: str, value: Any) -> None:
    body = body_of(message)
    body[name] = value
    err = assert_refused(raw_payload(message.TYPE, body), f"field '{name}' of '{message.TYPE}'")
    assert err.payload == raw_payload(message.TYPE, body)


def test_maps_with_integer_keys_are_refused() -> None:
    body = body_of(Reply(ok=True))
    body["value"] = {1: "x"}
    assert_refused(msgpack.packb({"v": 1, "t": "reply", "f": body}), "not msgpack")


@pytest.mark.parametrize(
    "ext",
    [
        msgpack.ExtType(5, b"code"),
        msgpack.ExtType(127, b""),
        msgpack.Timestamp(1, 0),
    ],
)
@pytest.mark.parametrize("where", ["version", "type", "value", "nested", "field name"])
def test_extension_types_are_refused(ext: Any, where: str) -> None:
    if where == "version":
        obj: dict[Any, Any] = {"v": ext, "t": "reply", "f": {"ok": True}}
    elif where == "type":
        obj = {"v": 1, "t": ext, "f": {"ok": True}}
    elif where == "value":
        obj = {"v": 1, "t": "reply", "f": {"ok": True, "value": ext}}
    elif where == "nested":
        obj = {"v": 1, "t": "call", "f": {**body_of(EXAMPLES[8]), "args": {"a": [{"b": ext}]}}}
    else:
        obj = {"v": 1, "t": "reply", "f": {"ok": True, ext: 1}}
    with pytest.raises(WireError):
        decode(msgpack.packb(obj))


@pytest.mark.parametrize("ext", [b"\xd6\xff\x00\x00\x00\x01", b"\xd4\x80\x00", b"\xc7\x00\x05"])
def test_raw_extension_values_are_refused(ext: bytes) -> None:
    """A timestamp (-1), a negative (reserved) code and an empty ext8, as the value of a reply."""
    prefix = msgpack.packb({"v": 1, "t": "reply", "f": {"ok": True, "value": None}})[:-1]
    assert decode(prefix + b"\xc0") == Reply(ok=True)
    assert_refused(prefix + ext)


def test_oversized_payload_is_refused_before_unpacking() -> None:
    # A zero-filled buffer costs no real memory until it is touched; msgpack never sees it.
    data = bytes(MAX_PAYLOAD + 1)
    err = assert_refused(data, f"exceeds {MAX_PAYLOAD}")
    assert err.payload == bytes(64)


def test_payload_limit_applies_to_valid_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Reply(ok=True, value="x" * 200))
    monkeypatch.setattr(wire, "MAX_PAYLOAD", len(data))
    assert decode(data) == Reply(ok=True, value="x" * 200)
    monkeypatch.setattr(wire, "MAX_PAYLOAD", len(data) - 1)
    assert_refused(data, "exceeds")
    with pytest.raises(WireError, match="exceeds"):
        MsgpackSerializer.loads(data)


def test_wire_error_shows_the_start_of_the_payload() -> None:
    data = b"\xc1" + b"z" * 500
    err = assert_refused(data)
    assert err.payload == data
    assert repr(data[:64]) in str(err)
    assert "501 bytes" in str(err)


# Fuzzing

_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_floats = st.floats(allow_nan=False)
_plain = st.recursive(
    st.none() | st.booleans() | _ints | _floats | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_states = st.builds(
    FileState,
    st.integers(0, 2**32),
    st.integers(0, 2**63),
    st.integers(0, 2**63),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=0, max_size=16),
)
_small_text = st.text(max_size=20)
_messages = st.one_of(
    st.builds(
        RunJob,
        build=_small_text,
        step=_small_text,
        attempt=_ints,
        command=_small_text,
        root=_small_text,
        workdir=_small_text,
        env=st.dictionaries(_small_text, st.none() | _small_text, max_size=4),
        out=st.lists(_small_text, max_size=4),
        pools=st.lists(_small_text, max_size=3),
        token=_small_text,
        lease=_floats,
    ),
    st.builds(
        CheckJob,
        build=_small_text,
        request=_ints,
        root=_small_text,
        paths=st.lists(_small_text, max_size=4),
        known=st.lists(st.none() | _states, max_size=4),
    ),
    st.builds(Started, _small_text, _small_text, _ints, _small_text, _small_text),
    st.builds(
        StepDone,
        build=_small_text,
        step=_small_text,
        attempt=_ints,
        returncode=_ints,
        duration=_floats,
        host=_small_text,
        worker=_small_text,
        stdout=st.text(max_size=50),
        stderr=st.text(max_size=50),
        out_states=st.dictionaries(_small_text, _states, max_size=4),
        error=_small_text,
    ),
    st.builds(
        Checked,
        build=_small_text,
        request=_ints,
        host=_small_text,
        states=st.lists(st.none() | _states, max_size=4),
    ),
    st.builds(
        Call,
        build=_small_text,
        step=_small_text,
        method=_small_text,
        args=st.dictionaries(_small_text, _plain, max_size=4),
        reply_to=_small_text,
    ),
    st.builds(Reply, ok=st.booleans(), value=_plain, error=_small_text),
)


def decode_or_wire_error(data: bytes) -> Message | None:
    """The property: a Message that re-encodes to itself, or a WireError; nothing else."""
    error: WireError | None
    try:
        message = decode(data)
    except WireError as exc:
        error = exc
    else:
        error = None
    if error is not None:
        assert error.payload is not None
        return None
    assert type(message) in MESSAGE_CLASSES
    again = encode(message)
    assert encode(decode(again)) == again
    return message


@FUZZ
@given(_messages)
def test_fuzz_round_trip(message: Message) -> None:
    assert decode(encode(message)) == message


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    decode_or_wire_error(data)


@FUZZ
@given(
    st.fixed_dictionaries(
        {
            "v": st.just(VERSION) | _plain,
            "t": st.sampled_from(sorted(wire._CLASSES)) | _plain,
            "f": st.dictionaries(
                st.sampled_from(
                    sorted({f.name for c in MESSAGE_CLASSES for f in dataclasses.fields(c)})
                )
                | _small_text,
                _plain | _states.map(dataclasses.astuple).map(list),
                max_size=12,
            ),
        }
    )
)
def test_fuzz_structured_payloads(obj: dict[str, Any]) -> None:
    decode_or_wire_error(msgpack.packb(obj))


@FUZZ
@given(_messages, st.data())
def test_fuzz_mutated_payloads(message: Message, data: st.DataObject) -> None:
    payload = bytearray(encode(message))
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete", "several"]))
    if kind == "truncate":
        del payload[data.draw(st.integers(0, len(payload) - 1)) :]
    else:
        for _ in range(data.draw(st.integers(1, 5)) if kind == "several" else 1):
            if not payload:
                break
            pos = data.draw(st.integers(0, len(payload) - 1))
            op = kind if kind != "several" else data.draw(st.sampled_from(["flip", "insert"]))
            if op == "flip":
                payload[pos] ^= data.draw(st.integers(1, 255))
            elif op == "insert":
                payload.insert(pos, data.draw(st.integers(0, 255)))
            else:
                del payload[pos]
    result = decode_or_wire_error(bytes(payload))
    if kind == "truncate":
        assert result is None


def test_nan_round_trips_byte_for_byte() -> None:
    """NaN breaks ==, not the wire: the same message encodes to the same bytes."""
    message = Reply(ok=True, value=math.nan)
    assert encode(decode(encode(message))) == encode(message)
