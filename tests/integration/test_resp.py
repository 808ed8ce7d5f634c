"""The plan side's own Redis client (broker/resp.py) against a real server."""

import pytest

from stepup_dist.broker.resp import RespClient, simple_url
from stepup_dist.errors import BrokerUnavailable


@pytest.mark.parametrize(
    ("url", "simple"),
    [
        ("unix:///tmp/s.sock", True),
        ("redis://h:6379", True),
        ("redis://u:p@h:6379/3", True),
        ("valkey://h", True),
        ("unix:///tmp/s.sock?db=2", True),
        ("rediss://h:6380", False),
        ("valkeys://h", False),
        ("redis://h?ssl_ca_certs=/ca.pem", False),
    ],
)
def test_which_urls_it_serves(url: str, simple: bool) -> None:
    assert simple_url(url) is simple


def test_commands_and_replies(server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    c = RespClient(server.url)
    key = f"{prefix}:resp"
    assert c.command("PING") == b"PONG"
    assert c.command("RPUSH", key, b"\x00\xffbinary\r\n", "two") == 2
    assert c.command("LRANGE", key, 0, -1) == [b"\x00\xffbinary\r\n", b"two"]
    assert c.command("BLPOP", key, 1) == [key.encode(), b"\x00\xffbinary\r\n"]
    assert c.command("GET", f"{prefix}:missing") is None
    assert c.command("BLPOP", f"{prefix}:empty", 1) is None
    big = b"x" * 300_000  # more than one read
    c.command("SET", key + "big", big)
    assert c.command("GET", key + "big") == big
    with pytest.raises(BrokerUnavailable, match="WRONGTYPE"):
        c.command("LPUSH", key + "big", "x")
    c.close()


def test_a_bad_login_and_no_server_are_one_line(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # This server has no password: AUTH is an error naming it (test_acl.py logs in as
    # ACL users through this client, in the plans of its builds).
    with pytest.raises(BrokerUnavailable, match=r"^Redis at unix://.*AUTH") as info:
        RespClient(server.url, password="wrong")
    assert "\n" not in str(info.value)
    with pytest.raises(BrokerUnavailable, match="cannot reach Redis"):
        RespClient(f"unix://{tmp_path}/none.sock")
