"""The dashboard's page as a real browser renders it: headless Chromium, driven by selenium.

A server, workers, two builds contending for a cluster pool and the dashboard run for real;
the rendered page must show the pool's holder and the waiting build, then clear them when
the builds end, without a reload. The screenshot in docs/img/dashboard.png must be current:
it carries, in a PNG text chunk, a fingerprint of the page (its static files and the outline
of the rendered page: headings and column headers); the test compares it with the page it
renders, and the heights within 30 %. To make a new one after changing the page:

    STEPUP_DIST_UPDATE_SCREENSHOT=1 pytest tests/integration/test_dashboard_browser.py

Chromium and its driver come from Debian (`apt-get install chromium chromium-driver`; .ci/run
installs them). Without them the test is skipped with the reason, except under CI=true,
where it fails.
"""

import hashlib
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.helpers import stop
from tests.integration.dashboard_kit import (
    HOLD,
    DashboardProcess,
    pool_set,
    start_build,
    start_workers,
)
from tests.integration.servers import clean_env

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "img" / "dashboard.png"
STATIC = REPO / "stepup_dist" / "dashboard" / "static"
KEY = "stepup-dist-page"
WIDTH = 1280
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WIDTH},900",
)


def _unavailable(reason: str) -> None:
    reason += ": apt-get install chromium chromium-driver, pip install selenium (.ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("no selenium")
    binary = os.environ.get("STEPUP_DIST_TEST_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("STEPUP_DIST_TEST_CHROMEDRIVER") or shutil.which("chromedriver")
    if not binary or not driver:
        _unavailable(f"no {'chromium' if not binary else 'chromedriver'}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # The driver named explicitly: selenium would otherwise try to download one.
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield chrome
    finally:
        chrome.quit()


# PNG text chunks: the screenshot says which page it shows.


def _chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at = 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        yield png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        at += 12 + length


def png_text(png: bytes) -> dict[str, str]:
    texts = {}
    for kind, data in _chunks(png):
        if kind == b"tEXt":
            key, _, value = data.partition(b"\0")
            texts[key.decode("latin-1")] = value.decode("latin-1")
    return texts


def png_size(png: bytes) -> tuple[int, int]:
    kind, data = next(_chunks(png))
    assert kind == b"IHDR"
    width, height = struct.unpack(">II", data[:8])
    return width, height


def with_text(png: bytes, key: str, value: str) -> bytes:
    """The PNG with a tEXt chunk added before its end."""
    data = key.encode("latin-1") + b"\0" + value.encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + data) & 0xFFFFFFFF)
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk + png[end:]


OUTLINE = """
return Array.from(document.querySelectorAll("h1, h2, th"))
    .map((e) => e.tagName + " " + e.textContent.trim()).join("\\n");
"""


def fingerprint(chrome) -> str:  # type: ignore[no-untyped-def]
    """The page's static files and the outline of what it rendered."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(chrome.execute_script(OUTLINE).encode())
    return digest.hexdigest()[:32]


def full_page_png(chrome) -> bytes:  # type: ignore[no-untyped-def]
    height = chrome.execute_script("return document.documentElement.scrollHeight")
    chrome.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    return chrome.get_screenshot_as_png()


def check_screenshot(png: bytes, page: str) -> None:
    """docs/img/dashboard.png shows this page, or (in update mode) becomes this screenshot."""
    fresh = with_text(png, KEY, page)
    if os.environ.get("STEPUP_DIST_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(fresh)
    regenerate = (
        "regenerate it: STEPUP_DIST_UPDATE_SCREENSHOT=1 pytest "
        "tests/integration/test_dashboard_browser.py"
    )
    assert SCREENSHOT.is_file(), f"{SCREENSHOT} is missing; {regenerate}"
    stored = SCREENSHOT.read_bytes()
    assert png_text(stored).get(KEY) == page, (
        f"{SCREENSHOT.relative_to(REPO)} shows another version of the page; {regenerate}"
    )
    (width, height), (new_width, new_height) = png_size(stored), png_size(fresh)
    assert width == new_width == WIDTH
    assert abs(height - new_height) <= 0.3 * new_height, (height, new_height, regenerate)


FIND = """
const [pool, holder, waiter] = arguments;
const root = document.querySelector(`div.pool[data-pool="${pool}"]`);
if (!root) return null;
const texts = (selector) => Array.from(root.querySelectorAll(selector)).map((e) => e.textContent);
return {holders: texts("tr.holder"), waiters: texts("li.waiter"),
        builds: document.querySelectorAll("tr.build").length,
        planPools: document.querySelectorAll("tr.plan-pool").length,
        hosts: document.querySelectorAll("tr.host-resource").length,
        charts: document.querySelectorAll(`div.chart[data-pool="cluster:${pool}"]`).length};
"""


def test_dashboard_in_a_browser(browser, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    url = server.url
    folder = Path(tempfile.mkdtemp(prefix="demo-"))
    go = folder / "go"
    pool_set(url, prefix, "lic", 1, folder)
    thesis, paper = Project(folder / "thesis"), Project(folder / "paper")
    thesis.plan(
        "from stepup.core.api import pool, step\n"
        "pool('figures', 2)\n"
        f"step({HOLD.format(go=go, tag='solve')!r}, pool='lic')\n"
        f"step({HOLD.format(go=go, tag='plot')!r}, pool='figures')\n"
    )
    paper.plan(
        f"from stepup.core.api import step\nstep({HOLD.format(go=go, tag='fit')!r}, pool='lic')\n"
    )
    procs = [
        start_workers(url, prefix, "-j", "3"),
        start_workers(url, prefix, "--host", "gpubox", "--resources", "gpu:2"),
    ]
    dashboard = DashboardProcess(clean_env(), "--redis", url, "--prefix", prefix)
    try:
        procs.append(start_build(thesis, url, prefix))
        browser.get(dashboard.url)

        def holder_shown(driver):  # type: ignore[no-untyped-def]
            seen = driver.execute_script(FIND, "lic")
            return seen and any(str(thesis.root) in t for t in seen["holders"]) and seen

        WebDriverWait(browser, 60, 0.2).until(holder_shown)
        procs.append(start_build(paper, url, prefix))

        def waiter_shown(driver):  # type: ignore[no-untyped-def]
            seen = holder_shown(driver)
            waiting = seen and any(str(paper.root) in t for t in seen["waiters"])
            return waiting and seen["builds"] == 2 and seen

        seen = WebDriverWait(browser, 60, 0.2).until(waiter_shown)
        assert len(seen["holders"]) == 1
        assert len(seen["waiters"]) == 1
        # Load the page again for the screenshot: the chart then has the pool's first minute.
        # Every table the outline names must be there (the plan pool and the host too).
        browser.refresh()

        def complete(driver):  # type: ignore[no-untyped-def]
            seen = waiter_shown(driver)
            return seen and seen["charts"] and seen["planPools"] and seen["hosts"]

        WebDriverWait(browser, 30, 0.2).until(complete)
        # What each worker serves, from the registry of worker groups (none has --root).
        serves = browser.execute_script(
            "return [...document.querySelectorAll('#workers td.serves')].map(td => td.textContent)"
        )
        assert len(serves) == 4
        assert set(serves) == {"any folder"}
        # No build here used a cache: the cache's section stays hidden.
        assert browser.execute_script("return document.getElementById('cache-section').hidden")
        page = fingerprint(browser)
        check_screenshot(full_page_png(browser), page)
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        go.touch()
        for proc in procs[2:]:
            out, _ = proc.communicate(timeout=90)
            assert proc.returncode == 0, out

        def cleared(driver):  # type: ignore[no-untyped-def]
            seen = driver.execute_script(FIND, "lic")
            return seen and not seen["holders"] and not seen["waiters"] and not seen["builds"]

        # The same page, never reloaded, follows the server.
        WebDriverWait(browser, 60, 0.2).until(cleared)
        empty = browser.execute_script(
            "return document.querySelector('#builds .empty').textContent"
        )
        assert empty == "No build is running."
        assert browser.execute_script("return document.getElementById('error').hidden")
    finally:
        stop(procs)
        dashboard.stop()
        shutil.rmtree(folder, ignore_errors=True)


CACHE_PLAN = """\
from stepup.core.api import static, step
static("data.txt")
step("sleep 0.5; cp data.txt out.txt", inp=["data.txt"], out=["out.txt"])
"""

CACHE_SHOWN = """
const section = document.getElementById("cache-section");
if (section.hidden) return null;
const counts = {};
for (const td of section.querySelectorAll("td[data-count]")) {
  counts[td.dataset.count] = td.textContent;
}
return counts;
"""


def test_cache_counts_after_a_build_with_hits(browser, server, prefix: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    url, cache = server.url, tmp_path / "cache"
    # Two clones of one project, built one after the other with one cache (as in
    # test_cache.py): the second leaves its step from the cache.
    for name, cached in (("one", 0), ("two", 1)):
        clone = Project(tmp_path / name)
        clone.plan(CACHE_PLAN)
        clone.write("data.txt", "x" * 3000)
        result = clone.build(
            "-w1", "--redis", url, "--prefix", prefix, "--cache", str(cache), env=clean_env()
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(result.lines("CACHED")) == cached
    dashboard = DashboardProcess(clean_env(), "--redis", url, "--prefix", prefix)
    try:
        # At the size of the layout test below: the cache's headers show whole too.
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        )
        browser.get(dashboard.url)
        counts = WebDriverWait(browser, 60, 0.2).until(
            lambda driver: driver.execute_script(CACHE_SHOWN)
        )
        assert counts["entries"] == "1"
        assert counts["hits"] == "1"
        assert counts["misses"] == "1"
        assert counts["hit_rate"] == "50 %"
        assert float(counts["saved"].removesuffix("s")) >= 0.5
        assert counts["hit_bytes"] == "2.9 KiB"
        headers = browser.execute_script(
            "return [...document.querySelectorAll('#cache-section th')].map(t => t.textContent)"
        )
        assert headers == [
            "Entries", "Hits", "Misses", "Hit rate", "Time saved", "Bytes left by hits"
        ]  # fmt: skip
        clipped = browser.execute_script(CLIPPED)
        assert clipped == [], "; ".join(clipped)
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    finally:
        dashboard.stop()


CLIPPED = """
// Each column header whose text does not show whole: cut by its cell or hidden under
// something else (a neighbouring section), at the page's size.
const clipped = [];
for (const th of document.querySelectorAll("th")) {
  th.scrollIntoView({block: "center", inline: "nearest"});
  const range = document.createRange();
  range.selectNodeContents(th);
  const text = range.getBoundingClientRect();
  const cell = th.getBoundingClientRect();
  const section = th.closest("section").getBoundingClientRect();
  const y = text.top + text.height / 2;
  const right = document.elementFromPoint(text.right - 1, y);
  if (th.scrollWidth > th.clientWidth || text.right > cell.right + 0.5 ||
      text.right > section.right || !right || !th.contains(right)) {
    clipped.push(th.textContent + " in #" + th.closest("section").id);
  }
}
for (const section of document.querySelectorAll("section")) {
  // A table wider than its section would need sideways scrolling to read its headers.
  if (section.scrollWidth > section.clientWidth) clipped.push("#" + section.id + " scrolls");
}
return clipped;
"""


def test_no_column_header_is_clipped_at_1400_by_1000_with_a_long_folder(  # type: ignore[no-untyped-def]
    browser, server, prefix: str
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    url = server.url
    folder = Path(tempfile.mkdtemp(prefix="demo-"))
    go = folder / "go"
    deep = folder.joinpath(
        # No hyphen or space: nothing a browser would break a line at.
        "projects_of_the_computational_chemistry_group",
        "thesis_2026_chapter_three_reaction_barriers",
        "calculations_with_the_larger_basis_set",
    )
    project = Project(deep)
    project.plan(f"from stepup.core.api import step\nstep({HOLD.format(go=go, tag='x')!r})\n")
    procs = [
        start_workers(url, prefix, "--root", str(deep), "--resources", "gpu:2,mem:64"),
    ]
    dashboard = DashboardProcess(clean_env(), "--redis", url, "--prefix", prefix)
    try:
        procs.append(start_build(project, url, prefix))
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        )
        browser.get(dashboard.url)

        def shown(driver):  # type: ignore[no-untyped-def]
            return driver.execute_script(
                "const b = document.querySelector('tr.build');"
                "const w = document.querySelector('tr.worker');"
                "return b && w && b.textContent.includes(arguments[0]);",
                str(deep),
            )

        WebDriverWait(browser, 60, 0.2).until(shown)
        assert browser.execute_script("return window.innerWidth") == 1400
        clipped = browser.execute_script(CLIPPED)
        assert clipped == [], "; ".join(clipped)
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        go.touch()
        out, _ = procs[1].communicate(timeout=90)
        assert procs[1].returncode == 0, out
    finally:
        stop(procs)
        dashboard.stop()
        shutil.rmtree(folder, ignore_errors=True)
