"""End to end: the real app in Debian's chromium, driven by Playwright.

The app is started as a subprocess the way a user starts it (``seviz app`` when
the CLI has the subcommand, else :func:`seviz.app_launcher.launch_app`) on a
free loopback port. The test selects a store and two classes, checks that the
Figure-6 charts (with hover tooltips) and the pruning table with the planted
identity block flagged are rendered, downloads the recommendation, and saves
screenshots (a copy of the distributions one goes to
``/tmp/seviz_app_screenshot.png``).

Needs ``apt-get install chromium`` and ``pip install playwright``; never
``playwright install`` (the browser is Debian's).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _app_store import IDENTITY, PAPER_PRESENT, write_app_store

from seviz.pruning import Thresholds, recommend

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT_COPY = Path("/tmp/seviz_app_screenshot.png")
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_command(stores: list[Path], root: Path, port: int) -> list[str]:
    from seviz import cli

    if "app" in getattr(cli, "_COMMANDS", {}):
        return [
            sys.executable,
            "-m",
            "seviz",
            "app",
            *map(str, stores),
            "--root",
            str(root),
            "--port",
            str(port),
        ]
    code = (
        "import sys; from seviz.app.launcher import launch_app; "
        f"sys.exit(launch_app({[str(s) for s in stores]!r}, root={str(root)!r}, port={port}))"
    )
    return [sys.executable, "-c", code]


def _wait_healthy(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with status {process.returncode} before serving")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the app did not answer on port {port} within {timeout:.0f} s")


@pytest.fixture
def app_url(tmp_path: Path):
    """The URL of a running app over two stores (the second model's first, so the test must pick a.h5)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is missing: apt-get install -y chromium chromium-driver")
    pytest.importorskip("playwright.sync_api", reason="Playwright is missing: pip install playwright")
    root = tmp_path / "stores"
    a = write_app_store(root / "a.h5")
    b = write_app_store(root / "b.h5", seed=1, model="pruned_senet")
    port = _free_port()
    log = (tmp_path / "app.log").open("w")
    # A session of its own, so the whole process group (launcher and Streamlit) can be stopped.
    process = subprocess.Popen(
        _start_command([b, a], root, port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=root,
    )
    try:
        _wait_healthy(port, process)
        yield f"http://127.0.0.1:{port}/", a
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def _settle(page) -> None:
    """Wait until Streamlit has finished the rerun a widget change started."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=TIMEOUT_MS,
    )
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=TIMEOUT_MS)


def test_app_in_a_real_browser(app_url, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, store_a = app_url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            sidebar = page.get_by_test_id("stSidebar")
            expect(page.get_by_role("heading", name="Overview")).to_be_visible()

            # Select the store (b.h5 is offered first) ...
            sidebar.get_by_test_id("stSelectbox").click()
            page.get_by_role("option", name="a.h5", exact=True).click()
            _settle(page)
            expect(page.get_by_text("Store: a.h5")).to_be_visible()
            # st.dataframe draws on a canvas; its accessible cells carry the text.
            expect(page.locator("td[role=gridcell]", has_text="planted_senet").first).to_be_attached()

            # ... open Distributions and keep two classes.
            sidebar.get_by_text("Distributions", exact=True).click()
            _settle(page)
            classes = page.get_by_test_id("stMultiSelect").filter(has_text="Classes")
            expect(classes).to_contain_text("goldfish")
            classes.get_by_role("button", name="Clear all").click()
            _settle(page)
            for name in ("pug", "airliner"):
                classes.locator("input").click()
                page.get_by_role("option", name=name, exact=True).click()
                _settle(page)
            page.keyboard.press("Escape")
            _settle(page)

            # The Figure-6 charts: one per paper block, the two classes and "all classes" in the legend.
            charts = page.get_by_test_id("stVegaLiteChart")
            expect(charts).to_have_count(len(PAPER_PRESENT))
            first = charts.first
            expect(first.locator("svg, canvas").first).to_be_visible()
            texts = " ".join(first.locator("svg text").all_text_contents())
            assert "pug" in texts and "airliner" in texts and "all classes" in texts
            assert "goldfish" not in texts
            for name in PAPER_PRESENT:
                expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()

            # Hovering a line shows channel, class and value.
            first.scroll_into_view_if_needed()
            box = first.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
            tooltip = page.locator("#vg-tooltip-element")
            expect(tooltip).to_have_class(re.compile(r"\bvisible\b"), timeout=10_000)
            tip = tooltip.inner_text()
            assert "channel" in tip and "mean excitation" in tip
            assert any(name in tip for name in ("pug", "airliner", "all classes"))
            page.screenshot(path=str(tmp_path / "distributions.png"))

            # Pruning: the planted identity block is flagged in the rendered table.
            sidebar.get_by_text("Pruning", exact=True).click()
            _settle(page)
            table = page.get_by_test_id("stTable")
            expect(table).to_be_visible()
            row = table.locator("tr").filter(has_text=IDENTITY)
            expect(row).to_have_count(1)
            expect(row.locator("td").nth(2)).to_have_text("identity")
            assert set(table.locator("tr td:nth-child(1)").all_text_contents()) >= set(PAPER_PRESENT)

            # The downloaded JSON is what seviz recommend writes.
            with page.expect_download() as download:
                page.get_by_role("button", name="Download JSON").click()
            saved = tmp_path / "rec.json"
            download.value.save_as(saved)
            assert saved.read_text(encoding="utf-8") == recommend(store_a, Thresholds()).to_json()
            page.screenshot(path=str(tmp_path / "pruning.png"))
        finally:
            browser.close()
    assert (tmp_path / "distributions.png").stat().st_size > 10_000
    shutil.copyfile(tmp_path / "distributions.png", SCREENSHOT_COPY)
    shutil.copyfile(tmp_path / "pruning.png", SCREENSHOT_COPY.with_name("seviz_app_screenshot_pruning.png"))
