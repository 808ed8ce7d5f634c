"""`stepup-dist dashboard`: /metrics against `status --json` during real builds, the page's
JSON, the admin role it needs, and no password anywhere it shows."""

import secrets
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.helpers import stop
from tests.integration.dashboard_kit import (
    HOLD,
    DashboardProcess,
    cluster_pool,
    pool_set,
    start_build,
    start_workers,
    status_json,
    wait_for,
)
from tests.integration.servers import clean_env, start_server

pytestmark = pytest.mark.timeout(150)

LIC = (("build", ""), ("host", ""), ("kind", "cluster"), ("pool", "lic"))


def _holding_plan(project: Project, go: Path, tag: str) -> None:
    project.plan(
        "from stepup.core.api import step\n"
        f"step({HOLD.format(go=go, tag=tag)!r}, pool='lic')\n"
        f"step('echo quick-{tag}')\n"
    )


def test_metrics_agree_with_status_during_a_build(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    url = server.url
    pool_set(url, prefix, "lic", 1, tmp_path)
    go = tmp_path / "go"
    first, second = Project(tmp_path / "first"), Project(tmp_path / "second")
    _holding_plan(first, go, "first")
    _holding_plan(second, go, "second")
    procs = [start_workers(url, prefix, "-j", "2")]
    dashboard = DashboardProcess(clean_env(), "--redis", url, "--prefix", prefix)
    try:
        procs.append(start_build(first, url, prefix))
        wait_for(
            "a holder", lambda: cluster_pool(status_json(url, prefix, tmp_path), "lic")["holders"]
        )
        procs.append(start_build(second, url, prefix))
        # Both builds reported, the second one in line: a state that holds until `go`.
        wait_for(
            "the second build in line, both builds reported",
            lambda: (
                cluster_pool(status_json(url, prefix, tmp_path), "lic")["waiters"]
                and len(dashboard.status()["builds"]) == 2
                and all(b["done"] == 2 for b in dashboard.status()["builds"])
            ),
        )
        status = status_json(url, prefix, tmp_path)
        samples, types = dashboard.metrics()
        pool = cluster_pool(status, "lic")
        assert samples[("stepup_dist_up", ())] == 1
        assert samples[("stepup_dist_pool_size", LIC)] == pool["size"] == 1
        assert samples[("stepup_dist_pool_slots_held", LIC)] == len(pool["holders"]) == 1
        assert samples[("stepup_dist_pool_builds_waiting", LIC)] == len(pool["waiters"]) == 1
        for name, depth in status["queues"].items():
            assert samples[("stepup_dist_queue_jobs", (("queue", name),))] == depth
        busy = sum(1 for w in status["workers"] if w["state"] == "busy")
        assert samples[("stepup_dist_workers", (("state", "busy"),))] == busy == 1
        idle = len(status["workers"]) - busy
        assert samples[("stepup_dist_workers", (("state", "idle"),))] == idle == 1
        # Both builds, by folder; each finished plan.py and its quick step on this host.
        infos = {
            dict(labels)["folder"]: dict(labels)
            for (n, labels) in samples
            if n == "stepup_dist_build_info"
        }
        assert set(infos) == {str(first.root), str(second.root)}
        for info in infos.values():
            build = info["build"]
            finished = [
                v
                for (n, labels), v in samples.items()
                if n == "stepup_dist_steps_finished_total" and dict(labels)["build"] == build
            ]
            assert sum(finished) == 2
            assert samples[("stepup_dist_build_steps", (("build", build), ("state", "done")))] == 2
        holder = pool["holders"][0]
        assert infos[str(first.root)]["build"] == holder["build"]
        assert pool["waiters"] == [infos[str(second.root)]["build"]]
        assert types["stepup_dist_steps_finished"] == "counter"
        assert types["stepup_dist_pool_slots_held"] == "gauge"
        assert types["stepup_dist_step_wait_seconds"] == "histogram"

        # The page's JSON says the same, by folder.
        page = dashboard.status()
        (lic,) = page["cluster_pools"]
        assert [h["folder"] for h in lic["holders"]] == [str(first.root)]
        assert [w["folder"] for w in lic["waiting"]] == [str(second.root)]
        assert lic["waiting"][0]["waited"] >= 0

        go.touch()
        for proc in procs[1:]:
            out, _ = proc.communicate(timeout=90)
            assert proc.returncode == 0, out

        def settled() -> dict | None:
            samples, _ = dashboard.metrics()
            ended = samples[("stepup_dist_pool_slots_held", LIC)] == 0
            waiting = samples[("stepup_dist_pool_builds_waiting", LIC)]
            builds = [k for k in samples if k[0] == "stepup_dist_build_info"]
            # 6 steps ran: plan.py, the holding step and the quick step of each build.
            seen = samples[("stepup_dist_step_run_seconds_count", ())] >= 6
            return samples if ended and not waiting and not builds and seen else None

        samples = wait_for("the pool freed, the builds gone and the steps counted", settled)
        assert (
            samples[("stepup_dist_step_wait_seconds_count", ())]
            == samples[("stepup_dist_step_run_seconds_count", ())]
        )
        # The holding steps ran until `go`: the run-time histogram saw them.
        assert samples[("stepup_dist_step_run_seconds_sum", ())] > 0
    finally:
        stop(procs)
        dashboard.stop()


def test_needs_the_admin_role_and_never_shows_a_password(tmp_path: Path) -> None:
    users = {
        "ops": (secrets.token_hex(12), "admin", "team"),
        "planner": (secrets.token_hex(12), "planner", "team"),
    }
    acl = start_server(tmp_path / "server", users)
    shown = []
    try:
        admin = DashboardProcess(
            clean_env(STEPUP_DIST_REDIS_URL=acl.url("ops"), STEPUP_DIST_PREFIX="team")
        )
        try:
            page = wait_for("a reading", lambda: (p := admin.status())["read_at"] and p)
            assert page["error"] is None
            assert page["server"].startswith("unix://ops:")
            samples, _ = admin.metrics()
            assert samples[("stepup_dist_up", ())] == 1
            shown += [
                admin.first_line,
                admin.get("/api/status"),
                admin.get("/metrics"),
                admin.get("/"),
            ]
        finally:
            shown += admin.stop()
        # Without SCAN (the admin role's), the server cannot be read: said once, no password.
        planner = DashboardProcess(
            clean_env(STEPUP_DIST_REDIS_URL=acl.url("planner"), STEPUP_DIST_PREFIX="team")
        )
        try:
            page = wait_for("an error", lambda: (p := planner.status())["error"] and p)
            assert "lacks a grant" in page["error"]
            samples, _ = planner.metrics()
            assert samples[("stepup_dist_up", ())] == 0
            shown += [planner.first_line, planner.get("/api/status"), planner.get("/metrics")]
        finally:
            shown += planner.stop()
    finally:
        acl.stop()
    for text in shown:
        for password in acl.passwords.values():
            assert password not in text


def test_read_only_and_on_localhost(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    import urllib.error
    import urllib.request

    dashboard = DashboardProcess(clean_env(), "--redis", server.url, "--prefix", prefix)
    try:
        assert dashboard.url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(dashboard.url + "api/status", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
        page = dashboard.get("/")
        assert '<script src="/static/dashboard.js"' in page
        assert "://" not in page  # nothing from another server: no CDN
    finally:
        dashboard.stop()
    assert dashboard.proc.returncode == 0, dashboard.stderr  # SIGTERM: a clean stop


def test_a_server_that_goes_away_is_shown_and_comes_back(tmp_path: Path) -> None:
    from stepup_dist.broker.server import EmbeddedServer

    own = EmbeddedServer(tmp_path / "server")
    own.start()
    dashboard = DashboardProcess(clean_env(), "--redis", own.url)
    try:
        wait_for("a reading", lambda: dashboard.status()["read_at"])
        own.stop()
        page = wait_for("the error", lambda: (p := dashboard.status())["error"] and p)
        assert "cannot read" in page["error"]
        assert page["read_at"] is not None  # the last reading is still shown
        samples, _ = dashboard.metrics()
        assert samples[("stepup_dist_up", ())] == 0
        own.start()
        wait_for("the server again", lambda: dashboard.status()["error"] is None)
        samples, _ = dashboard.metrics()
        assert samples[("stepup_dist_up", ())] == 1
    finally:
        dashboard.stop()
        own.stop()
    assert dashboard.proc.returncode == 0, dashboard.stderr
