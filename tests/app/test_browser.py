"""End to end: the real app in Debian's chromium, driven by Playwright.

The app is started as a subprocess the way a user starts it (``seviz app`` when
the CLI has the subcommand, else :func:`seviz.app.launcher.launch_app`) on a
free loopback port.

* :func:`test_app_in_a_real_browser` selects a store and two classes, checks that
  the Figure-6 charts (with hover tooltips) and the pruning table with the
  planted identity block flagged are rendered, and downloads the recommendation.
* :func:`test_every_chart_on_every_page_is_legible` opens every page (and every
  view of Distributions) in a 1400 x 1800 window and reads each chart's SVG:
  at least 200 px high with a plot area of at least 200 px, the drawn series
  spanning at least 30% of the plot's height, nothing wider than the page, every
  label of a bar chart drawn, and no exception shown. Screenshots of every page
  are saved (their paths are printed) and copied to ``/tmp/seviz_app_screenshots/``.

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
from _app_store import BLOCKS, CLASSES, IDENTITY, PAPER_PRESENT, write_app_store, write_evaluation

from seviz.analysis import ALL_CLASSES
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
SCREENSHOTS = Path("/tmp/seviz_app_screenshots")
WINDOW = {"width": 1400, "height": 1800}
MIN_HEIGHT = 200  # px: a chart, and its plot area
MIN_SPAN = 0.30  # share of the plot's height the drawn series must cover
FOUR_CLASSES = (*CLASSES, "cliff")  # one more than a row of three: the small multiples must wrap
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


# Idle: the status widget (it shows "Stop" while the script runs) is empty, no spinner is shown,
# nothing is stale.
_IDLE = """() => {
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  if (status && status.innerText.trim()) return false;
  if (document.querySelector('[data-testid="stSpinner"]')) return false;
  return !document.querySelector('[data-stale="true"]');
}"""


def _settle(page) -> None:
    """Wait until Streamlit has finished the rerun a widget change started."""
    page.wait_for_timeout(300)
    page.wait_for_function(_IDLE, timeout=TIMEOUT_MS, polling=100)


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
            # The verdict table comes first (the verification's tables of edits follow it).
            table = page.get_by_test_id("stTable").first
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


# Per chart: its box, its title, the plot area (the root frame's background) and the vertical
# extent of the visible data marks (axes, legends, titles, text, rules and the invisible hover
# helpers left out), the labels of its axes and whether its SVG is wider than it.
_GEOMETRY = """() => {
  const visible = (el) => {
    for (let node = el; node && node.tagName !== 'svg'; node = node.parentElement) {
      if (node.getAttribute('opacity') === '0' || node.style.opacity === '0') return false;
    }
    const fill = (el.getAttribute('fill') || '').toLowerCase();
    const stroke = (el.getAttribute('stroke') || '').toLowerCase();
    const none = (c) => !c || c === 'none' || c === 'transparent';
    if (el.getAttribute('fill-opacity') === '0' && el.getAttribute('stroke-opacity') === '0') return false;
    return !(none(fill) && none(stroke));
  };
  const charts = [];
  for (const chart of document.querySelectorAll('[data-testid="stVegaLiteChart"]')) {
    const box = chart.getBoundingClientRect();
    const svg = chart.querySelector('svg.marks');
    const item = {top: box.top, right: box.right, width: box.width, height: box.height, svg: !!svg};
    charts.push(item);
    if (!svg) continue;
    item.title = [...svg.querySelectorAll('.role-title-text')].map(t => t.textContent).join(' ');
    item.svgWidth = svg.getBoundingClientRect().width;
    const frame = svg.querySelector('g.role-frame.root > g > path.background, g.role-frame.root > path.background');
    const plot = frame ? frame.getBoundingClientRect() : {top: 0, height: 0};
    item.plotHeight = plot.height;
    let low = Infinity, high = -Infinity;
    for (const group of svg.querySelectorAll('g.role-mark')) {
      if (group.closest('.role-axis, .role-legend, .role-title')) continue;
      const kind = group.getAttribute('class') || '';
      if (/voronoi|mark-text|mark-rule/.test(kind)) continue;
      for (const el of group.querySelectorAll('path, rect, line, circle')) {
        if (!visible(el)) continue;
        const b = el.getBoundingClientRect();
        if (b.width === 0 && b.height === 0) continue;
        low = Math.min(low, b.top);
        high = Math.max(high, b.bottom);
      }
    }
    item.extent = high > low ? Math.min(high, plot.top + plot.height) - Math.max(low, plot.top) : 0;
    item.labels = [...svg.querySelectorAll('.role-axis-label text')].map(t => t.textContent);
  }
  const main = document.querySelector('[data-testid="stMain"]');
  return {
    charts,
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    mainRight: main ? main.getBoundingClientRect().right : document.documentElement.clientWidth,
    exceptions: [...document.querySelectorAll('[data-testid="stException"]')].map(e => e.innerText.slice(0, 300)),
    errors: [...document.querySelectorAll('[data-testid="stAlertContentError"]')].map(e => e.innerText.slice(0, 300)),
  };
}"""

_DRAWN = """() => {
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  return charts.every(c => c.querySelector('svg.marks .role-mark, canvas'));
}"""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _open_page(page, url: str, name: str) -> None:
    page.goto(f"{url}?page={name.replace(' ', '+')}")
    page.get_by_role("heading", name=name, exact=True).wait_for()
    _settle(page)
    page.wait_for_function(_DRAWN, timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)  # Vega's last paint


def _check_legible(page, where: str, shots: list[Path], folder: Path, expected: int) -> int:
    """Assert the page shows ``expected`` charts, each legible (see the module docstring); save a screenshot."""
    found = page.evaluate(_GEOMETRY)
    path = folder / f"{where.lower().replace(' ', '_').replace(':', '').replace('±', 'pm')}.png"
    # Streamlit scrolls inside its main block, so the window is made as tall as the page for the shot.
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({**WINDOW, "height": max(WINDOW["height"], int(height))})
    page.wait_for_timeout(800)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(WINDOW)
    page.wait_for_timeout(300)
    shots.append(path)
    print(f"screenshot of {where}: {path}")
    assert not found["exceptions"], f"{where}: exceptions {found['exceptions']}"
    assert not found["errors"], f"{where}: errors {found['errors']}"
    assert found["scrollWidth"] <= found["clientWidth"], f"{where}: the page is wider than the window"
    assert len(found["charts"]) == expected, f"{where}: {len(found['charts'])} charts, expected {expected}"
    for chart in found["charts"]:
        name = f"{where}: chart {chart.get('title') or chart['top']!r}"
        assert chart["svg"], f"{name} was not drawn as SVG (the planted store is small)"
        assert chart["height"] >= MIN_HEIGHT, f"{name} is {chart['height']:.0f} px high"
        assert chart["plotHeight"] >= MIN_HEIGHT, f"{name} has a plot {chart['plotHeight']:.0f} px high"
        assert chart["extent"] >= MIN_SPAN * chart["plotHeight"], (
            f"{name}: its series span {chart['extent']:.0f} of {chart['plotHeight']:.0f} px"
        )
        assert chart["right"] <= found["mainRight"] + 1, f"{name} runs past the page's right edge"
        assert chart["svgWidth"] <= chart["width"] + 1, f"{name} is cut off at its right edge"
    return len(found["charts"])


@pytest.fixture
def legible_app(tmp_path: Path):
    """The app over a planted store with four classes, images, attributions and an evaluation beside it."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is missing: apt-get install -y chromium chromium-driver")
    pytest.importorskip("playwright.sync_api", reason="Playwright is missing: pip install playwright")
    root = tmp_path / "stores"
    a = write_app_store(root / "a.h5", attributions=True, classes=FOUR_CLASSES, images=True)
    write_app_store(root / "b.h5", seed=1, model="pruned_senet", classes=FOUR_CLASSES)
    write_evaluation(root / "evaluation.json", BLOCKS)
    port = _free_port()
    log = (tmp_path / "app.log").open("w")
    process = subprocess.Popen(
        _start_command([a], root, port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=root,
    )
    try:
        _wait_healthy(port, process)
        yield f"http://127.0.0.1:{port}/"
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


def test_every_chart_on_every_page_is_legible(legible_app: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url = legible_app
    shots: list[Path] = []
    counts: dict[str, int] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=WINDOW)
            page.set_default_timeout(TIMEOUT_MS)
            # Two depth charts, the evaluation's per-block deltas, the per-class boxes, one chart per
            # class (four, wrapped), the overlay of two stores.
            pages = {
                "Overview": 0,
                "Depth view": 2,
                "Pruning": 1,
                "Channel explorer": 1,
                "Attribution": 4,
                "Compare": 1,
            }
            for name, expected in pages.items():
                _open_page(page, url, name)
                counts[name] = _check_legible(page, name, shots, tmp_path, expected)
                if name == "Attribution":
                    # Every channel of every class's top 10 is labelled (no label thinned away).
                    labels = [t for c in page.evaluate(_GEOMETRY)["charts"] for t in c["labels"]]
                    assert sum(t.startswith("ch ") for t in labels) == 10 * len(FOUR_CLASSES)
            _open_page(page, url, "Distributions")
            for view in ("Figure 6: mean per class", "Figure 7: mean ± std", "Histograms", "Violins"):
                page.get_by_test_id("stRadio").filter(has_text="View").get_by_text(view, exact=True).click()
                _settle(page)
                page.wait_for_function(_DRAWN, timeout=TIMEOUT_MS)
                page.wait_for_timeout(500)
                counts[view] = _check_legible(
                    page, f"Distributions {view}", shots, tmp_path, len(PAPER_PRESENT)
                )
                if view == "Violins":
                    # Each slot is named under the axis from the chart's data (not its spec).
                    for chart in page.evaluate(_GEOMETRY)["charts"]:
                        assert [*FOUR_CLASSES, ALL_CLASSES] == [
                            t for t in chart["labels"] if not _is_number(t)
                        ]
        finally:
            browser.close()
    assert sum(counts.values()) == 9 + 4 * len(PAPER_PRESENT)
    SCREENSHOTS.mkdir(exist_ok=True)
    for path in shots:
        assert path.stat().st_size > 10_000, f"{path} looks empty"
        shutil.copyfile(path, SCREENSHOTS / path.name)
    print(f"screenshots copied to {SCREENSHOTS}: {', '.join(p.name for p in shots)}")
