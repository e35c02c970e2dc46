"""How fast does the app answer at ImageNet size, and on a fresh install?

Writes a synthetic store (ImageNet-validation sized: 1000 classes x 50 images,
the six blocks of the SENet paper's Figures 6-7 at SE-ResNet-50's widths, with
captum-style attributions and an evaluation report beside it), then drives
Debian's chromium with Playwright against the app started by
:func:`seviz.app.launcher.launch_app` on a free loopback port. Times, from the
request (or the click) to every chart of the page drawn:

* one-off: computing the statistics (and the channel ranking the explorer
  shows) once and saving them beside the store (``STORE.seviz-cache``);
* first load of each page in a freshly started app (it reads what was saved);
* a new browser session on the warm app;
* control changes: sorting the channels, adding a class, the Histograms view
  and a class added there (Distributions), a threshold (Pruning), the channel
  (Channel explorer), a class (Attribution),
  each clicked as soon as the page is drawn, or ``--settle S`` seconds later
  (as a user who reads the page first would);
* and, for scale, Streamlit's own floor: the same browser opening a page whose
  script writes one line (what any Streamlit app costs on this machine).

``--fresh-install`` instead times the first Distributions page of a small store
(``--samples 1000`` by default there) with nothing saved beside it and an empty
numba cache, as on a fresh installation.

Numbers depend on the machine's load: the script prints the load average; compare
runs made on one machine in one sitting.

Run: ``python benchmarks/app_latency.py [--store PATH] [--samples N] [--repeats R]``,
``python benchmarks/app_latency.py --fresh-install``, or ``--server-only`` for the
script's own time in-process (Streamlit's AppTest, no browser). The store is kept
at ``--store`` and reused when it exists with the asked size.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
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
from seviz.store import BlockInfo, SampleBatch, StoreWriter, open_store, write_attributions

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
            same = len(store) == samples and store.complete and len(store.recorded_class_names) == classes
            if same and store.attributions():
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
    tables = {b.name: rng.normal(size=(classes, b.channels)).astype(np.float32) for b in BLOCKS}
    write_attributions(
        path, tables, names, {"method": "synthetic", "images": samples, "weights_sha256": "0" * 64}
    )
    return path


def write_evaluation(store: Path) -> Path:
    """A ``seviz evaluate --json`` report beside the store, with per-block deltas (the Pruning page draws them)."""
    from seviz.pruning.verify import BlockRemoval, EvaluationReport, ModelFigures

    report = EvaluationReport(
        original=ModelFigures(0.76, 0.93, 28_088_024, 3_860_000_000, None),
        edited=ModelFigures(0.759, 0.93, 26_000_000, 3_859_000_000, None),
        agreement_top1=0.98,
        kl=0.01,
        images=50_000,
        labelled=50_000,
        per_block=tuple(
            BlockRemoval(b.name, b.module, 0.75, 0.93, -0.01 * i, 0.0, 0.95, 0.02)
            for i, b in enumerate(BLOCKS)
        ),
        model="synthetic_se_resnet50",
        edits=({"name": "SE_5_2", "action": "identity"},),
    )
    return report.write_json(store.parent / "evaluation.json", overwrite=True)


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


# Rendered: Streamlit is idle, nothing is stale, no element still waits for its code (Streamlit
# draws a skeleton while it loads a table's or a JSON view's code), every table has its grid,
# every chart has its SVG or canvas (Streamlit switches Vega to canvas for large data), and, if
# given, the page shows a text only the new state has.
_RENDERED = """([charts, text]) => {
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  if (status && status.innerText.trim()) return false;
  if (document.querySelector('[data-stale="true"]')) return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  const tables = [...document.querySelectorAll('[data-testid="stDataFrame"]')];
  if (!tables.every(t => t.querySelector('canvas'))) return false;
  const found = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  if (found.length !== charts) return false;
  if (!found.every(c => c.querySelector('svg .role-mark > *, canvas'))) return false;
  return !text || document.querySelector('[data-testid="stMain"]').innerText.includes(text);
}"""
# Two animation frames: whatever Vega drew after the data arrived has been painted.
_PAINTED = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


def _rendered(page, charts: int, text: str | None = None, timeout_s: float = 600) -> None:
    page.wait_for_function(_RENDERED, arg=[charts, text], timeout=timeout_s * 1000, polling=50)
    page.evaluate(_PAINTED)


# Pages and the charts each draws for the synthetic store (Compare needs a second store: not timed).
PAGES = {
    "Overview": 0,
    "Distributions": len(BLOCKS),
    "Depth view": 2,
    "Pruning": 1,
    "Channel explorer": 1,
    "Attribution": 4,
}
# A text each page shows late in its script (a page is not drawn before the script has sent it).
_FIRST_TEXT = {"Overview": "Skipped files", "Pruning": "Verification", "Channel explorer": "Highest gates"}


class _App:
    """A Streamlit server on a free port in its own process group (``with _App(store) as url``).

    By default the seviz app over ``store``; ``script`` instead runs that Streamlit script plainly.
    """

    def __init__(
        self,
        store: Path | None,
        env: dict[str, str] | None = None,
        script: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.store, self.env, self.script, self.port = store, env, script, _free_port()
        # ``python -c`` and ``python -m`` put the working folder first on sys.path, before
        # PYTHONPATH: a server started here imports the seviz of ``cwd`` (this process's own
        # folder when None), whatever PYTHONPATH says.
        self.cwd = cwd

    def _command(self) -> list[str]:
        if self.script is not None:
            return [
                sys.executable, "-m", "streamlit", "run", str(self.script), f"--server.port={self.port}",
                "--server.address=127.0.0.1", "--server.headless=true", "--browser.gatherUsageStats=false",
                "--server.fileWatcherType=none", "--global.developmentMode=false",
            ]  # fmt: skip
        assert self.store is not None
        code = (
            "import sys; from seviz.app.launcher import launch_app; "
            f"sys.exit(launch_app([{str(self.store)!r}], root={str(self.store.parent)!r}, port={self.port}))"
        )
        return [sys.executable, "-c", code]

    def __enter__(self) -> str:
        self.server = subprocess.Popen(
            self._command(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
        )
        _wait_healthy(self.port)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.server.pid, signal.SIGTERM)
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)


@contextlib.contextmanager
def _chromium():
    """Debian's chromium driven by Playwright, closed on the way out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _timed(times: dict[str, list[float]], name: str, action, page, charts: int, text: str | None) -> None:
    start = time.perf_counter()
    action()
    try:
        _rendered(page, charts, text, timeout_s=180)
    except Exception:
        shot = Path(tempfile.gettempdir()) / "seviz-bench-timeout.png"
        page.screenshot(path=str(shot))
        print(f"{name}: not drawn ({charts} charts, text {text!r}); screenshot {shot}", file=sys.stderr)
        raise
    times.setdefault(name, []).append(time.perf_counter() - start)


def _pick(page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def _class_option(page, name: str):
    """Type ``name`` into the page's "Classes" box: the option of that class in the list that opens."""
    classes = page.get_by_test_id("stMultiSelect").filter(has_text="Classes")
    classes.locator("input").click()
    classes.locator("input").type(name)
    return page.get_by_role("option", name=name, exact=True)


def _controls(page, name: str, attempt: int, times: dict[str, list[float]], settle: float = 0.0) -> None:
    """Control changes on one page, each timed from the click to the page drawn again.

    ``settle``: seconds to wait before each change (0: as soon as the page is drawn).
    """
    charts = PAGES[name]

    def pause() -> None:
        time.sleep(settle)

    if name == "Distributions":
        for sort, marker in (
            ("class specificity (between/within variance)", "sorted by class"),
            ("channel index", "shown, channel order"),
        ):
            pause()
            page.get_by_test_id("stSelectbox").filter(has_text="Sort channels by").click()
            option = page.get_by_role("option", name=sort, exact=True)
            _timed(times, "control: sort the channels (Distributions)", option.click, page, charts, marker)
        pause()
        option = _class_option(page, f"class_{MAX_DEFAULT_CLASSES + attempt:04d}")
        marker = f"· {MAX_DEFAULT_CLASSES + 1} classes and all"
        _timed(times, "control: add a class (Distributions)", option.click, page, charts, marker)
        # The histograms: the view switched to (new charts), then one more class (the same charts).
        pause()
        view = page.get_by_test_id("stRadio").filter(has_text="View").get_by_text("Histograms", exact=True)
        _timed(
            times,
            "control: the Histograms view (Distributions)",
            view.click,
            page,
            charts,
            "histogram per class",
        )
        pause()
        option = _class_option(page, f"class_{MAX_DEFAULT_CLASSES + 100 + attempt:04d}")
        marker = f"· {MAX_DEFAULT_CLASSES + 2} classes and all"
        _timed(times, "control: add a class (Histograms)", option.click, page, charts, marker)
    elif name == "Pruning":
        field = (
            page.get_by_test_id("stNumberInput")
            .filter(has_text="constant: max input dependence")
            .locator("input")
        )
        value = f"0.{5 + attempt}"

        pause()

        def change() -> None:
            field.fill(value)
            field.press("Enter")

        _timed(
            times,
            "control: a threshold (Pruning)",
            change,
            page,
            charts,
            f"--constant-max-dependence {value}",
        )
    elif name == "Channel explorer":
        box = page.get_by_test_id("stNumberInput").filter(has_text="Channel (")
        channel = int(box.locator("input").input_value()) + 1
        step = box.get_by_test_id("stNumberInputStepUp")
        marker = f" channel {channel}: mean"
        pause()
        _timed(times, "control: the channel (Channel explorer)", step.click, page, charts, marker)
    elif name == "Attribution":
        pause()
        extra = f"class_{10 + attempt:04d}"
        option = _class_option(page, extra)
        _timed(times, "control: add a class (Attribution)", option.click, page, charts + 1, extra)


# Streamlit's floor: a page that writes one line, and the same page with N plain line charts
# (50 points, 11 series: what one Figure 6 chart draws), to tell Streamlit's and Vega's own cost
# in this browser from the app's.
_FLOOR_SCRIPT = """
import numpy as np
import streamlit as st

st.set_page_config(layout="wide")
st.title("floor")
n = int(st.query_params.get("charts", 0))
rng = np.random.default_rng(0)
for i in range(n):
    values = [{"x": x, "y": float(rng.random()), "c": f"class {c}"} for c in range(11) for x in range(50)]
    spec = {
        "height": 300,
        "data": {"values": values},
        "mark": "line",
        "encoding": {
            "x": {"field": "x", "type": "quantitative"},
            "y": {"field": "y", "type": "quantitative"},
            "color": {"field": "c", "type": "nominal"},
        },
    }
    st.vega_lite_chart(spec=spec, width="stretch")
st.write("an empty page" if n == 0 else f"{n} charts")
"""
_FLOOR_PAGES = {
    0: "floor: an empty Streamlit page",
    1: "floor: the same with 1 line chart",
    6: "floor: the same with 6 line charts",
}


def measure_floor(repeats: int = 3) -> dict[str, list[float]]:
    """Streamlit's and Vega's own cost on this machine, same browser: a page that writes one line, then 1 and 6 charts."""
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="seviz-floor-") as folder:
        script = Path(folder) / "floor.py"
        script.write_text(_FLOOR_SCRIPT)
        with _App(None, script=script) as url, _chromium() as browser:
            for _attempt in range(repeats + 1):
                for charts, name in _FLOOR_PAGES.items():
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    text = "an empty page" if charts == 0 else f"{charts} charts"
                    _timed(
                        times,
                        name,
                        functools.partial(page.goto, f"{url}?charts={charts}"),
                        page,
                        charts,
                        text,
                    )
                    page.close()
    # The first round warms the browser's cache.
    return {name: values[1:] for name, values in times.items()}


def measure(store: Path, repeats: int = 3, settle: float = 0.0) -> dict[str, list[float]]:
    """Seconds from request to rendered page: first load of each page in a fresh app, a new session, controls.

    ``settle``: seconds to wait before each control change (see ``--settle``).
    """
    times: dict[str, list[float]] = {}
    with _chromium() as browser:
        for attempt in range(repeats):
            for name, charts in PAGES.items():
                with _App(store) as url:
                    address = f"{url}?page={name.replace(' ', '+')}"
                    text = _FIRST_TEXT.get(name, name)
                    # The fresh app's first page, then a second browser session on the warm app.
                    tabs = {}
                    for which in ("first load", "new session"):
                        tab = tabs[which] = browser.new_page(viewport={"width": 1400, "height": 1000})
                        _timed(
                            times, f"{which}: {name}", functools.partial(tab.goto, address), tab, charts, text
                        )
                    tabs["first load"].close()
                    second = tabs["new session"]
                    _controls(second, name, attempt, times, settle)
                    second.close()
    return times


def measure_fresh_install(store: Path, repeats: int = 3) -> dict[str, list[float]]:
    """The first Distributions page of a store with nothing saved beside it, numba's cache empty."""
    times: dict[str, list[float]] = {}
    with _chromium() as browser:
        for _ in range(repeats):
            time_fresh_install(browser, store, times)
    return times


FRESH_INSTALL = "first page (Distributions), fresh install, nothing saved"


def time_fresh_install(
    browser,
    store: Path,
    times: dict[str, list[float]],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Time one fresh install's first Distributions page: a copy of ``store`` and an empty numba cache.

    ``env`` and ``cwd``: the server's environment (this process's when None) and working folder.
    """
    with tempfile.TemporaryDirectory(prefix="seviz-fresh-") as folder:
        copy = Path(folder) / "store" / store.name
        copy.parent.mkdir()
        shutil.copyfile(store, copy)
        server_env = {
            **(os.environ if env is None else env),
            "NUMBA_CACHE_DIR": str(Path(folder) / "numba-cache"),
        }
        with _App(copy, server_env, cwd=cwd) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            load = functools.partial(page.goto, f"{url}?page=Distributions")
            _timed(times, FRESH_INSTALL, load, page, len(BLOCKS), "Distributions")
            page.close()


def prepare(store: Path) -> None:
    """Compute and save what the app reads (statistics, verdict statistics, one channel ranking), timed."""
    code = (
        "import sys, time\n"
        "from seviz.analysis import cached_channel_extremes, cached_statistics\n"
        "from seviz.pruning import needed_statistics\n"
        "t = time.perf_counter(); stats = cached_statistics(sys.argv[1]); a = time.perf_counter() - t\n"
        "classes, settings = needed_statistics()\n"
        "t = time.perf_counter(); cached_statistics(sys.argv[1], classes=classes, settings=settings)\n"
        "b = time.perf_counter() - t\n"
        "t = time.perf_counter(); cached_channel_extremes(sys.argv[1], 'SE_5_3', 8); c = time.perf_counter() - t\n"
        "print(f'{a:.1f} {b:.1f} {c:.1f}')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(store)], check=True, capture_output=True, text=True)
    a, b, c = out.stdout.split()
    size = sum(
        f.stat().st_size for f in store.with_name(store.name + ".seviz-cache").rglob("*") if f.is_file()
    )
    print(
        f"one-off (saved beside the store, {size / 2**20:,.0f} MiB): statistics {a} s, verdict statistics "
        f"{b} s, channel ranking of SE_5_3 {c} s (0.0 when already saved)"
    )


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
    parser.add_argument(
        "--samples", type=int, default=None, help="default 50,000 (1,000 with --fresh-install)"
    )
    parser.add_argument("--classes", type=int, default=None, help="default 1000 (10 with --fresh-install)")
    parser.add_argument("--repeats", type=int, default=2, help="fresh app processes per page")
    parser.add_argument(
        "--fresh-install", action="store_true", help="small store, nothing saved, empty numba cache"
    )
    parser.add_argument(
        "--server-only", action="store_true", help="time the script in-process with AppTest (no browser)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds to wait before each control change (default 0: click as soon as the page is drawn)",
    )
    args = parser.parse_args()
    if not args.server_only and not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    samples = args.samples or (1000 if args.fresh_install else 50_000)
    classes = args.classes or (10 if args.fresh_install else 1000)
    path = args.store if not args.fresh_install else args.store.with_name(f"app{samples}-fresh.h5")
    start = time.perf_counter()
    store = write_store(path.resolve(), samples, classes)
    size = store.stat().st_size / 2**20
    print(
        f"store: {store} ({samples:,} samples, {classes} classes, "
        f"{sum(b.channels for b in BLOCKS):,} channels in {len(BLOCKS)} blocks, {size:,.0f} MiB; "
        f"ready in {time.perf_counter() - start:.1f} s)"
    )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.fresh_install:
        how = measure_fresh_install
    elif args.server_only:
        how = measure_server
    else:
        write_evaluation(store)
        prepare(store)
        how = measure
    print(
        "measured:",
        "in-process script runs (AppTest)" if args.server_only else "request to rendered page (chromium)",
    )
    results = measure(store, args.repeats, args.settle) if how is measure else how(store, args.repeats)
    if not args.server_only:
        results = {**measure_floor(args.repeats), **results}
    for name, values in results.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:58s} median {np.median(values):6.2f} s   ({shown})")
    print(f"machine: load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
