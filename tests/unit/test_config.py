"""Configuration: flags over `STEPUP_DIST_*` over defaults, validated, every problem at once."""

import dataclasses
import os
import re

import pytest

from stepup_dist.config import (
    DEFAULT_LEASE,
    DEFAULT_PREFIX,
    Config,
    load_config,
    split_password,
    to_environ,
)
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


# Secrets, TLS files, roots and the environment handed to child processes


def _secret_file(tmp_path, text: str, mode: int = 0o600):  # type: ignore[no-untyped-def]
    path = tmp_path / "secret"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_secret_file_with_two_secrets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _secret_file(tmp_path, "a" * 32 + "\n\n" + "b" * 20 + "\n")
    config = load_config(environ={"STEPUP_DIST_SECRET_FILE": str(path)})
    assert config.secrets == (b"a" * 32, b"b" * 20)
    assert config.keyring is not None
    assert config.keyring.secrets == config.secrets
    assert "a" * 32 not in repr(config)
    assert load_config(environ={}).keyring is None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_secret_file_readable_by_others_is_refused(tmp_path, mode: int) -> None:  # type: ignore[no-untyped-def]
    path = _secret_file(tmp_path, "a" * 32, mode)
    with pytest.raises(ConfigError) as info:
        load_config(environ={"STEPUP_DIST_SECRET_FILE": str(path)})
    message = str(info.value)
    assert "\n" not in message
    assert "readable only by its owner" in message
    assert oct(mode) in message
    assert "a" * 32 not in message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "one or two secrets"),
        ("a" * 32 + "\n" + "b" * 32 + "\n" + "c" * 32, "one or two secrets"),
        ("short", "at least 16 characters"),
    ],
)
def test_bad_secret_files(tmp_path, text: str, why: str) -> None:  # type: ignore[no-untyped-def]
    path = _secret_file(tmp_path, text)
    with pytest.raises(ConfigError, match=why):
        load_config(environ={"STEPUP_DIST_SECRET_FILE": str(path)})


def test_missing_secret_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"cannot read secret file .*nothere"):
        load_config(environ={"STEPUP_DIST_SECRET_FILE": str(tmp_path / "nothere")})


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_secret_file_of_another_user_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _secret_file(tmp_path, "a" * 32)
    os.chown(path, 12345, 12345)
    with pytest.raises(ConfigError, match="must belong to the user running stepup-dist"):
        load_config(environ={"STEPUP_DIST_SECRET_FILE": str(path)})


@pytest.mark.parametrize(
    ("ttl", "ok"), [("60", True), ("2592000", True), ("59", False), ("x", False)]
)
def test_signature_ttl(ttl: str, ok: bool) -> None:
    environ = {"STEPUP_DIST_SIGNATURE_TTL": ttl}
    if ok:
        assert load_config(environ=environ).signature_ttl == float(ttl)
    else:
        with pytest.raises(ConfigError, match=r"STEPUP_DIST_SIGNATURE_TTL|signature ttl"):
            load_config(environ=environ)


def test_roots_from_flags_or_environment_are_resolved(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    real = os.path.realpath(tmp_path / "real")
    config = load_config(roots=[str(tmp_path / "link"), str(tmp_path / "real")], environ={})
    assert config.roots == (real,)
    environ = {"STEPUP_DIST_ROOTS": f"{tmp_path / 'link'}:/"}
    assert load_config(environ=environ).roots == (real, "/")
    with pytest.raises(ConfigError, match=r"root .*nothere is not a directory"):
        load_config(roots=[str(tmp_path / "nothere")], environ={})


def test_tls_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    config = load_config(redis_url="rediss://h:6380", tls_ca=str(ca), environ={})
    assert config.tls_ca == str(ca)
    with pytest.raises(ConfigError, match="need a rediss:// or valkeys:// server URL"):
        load_config(redis_url="redis://h", tls_ca=str(ca), environ={})
    with pytest.raises(ConfigError, match="go together"):
        load_config(redis_url="rediss://h", tls_cert=str(ca), environ={})
    with pytest.raises(ConfigError, match="not a readable file"):
        load_config(redis_url="rediss://h", environ={"STEPUP_DIST_TLS_CA": str(tmp_path / "no")})


def test_bad_url_message_hides_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(redis_url="http://user:hunter2hunter2@h", environ={})
    assert "hunter2" not in str(info.value)
    assert "user:***@h" in str(info.value)


def test_to_environ_gives_the_same_config_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = _secret_file(tmp_path, "s" * 32)
    (tmp_path / "ca").write_text("x")
    environ = {
        "STEPUP_DIST_REDIS_URL": "rediss://u:pw@h:6380",
        "STEPUP_DIST_PREFIX": "p",
        "STEPUP_DIST_LEASE": "7",
        "STEPUP_DIST_TLS_CA": str(tmp_path / "ca"),
        "STEPUP_DIST_SECRET_FILE": str(secret),
        "STEPUP_DIST_SIGNATURE_TTL": "600",
        "STEPUP_DIST_ROOTS": str(tmp_path),
    }
    config = load_config(environ=environ)
    assert load_config(environ=to_environ(config)) == config


def test_to_environ_without_password_moves_it_apart() -> None:
    config = load_config(environ={"STEPUP_DIST_REDIS_URL": "redis://u:pw%40x@h:1/0"})
    env = to_environ(config, with_password=False)
    assert env["STEPUP_DIST_REDIS_URL"] == "redis://u@h:1/0"
    assert env["STEPUP_DIST_REDIS_PASSWORD"] == "pw@x"
    again = load_config(environ=env)
    assert (again.redis_url, again.redis_password) == ("redis://u@h:1/0", "pw@x")


@pytest.mark.parametrize(
    ("url", "bare", "password"),
    [
        ("redis://h:1", "redis://h:1", None),
        ("redis://:pw@h:1", "redis://h:1", "pw"),
        ("rediss://u:pw@h:1/2?ssl_ca_certs=/c", "rediss://u@h:1/2?ssl_ca_certs=/c", "pw"),
        ("unix://u:pw@/tmp/s.sock", "unix://u@/tmp/s.sock", "pw"),
    ],
)
def test_split_password(url: str, bare: str, password: str | None) -> None:
    assert split_password(url) == (bare, password)


def test_the_readme_table_lists_every_variable_the_configuration_reads() -> None:
    from pathlib import Path

    import stepup_dist.config

    source = Path(stepup_dist.config.__file__).read_text()
    read = set(re.findall(r'"(STEPUP_DIST_[A-Z_]+)"', source))
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `STEPUP_DIST_")]
    listed = {
        name for row in rows for name in re.findall(r"`(STEPUP_DIST_[A-Z_]+)`", row.split(" | ")[0])
    }
    assert {"STEPUP_DIST_SHARED_PREFIX", "STEPUP_DIST_GIVE_UP"} <= read
    assert sorted(read - listed) == []
