"""How fast does the app draw the distributions page of a 50,000-sample store?

Writes a synthetic store (ImageNet-validation sized: 1000 classes x 50 images,
the six blocks of the SENet paper's Figures 6-7 at SE-ResNet-50's widths),
starts the app with :func:`seviz.app_launcher.launch_app` on a free loopback
port, and drives Debian's chromium with Playwright. Times, from the request
to the distributions page having drawn one chart per block:

* first load: a fresh app, so the statistics are computed (once per store);
* second session: a new browser page on the warm app (statistics cached);
* control changes: sorting the channels by class specificity and back, and
  adding an eleventh class (no sample is read again; only the charts are
  redrawn).

The page shows the first 10 classes and "all classes" by default, as
``seviz plot`` does, so each chart has 11 lines over up to 2048 channels.
Numbers depend on the machine's load: report them with the load average the
script prints, and compare runs made on one machine in one sitting.

Run: ``python benchmarks/app_latency.py [--store PATH] [--samples N]``. The
store is kept at ``--store`` and reused when it exists with the asked size.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from seviz.plots import MAX_DEFAULT_CLASSES
from seviz.store import BlockInfo, SampleBatch, StoreWriter, open_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# SE-ResNet-50's widths at the blocks the paper draws.
BLOCKS = [
    BlockInfo("SE_2_3", "layer1.2.se", 2, 3, 256, "se"),
    BlockInfo("SE_3_4", "layer2.3.se", 3, 4, 512, "se"),
    BlockInfo("SE_4_6", "layer3.5.se", 4, 6, 1024, "se"),
    BlockInfo("SE_5_1", "layer4.0.se", 5, 1, 2048, "se"),
    BlockInfo("SE_5_2", "layer4.1.se", 5, 2, 2048, "se"),
    BlockInfo("SE_5_3", "layer4.2.se", 5, 3, 2048, "se"),
]


def write_store(path: Path, samples: int, classes: int, seed: int = 0) -> Path:
    """A synthetic store: class-specific gates that grow more specific (and, at SE_5_2, near 1) with depth."""
    if path.exists():
        with open_store(path, warn_incomplete=False) as store:
            if len(store) == samples and store.complete and len(store.recorded_class_names) == classes:
                return path
        path.unlink()
    rng = np.random.default_rng(seed)
    names = [f"class_{i:04d}" for i in range(classes)]
    labels = np.arange(samples) % classes
    centres = {b.name: rng.uniform(0.2, 0.8, size=(classes, b.channels)).astype(np.float32) for b in BLOCKS}
    attrs = {
        "model": "synthetic_se_resnet50",
        "model_spec": "benchmarks/app_latency.py",
        "weights_source": "synthetic",
        "weights_sha256": "0" * 64,
        "created": "2024-01-01T00:00:00+00:00",
        "classes": [{"index": i, "name": n, "id": f"s{i:08d}"} for i, n in enumerate(names)],
    }
    batch = 1000
    with StoreWriter(path, BLOCKS, attrs, dtype="float16") as writer:
        for start in range(0, samples, batch):
            lab = labels[start : start + batch]
            n = len(lab)
            gates = {}
            for depth, info in enumerate(BLOCKS):
                if info.name == "SE_5_2":
                    gates[info.name] = rng.uniform(0.995, 1.0, size=(n, info.channels)).astype(np.float32)
                    continue
                weight = depth / len(BLOCKS)  # early: class-agnostic noise; deep: class centres
                noise = rng.random((n, info.channels), dtype=np.float32)
                gates[info.name] = weight * centres[info.name][lab] + (1 - weight) * noise
            writer.append(
                SampleBatch(
                    label=lab,
                    class_name=[names[i] for i in lab],
                    path=[f"val/{start + i:08d}.JPEG" for i in range(n)],
                    topk_index=np.zeros((n, 5), dtype=np.int32),
                    topk_prob=np.zeros((n, 5), dtype=np.float32),
                    gates=gates,
                    consumed=n,
                )
            )
        writer.close(complete=True)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the app did not answer on port {port}")


# Rendered: Streamlit is idle, nothing is stale, every chart has its SVG or canvas (Streamlit
# switches Vega to canvas for large data), and, if given, the page shows a text only the new state has.
_RENDERED = """([charts, text]) => {
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  if (status && status.innerText.trim()) return false;
  if (document.querySelector('[data-stale="true"]')) return false;
  const found = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  if (found.length !== charts) return false;
  if (!found.every(c => c.querySelector('svg .mark-line path, canvas'))) return false;
  return !text || document.querySelector('[data-testid="stMain"]').innerText.includes(text);
}"""
# Two animation frames: whatever Vega drew after the data arrived has been painted.
_PAINTED = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


def _rendered(page, charts: int, text: str | None = None, timeout_s: float = 600) -> None:
    page.wait_for_function(_RENDERED, arg=[charts, text], timeout=timeout_s * 1000, polling=50)
    page.evaluate(_PAINTED)


def measure(store: Path, repeats: int = 3) -> dict[str, list[float]]:
    """Seconds from request to rendered distributions page: cold, warm session, and control changes."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    code = (
        "import sys; from seviz.app.launcher import launch_app; "
        f"sys.exit(launch_app([{str(store)!r}], root={str(store.parent)!r}, port={port}))"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    times: dict[str, list[float]] = {
        "first load (statistics computed)": [],
        "new session (cached)": [],
        "sort change": [],
        "class change": [],
    }
    url = f"http://127.0.0.1:{port}/?page=Distributions"
    charts = len(BLOCKS)
    try:
        _wait_healthy(port)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for attempt in range(repeats):
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    start = time.perf_counter()
                    page.goto(url)
                    _rendered(page, charts)
                    key = "first load (statistics computed)" if attempt == 0 else "new session (cached)"
                    times[key].append(time.perf_counter() - start)
                    for sort, marker in (
                        ("class specificity (between/within variance)", "sorted by class"),
                        ("channel index", "shown, channel order"),
                    ):
                        page.get_by_test_id("stSelectbox").filter(has_text="Sort channels by").click()
                        option = page.get_by_role("option", name=sort, exact=True)
                        start = time.perf_counter()
                        option.click()
                        _rendered(page, charts, marker)
                        times["sort change"].append(time.perf_counter() - start)
                    classes = page.get_by_test_id("stMultiSelect").filter(has_text="Classes")
                    classes.locator("input").click()
                    classes.locator("input").type(f"class_{MAX_DEFAULT_CLASSES + attempt:04d}")
                    option = page.get_by_role(
                        "option", name=f"class_{MAX_DEFAULT_CLASSES + attempt:04d}", exact=True
                    )
                    start = time.perf_counter()
                    option.click()
                    _rendered(page, charts, f"· {MAX_DEFAULT_CLASSES + 1} classes and all")
                    times["class change"].append(time.perf_counter() - start)
                    page.close()
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    return times


def measure_server(store: Path, repeats: int = 3) -> dict[str, list[float]]:
    """The same steps in-process with Streamlit's AppTest: the script's own time, no browser.

    The difference to :func:`measure` is what the browser (transfer, Vega) adds.
    """
    from streamlit.testing.v1 import AppTest

    from seviz.app.launcher import app_arguments, app_script

    sys.argv = [str(app_script()), *app_arguments([store], store.parent)]
    times: dict[str, list[float]] = {
        "first load (statistics computed)": [],
        "new session (cached)": [],
        "sort change": [],
        "class change": [],
    }
    for attempt in range(repeats):
        at = AppTest.from_file(str(app_script()), default_timeout=1800)
        at.query_params["page"] = "Distributions"
        start = time.perf_counter()
        at.run()
        key = "first load (statistics computed)" if attempt == 0 else "new session (cached)"
        times[key].append(time.perf_counter() - start)
        for sort in ("class specificity (between/within variance)", "channel index"):
            at.selectbox(key="dist_sort").set_value(sort)
            start = time.perf_counter()
            at.run()
            times["sort change"].append(time.perf_counter() - start)
        classes = at.multiselect(key="dist_classes")
        classes.set_value([*classes.value, f"class_{MAX_DEFAULT_CLASSES + attempt:04d}"])
        start = time.perf_counter()
        at.run()
        times["class change"].append(time.perf_counter() - start)
        if at.exception:
            raise RuntimeError(at.exception[0].value)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", type=Path, default=Path(tempfile.gettempdir()) / "seviz-bench" / "app50k.h5"
    )
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="browser sessions (the first is the cold one)")
    parser.add_argument(
        "--server-only", action="store_true", help="time the script in-process with AppTest (no browser)"
    )
    args = parser.parse_args()
    if not args.server_only and not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    start = time.perf_counter()
    store = write_store(args.store.resolve(), args.samples, args.classes)
    size = store.stat().st_size / 2**20
    print(
        f"store: {store} ({args.samples:,} samples, {args.classes} classes, "
        f"{sum(b.channels for b in BLOCKS):,} channels in {len(BLOCKS)} blocks, {size:,.0f} MiB; "
        f"ready in {time.perf_counter() - start:.1f} s)"
    )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    how = measure_server if args.server_only else measure
    print(
        "measured:",
        "in-process script runs (AppTest)" if args.server_only else "request to rendered page (chromium)",
    )
    for name, values in how(store, args.repeats).items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:34s} median {np.median(values):7.2f} s   ({shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
