"""`stepup-dist dashboard`: the web server (aiohttp) and its sampler.

Routes, all read-only (GET; anything else is answered 405):

- `/`: the page (`static/index.html`), and `/static/...` its script and style sheet;
- `/api/status`: the latest reading as the page shows it (no server read: the sampler's);
- `/api/history`: the use of each pool over the last 24 hours (`history.py`);
- `/metrics`: Prometheus metrics, read from the server at each scrape (`metrics.py`).

The sampler reads the server every `INTERVAL` seconds in a thread (redis-py is blocking),
so any number of open pages costs the server nothing more.
"""

import asyncio
import contextlib
import ipaddress
import signal
import sys
import time
from importlib.resources import files
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..broker.connection import connect_config
from ..broker.keys import Keys
from ..config import Config, redact
from ..errors import BrokerUnavailable, ConfigError
from .history import PoolHistory
from .metrics import Metrics
from .source import ServerReader
from .view import Tracker, page_data

__all__ = ("INTERVAL", "Dashboard", "make_app", "serve")

INTERVAL = 2.0
"""Seconds between two reads of the server by the sampler; the page polls as often."""
_STATIC = ("index.html", "dashboard.js", "dashboard.css")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
_HEADERS = {
    # Everything the page needs comes from this server: no CDN, no inline script.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Dashboard:
    """The sampler's state: the latest page data, the pool history and the histograms."""

    def __init__(self, reader: ServerReader, server: str, prefix: str):
        self.reader = reader
        self.server = server
        """The server's URL without its password."""
        self.prefix = prefix
        self.tracker = Tracker()
        self.history = PoolHistory()
        self.metrics = Metrics(reader.read)
        self.error: str | None = None
        self._page: dict[str, Any] | None = None

    def sample(self) -> None:
        """One read of the server (in the sampler thread)."""
        try:
            reading = self.reader.read()
            jobs = self.reader.finished(sorted(reading.queues))
        except BrokerUnavailable as exc:
            self.error = str(exc)
            return
        self.error = None
        self.tracker.update(reading)
        self.history.add(reading)
        self.metrics.observe(jobs)
        self._page = page_data(reading, self.tracker, time.time())

    def page(self) -> dict[str, Any]:
        page = self._page or {"read_at": None}
        return {
            **page,
            "server": self.server,
            "prefix": self.prefix,
            "interval": INTERVAL,
            "error": self.error,
        }


def make_app(dashboard: Dashboard) -> web.Application:
    static = files(__package__) / "static"
    assets = {name: (static / name).read_bytes() for name in _STATIC}

    def asset(name: str) -> web.Response:
        suffix = name[name.rindex(".") :]
        return web.Response(
            body=assets[name], content_type=_TYPES[suffix], charset="utf-8", headers=_HEADERS
        )

    async def index(_: web.Request) -> web.Response:
        return asset("index.html")

    async def static_file(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets or name == "index.html":
            raise web.HTTPNotFound()
        return asset(name)

    async def status(_: web.Request) -> web.Response:
        return web.json_response(dashboard.page(), headers=_HEADERS)

    async def history(_: web.Request) -> web.Response:
        return web.json_response(dashboard.history.data(), headers=_HEADERS)

    async def metrics(_: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, dashboard.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes(
        [
            web.get("/", index),
            web.get("/static/{name}", static_file),
            web.get("/api/status", status),
            web.get("/api/history", history),
            web.get("/metrics", metrics),
        ]
    )
    return app


async def _sample_forever(dashboard: Dashboard) -> None:
    while True:
        started = time.monotonic()
        await asyncio.to_thread(dashboard.sample)
        await asyncio.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))


async def _serve(dashboard: Dashboard, host: str, port: int) -> None:
    app = make_app(dashboard)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    # SIGTERM (systemd, kill) stops it as Ctrl-C does: cleanly, with exit code 0.
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    address = runner.addresses[0]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{address[1]}/"
    print(
        f"stepup-dist dashboard: {url} (metrics at {url}metrics), "
        f"reading {dashboard.server} prefix {dashboard.prefix!r}, every {INTERVAL:g} s",
        flush=True,
    )
    try:
        await _sample_forever(dashboard)
    except asyncio.CancelledError:
        pass
    finally:
        await runner.cleanup()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(config: Config, host: str, port: int) -> None:
    """Serve the dashboard until Ctrl-C or SIGTERM (KeyboardInterrupt, raised by the caller)."""
    url = config.server("the dashboard")
    # A server that stops answering must not hang the sampler (nor a scrape) forever.
    client = connect_config(config, socket_timeout=10.0)
    keys = Keys.of(config)
    dashboard = Dashboard(ServerReader(client, keys), redact(url), config.prefix)
    if not _loopback(host):
        print(
            f"stepup-dist dashboard: warning: listening on {host}: the page and /metrics have "
            "no login, so whoever reaches this port sees every build, user and step",
            file=sys.stderr,
        )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(dashboard, host, port))
