"""Which queue a build's jobs go to (stepup_dist/routing.py), without a server."""

from dataclasses import dataclass

import pytest

from stepup_dist.planner.routing import WAITING_GRACE, WAITING_REPEAT, Router, covers


@dataclass(frozen=True)
class G:
    queue: str
    roots: tuple[str, ...]
    workers: int
    idle: int = 0
    hosts: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("roots", "folder", "expected"),
    [
        ((), "/any/where", True),
        (("/a",), "/a", True),
        (("/a",), "/a/b", True),
        (("/a/",), "/a/b", True),
        (("/a",), "/ab", False),
        (("/a/b",), "/a", False),
        (("/x", "/a"), "/a/c", True),
    ],
)
def test_covers(roots: tuple[str, ...], folder: str, expected: bool) -> None:
    assert covers(roots, folder) is expected


def test_only_live_groups_that_cover_the_folder_get_jobs() -> None:
    router = Router("/proj/p0")
    router.update([G("roots.1", ("/proj/p1",), 3), G("roots.2", ("/proj",), 0)], now=0.0)
    assert router.pick() is None
    router.update([G("roots.1", ("/proj/p1",), 3), G("roots.2", ("/proj",), 2)], now=1.0)
    assert router.pick() == "roots.2"


def test_jobs_spread_over_groups_by_unstarted_jobs_per_worker() -> None:
    router = Router("/proj", local="build.b", local_workers=1)
    router.update([G("steps", (), 3)], now=0.0)
    picks = []
    for i in range(8):
        queue = router.pick()
        assert queue is not None
        router.sent(f"s{i}", queue)
        picks.append(queue)
    assert picks.count("build.b") == 2
    assert picks.count("steps") == 6
    for i in range(8):
        router.started(f"s{i}")
    assert router.unstarted == {}


def test_the_builds_own_workers_come_first_when_even() -> None:
    router = Router("/proj", local="build.b", local_workers=2)
    router.update([G("steps", (), 2)], now=0.0)
    assert router.pick() == "build.b"


def test_a_step_placed_on_a_host_goes_to_a_group_that_reads_there() -> None:
    router = Router("/proj", local="build.b", local_workers=2)
    # The local workers offer nothing; an any-folder worker offers gpu on vm.
    router.update([G("build.b", (), 2), G("steps", (), 1, hosts=frozenset({"vm"}))], now=0.0)
    assert router.pick(host="vm") == "steps"
    assert router.hosts() == {"vm"}
    # Local workers with resources on vm come first when even.
    router.update([G("build.b", (), 1, hosts=frozenset({"vm"})), G("steps", (), 1)], now=1.0)
    assert router.pick(host="vm") == "build.b"
    # A host where no serving worker reads: nowhere.
    assert router.pick(host="other") is None


def test_waiting_is_said_after_a_grace_once_per_situation() -> None:
    router = Router("/proj", give_up=10.0)
    router.update([G("roots.1", ("/other",), 2)], now=0.0)
    assert router.waiting_text(0.0, held=1) is None  # workers may be starting
    text = router.waiting_text(WAITING_GRACE, held=1)
    assert text == (
        "steps of /proj: no connected worker serves this folder "
        "(2 workers are connected: 2 serve /other)"
    )
    assert router.waiting_text(WAITING_GRACE + 1, held=1) is None  # said once
    # Other workers, the same cause: said again only after a while, with what they serve.
    router.update([G("roots.1", ("/other",), 1)], now=3.0)
    assert router.waiting_text(3.0, held=1) is None
    again = router.waiting_text(WAITING_GRACE + WAITING_REPEAT, held=1)
    assert again is not None
    assert "1 worker is connected: 1 serves /other" in again
    assert not router.gave_up(9.9)
    assert router.gave_up(10.0)


def test_nothing_to_send_is_no_waiting() -> None:
    router = Router("/proj", give_up=0.0)
    router.update([], now=0.0)
    assert router.waiting_text(100.0, held=0) is None
    assert not router.gave_up(100.0)


def test_a_serving_worker_ends_the_wait() -> None:
    router = Router("/proj", give_up=5.0)
    router.update([], now=0.0)
    router.waiting_text(0.0, held=1)
    assert router.waiting_text(3.0, held=1) is not None
    assert "no worker is connected" in router.served()
    router.update([G("steps", (), 1)], now=4.0)
    assert router.waiting_text(4.0, held=1) is None
    assert not router.gave_up(100.0)
