"""Configuration: flags over `STEPUP_DIST_*` over defaults, validated, every problem at once."""

import dataclasses

import pytest

from stepup_dist.config import DEFAULT_LEASE, DEFAULT_PREFIX, Config, load_config
from stepup_dist.errors import ConfigError, UserError


def test_defaults() -> None:
    config = load_config(environ={})
    assert config == Config(redis_url=None, prefix="stepup", lease=30.0)
    assert (DEFAULT_PREFIX, DEFAULT_LEASE) == ("stepup", 30.0)
    assert type(config.lease) is float


def test_environment_variables() -> None:
    environ = {
        "STEPUP_DIST_REDIS_URL": "redis://central:6379/0",
        "STEPUP_DIST_PREFIX": "lab.x",
        "STEPUP_DIST_LEASE": "12.5",
        "UNRELATED": "ignored",
    }
    config = load_config(environ=environ)
    assert config == Config(redis_url="redis://central:6379/0", prefix="lab.x", lease=12.5)


def test_flags_override_the_environment() -> None:
    environ = {
        "STEPUP_DIST_REDIS_URL": "redis://env",
        "STEPUP_DIST_PREFIX": "fromenv",
        "STEPUP_DIST_LEASE": "12",
    }
    config = load_config(redis_url="rediss://flag", prefix="fromflag", lease=99, environ=environ)
    assert config == Config(redis_url="rediss://flag", prefix="fromflag", lease=99.0)


def test_flags_override_invalid_environment_values() -> None:
    environ = {
        "STEPUP_DIST_REDIS_URL": "http://bad",
        "STEPUP_DIST_PREFIX": "bad prefix",
        "STEPUP_DIST_LEASE": "soon",
    }
    config = load_config(redis_url="unix:///run/r.sock", prefix="ok", lease="5", environ=environ)
    assert config == Config(redis_url="unix:///run/r.sock", prefix="ok", lease=5.0)


def test_each_flag_alone_overrides_only_itself() -> None:
    environ = {"STEPUP_DIST_PREFIX": "fromenv", "STEPUP_DIST_LEASE": "12"}
    config = load_config(lease=7.0, environ=environ)
    assert config == Config(redis_url=None, prefix="fromenv", lease=7.0)


def test_empty_values_fall_back() -> None:
    environ = {"STEPUP_DIST_REDIS_URL": "", "STEPUP_DIST_PREFIX": ""}
    assert load_config(environ=environ) == Config(None, DEFAULT_PREFIX, DEFAULT_LEASE)
    environ = {"STEPUP_DIST_REDIS_URL": "redis://env", "STEPUP_DIST_PREFIX": "env"}
    assert load_config(redis_url="", prefix="", environ=environ) == Config(
        "redis://env", "env", DEFAULT_LEASE
    )


def test_environ_argument_replaces_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPUP_DIST_PREFIX", "from-os")
    monkeypatch.setenv("STEPUP_DIST_LEASE", "not a number")
    assert load_config(environ={}) == Config(None, DEFAULT_PREFIX, DEFAULT_LEASE)


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPUP_DIST_PREFIX", "from-os")
    monkeypatch.setenv("STEPUP_DIST_LEASE", "3")
    monkeypatch.delenv("STEPUP_DIST_REDIS_URL", raising=False)
    assert load_config() == Config(None, "from-os", 3.0)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0",
        "rediss://user:pw@h:6380",
        "unix:///tmp/r.sock",
        "valkey://h",
        "valkeys://h",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert load_config(environ={"STEPUP_DIST_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize("url", ["http://h", "h:6379", "REDIS://h", "redis:/h", "/tmp/r.sock"])
def test_refused_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="must start with one of"):
        load_config(redis_url=url, environ={})


@pytest.mark.parametrize("prefix", ["a", "A-b_c.d:e", "0", "x" * 100])
def test_accepted_prefixes(prefix: str) -> None:
    assert load_config(prefix=prefix, environ={}).prefix == prefix


@pytest.mark.parametrize("prefix", ["has space", "a/b", "a*", "ü", "a\n", "{x}"])
def test_refused_prefixes(prefix: str) -> None:
    with pytest.raises(ConfigError, match="STEPUP_DIST_PREFIX"):
        load_config(environ={"STEPUP_DIST_PREFIX": prefix})


@pytest.mark.parametrize(
    ("lease", "expected"), [("1", 1.0), ("86400", 86400.0), (" 2.5 ", 2.5), ("1e2", 100.0)]
)
def test_accepted_leases(lease: str, expected: float) -> None:
    assert load_config(environ={"STEPUP_DIST_LEASE": lease}).lease == expected


@pytest.mark.parametrize("lease", ["0.99", "0", "-5", "86400.5", "inf", "nan"])
def test_leases_out_of_range(lease: str) -> None:
    with pytest.raises(ConfigError, match="must lie between 1 and 86400 seconds"):
        load_config(environ={"STEPUP_DIST_LEASE": lease})


@pytest.mark.parametrize("lease", ["", "soon", "30s", [30]])
def test_leases_that_are_not_numbers(lease: object) -> None:
    with pytest.raises(ConfigError, match="is not a number of seconds"):
        load_config(lease=lease, environ={})  # type: ignore[arg-type]


def test_every_problem_is_reported_at_once() -> None:
    environ = {
        "STEPUP_DIST_REDIS_URL": "http://wrong",
        "STEPUP_DIST_PREFIX": "bad prefix",
        "STEPUP_DIST_LEASE": "soon",
    }
    with pytest.raises(ConfigError) as info:
        load_config(environ=environ)
    message = str(info.value)
    assert "'http://wrong'" in message
    assert "'bad prefix'" in message
    assert "'soon'" in message
    assert message.count(";") == 2


def test_two_problems_from_flags_and_environment() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(prefix="a b", environ={"STEPUP_DIST_LEASE": "0"})
    message = str(info.value)
    assert "'a b'" in message
    assert "between 1 and 86400" in message


def test_config_error_is_a_user_error() -> None:
    with pytest.raises(UserError):
        load_config(prefix="a b", environ={})


def test_config_is_frozen() -> None:
    config = load_config(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.prefix = "other"  # type: ignore[misc]
