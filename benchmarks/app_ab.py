"""Is a change to the app faster in the browser? Two checkouts side by side, alternating, in one browser.

On this noisy 2-core machine one page load varies by a second between sittings,
more than most changes to a page save, so a change is judged by running the app
of each checkout in turn (a fresh server each time, started in the checkout's
folder with ``PYTHONPATH`` pointing at it, and checked to import that
checkout's seviz) against the same store in the same Chromium, round after round,
and comparing medians: the ratio is what to read. Times, as
``benchmarks/app_latency.py`` does, from the request (or click) to every chart
of the page drawn: the first load of the page, then the page's controls.

Run: ``python benchmarks/app_ab.py --tree before=/path/to/old/checkout --tree
after=. [--page Distributions] [--rounds 4] [--settle 0.5] [--store PATH]``, or
``--fresh-install`` for the first Distributions page of a 1,000-sample store
with nothing saved beside it and an empty numba cache (as app_latency's).
Make the old checkout with ``git worktree add /tmp/old COMMIT``. ``--settle``
waits that long before each click (0 clicks as soon as the page is drawn, as
app_latency does). The store (``benchmarks/app_latency.py``'s 50,000-sample
one by default) is written and its statistics saved once if missing.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_latency import (  # noqa: E402 - the sibling benchmark's harness
    _FIRST_TEXT,
    CHROMIUM,
    PAGES,
    _App,
    _chromium,
    _controls,
    _timed,
    prepare,
    time_fresh_install,
    write_evaluation,
    write_store,
)


def _tree(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    folder = Path(path).resolve()
    if not sep or not label or not (folder / "seviz" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(
            f"--tree {text!r}: give LABEL=PATH with PATH a seviz checkout (it holds seviz/__init__.py)"
        )
    return label, folder


def _environment(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def imported_seviz(tree: Path) -> Path:
    """The seviz package a server started for ``tree`` imports (as :class:`_App` starts it)."""
    found = subprocess.run(
        [sys.executable, "-c", "import seviz; print(seviz.__file__)"],
        env=_environment(tree),
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip()).resolve().parent


def check_trees(trees: dict[str, Path]) -> None:
    """Raise SystemExit unless each tree's server would run that tree's seviz."""
    for label, tree in trees.items():
        package = imported_seviz(tree)
        if package != tree / "seviz":
            raise SystemExit(
                f"--tree {label}={tree}: its server would import {package}, not {tree / 'seviz'}"
            )


def measure(
    store: Path, trees: dict[str, Path], page_name: str, rounds: int, settle: float
) -> dict[tuple[str, str], list[float]]:
    """Seconds per (step, tree): each round starts every tree's app in turn and times the page and its controls."""
    times: dict[tuple[str, str], list[float]] = {}
    with _chromium() as browser:
        for attempt in range(rounds):
            for label, tree in trees.items():
                these: dict[str, list[float]] = {}
                with _App(store, env=_environment(tree), cwd=tree) as url:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    address = f"{url}?page={page_name.replace(' ', '+')}"
                    load = functools.partial(page.goto, address)
                    text = _FIRST_TEXT.get(page_name, page_name)
                    _timed(these, f"first load: {page_name}", load, page, PAGES[page_name], text)
                    _controls(page, page_name, attempt, these, settle)
                    page.close()
                for step, values in these.items():
                    times.setdefault((step, label), []).extend(values)
    return times


def measure_fresh_install(
    store: Path, trees: dict[str, Path], rounds: int
) -> dict[tuple[str, str], list[float]]:
    """Seconds per tree of a fresh install's first Distributions page (nothing saved, numba's cache empty).

    One browser; its cache is warmed by an untimed first load, as a user's browser
    has Streamlit's JavaScript cached after the first visit.
    """
    times: dict[tuple[str, str], list[float]] = {}
    with _chromium() as browser:
        first = next(iter(trees.values()))
        time_fresh_install(browser, store, {}, _environment(first), first)
        for _ in range(rounds):
            for label, tree in trees.items():
                these: dict[str, list[float]] = {}
                time_fresh_install(browser, store, these, _environment(tree), tree)
                for step, values in these.items():
                    times.setdefault((step, label), []).extend(values)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tree", type=_tree, action="append", required=True, help="LABEL=PATH, twice or more"
    )
    parser.add_argument("--page", default="Distributions", choices=list(PAGES))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--settle", type=float, default=0.0, help="seconds to wait before each click")
    parser.add_argument(
        "--store", type=Path, default=None, help="default: app_latency's (50,000 samples, or 1,000 fresh)"
    )
    parser.add_argument(
        "--fresh-install",
        action="store_true",
        help="time the first Distributions page of a 1,000-sample store with nothing saved (no --page)",
    )
    args = parser.parse_args()
    trees = dict(args.tree)
    if len(trees) < 2:
        parser.error("give two --tree LABEL=PATH or more (the labels must differ)")
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    folder = Path(tempfile.gettempdir()) / "seviz-bench"
    check_trees(trees)
    if args.fresh_install:
        store = write_store((args.store or folder / "app1000-fresh.h5").resolve(), 1000, 10)
    else:
        store = write_store((args.store or folder / "app50k.h5").resolve(), 50_000, 1000)
        write_evaluation(store)
        prepare(store)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.fresh_install:
        times = measure_fresh_install(store, trees, args.rounds)
    else:
        times = measure(store, trees, args.page, args.rounds, args.settle)
    first = next(iter(trees))
    for step in dict.fromkeys(step for step, _ in times):
        base = np.median(times[(step, first)])
        for label in trees:
            values = times[(step, label)]
            shown = ", ".join(f"{v:.2f}" for v in values)
            ratio = np.median(values) / base
            print(
                f"{step:45s} {label:>10s} median {np.median(values):5.2f} s  {ratio:4.2f}x {first}  ({shown})"
            )
    print(f"machine: load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
