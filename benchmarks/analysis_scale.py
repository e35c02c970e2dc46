"""How fast and how lean is ``seviz.stats.compute_statistics`` at the paper's scale?

Builds a synthetic store of 50,000 samples x the 16 SE blocks of SE-ResNet-50
(channels 256 x 3, 512 x 4, 1024 x 6, 2048 x 3; float16; about 1.5 GB) in a
temporary folder, written with ``StoreWriter`` in batches, then measures each
pass in a fresh subprocess (so the write phase does not count towards memory):

* ``plain read``: one plain sequential h5py read of every block, the
  reference every other figure is divided by;
* ``float16 read``: the same read through ``Store.iter_chunks(dtype=None)``,
  as ``compute_statistics`` reads: the floor of the analysis;
* ``float32 read``: ``Store.iter_chunks()`` converting to float32 (numpy
  converts float16 one value at a time, several times the read), for scale;
* ``histogram only``: the float16 read plus the fine-histogram counting of
  every gate (``BlockAccumulator._count`` over each chunk), the step that
  bounds the analysis;
* ``numpy's counting floor``: only ``np.bincount`` timed, over the
  precomputed (channel, bin) index of every gate: the cheapest per-gate
  counting numpy offers, which no histogram of every gate can beat here;
* ``statistics, 1 worker``: ``compute_statistics`` analysing one block at a
  time;
* ``statistics``: ``compute_statistics`` as shipped (blocks side by side on
  up to ``seviz.stats._MAX_WORKERS`` cores), with its peak RSS
  (``ru_maxrss`` of the subprocess). Both statistics figures include opening
  the store (reading and decoding its 50,000 class names and paths), which is
  also printed on its own.

Passes alternate round by round and every figure is the median over rounds,
wall-clock and CPU (user + system, all threads), so the ratios hold up on a
busy machine; compare CPU ratios when other jobs compete for the cores. The
file is read once before timing so every measurement reads from the page
cache. Targets: statistics <= 3x the plain read, peak RSS < 1 GB.

Usage::

    python benchmarks/analysis_scale.py [--samples 50000] [--classes 10] [--rounds 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SE_RESNET50_BLOCKS = [(2, 3, 256), (3, 4, 512), (4, 6, 1024), (5, 3, 2048)]

_CHILD = r"""
import json, resource, sys, time
mode, path = sys.argv[1], sys.argv[2]
import h5py
import numpy as np
from seviz import stats
from seviz._streaming import BlockAccumulator, _bin_table
from seviz.store import open_store

def rows_for(channels):
    return max(256, (1 << 24) // channels)

def plain():
    with h5py.File(path, "r") as f:
        for name, data in f["blocks"].items():
            rows = rows_for(data.shape[1])
            for s in range(0, data.shape[0], rows):
                data[s : s + rows]

def read(dtype):
    for name, info in store.blocks.items():
        for _ in store.iter_chunks(name, rows=rows_for(info.channels), dtype=dtype):
            pass

def histogram_only():
    # The accumulator's own counting step, every row of a chunk as one group.
    classes = store.recorded_class_names
    for name, info in store.blocks.items():
        acc = BlockAccumulator(info, len(store), classes, classes, stats.StatsSettings())
        for _, gates in store.iter_chunks(name, rows=rows_for(info.channels), dtype=None):
            acc._count(gates.view(np.uint16), 0, len(gates), 0, (False, False))

def counting_floor():
    # Only np.bincount is timed, over precomputed (channel, fine bin) indices of every gate:
    # the cheapest per-gate count numpy offers, without the read or the bin lookup.
    table = _bin_table(stats.StatsSettings().quantile_bins)
    bins = stats.StatsSettings().quantile_bins
    counted = 0.0
    for name, info in store.blocks.items():
        offsets = np.arange(info.channels) * bins
        for _, gates in store.iter_chunks(name, rows=rows_for(info.channels), dtype=None):
            flat = (table[gates.view(np.uint16)] + offsets).ravel()
            began = time.perf_counter()
            np.bincount(flat, minlength=info.channels * bins)
            counted += time.perf_counter() - began
    extra["counting_seconds"] = counted

def statistics(workers):
    if workers:
        stats._MAX_WORKERS = workers
    opened = time.perf_counter()
    with open_store(path) as opened_store:  # timed: compute_statistics(path) opens it too
        extra["open_seconds"] = time.perf_counter() - opened
        result = stats.compute_statistics(opened_store)
    extra["accuracy_SE_5_3"] = result.block("SE_5_3").specificity.accuracy
    extra["workers"] = min(len(result.blocks), stats._MAX_WORKERS, stats._cpus())

passes = {
    "plain": plain,
    "read16": lambda: read(None),
    "read32": lambda: read(np.float32),
    "histogram": histogram_only,
    "floor": counting_floor,
    "stats1": lambda: statistics(1),
    "stats": lambda: statistics(0),
}
extra = {}
# The reads are timed without opening the store (decoding its sample names).
store = open_store(path) if mode in ("read16", "read32", "histogram", "floor") else None
before = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
passes[mode]()
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
peaks = {"peak_kib": after.ru_maxrss, "baseline_kib": before.ru_maxrss}
print(json.dumps({"seconds": seconds, "cpu": cpu, **peaks, **extra}))
"""

PASSES = {  # mode: label
    "plain": "plain read (h5py)",
    "read16": "float16 read (iter_chunks)",
    "read32": "float32 read (iter_chunks)",
    "histogram": "histogram only (+ f16 read)",
    "floor": "numpy's counting floor",
    "stats1": "statistics, 1 worker",
    "stats": "statistics",
}


def build_store(path: Path, samples: int, classes: int, batch: int = 1000, seed: int = 0) -> float:
    """Write the synthetic store; returns the seconds it took."""
    from seviz.store import BlockInfo, SampleBatch, StoreWriter

    blocks = [
        BlockInfo(f"SE_{stage}_{b}", f"layer{stage - 1}.{b - 1}.se", stage, b, channels, "se")
        for stage, count, channels in SE_RESNET50_BLOCKS
        for b in range(1, count + 1)
    ]
    rng = np.random.default_rng(seed)
    names = [f"class{i}" for i in range(classes)]
    # Gates like a trained SE net's: a per-class vector plus per-image noise.
    centers = {b.name: rng.uniform(0.05, 0.95, size=(classes, b.channels)).astype(np.float32) for b in blocks}
    attrs = {
        "model": "synthetic_se_resnet50",
        "created": "benchmark",
        "classes": [{"index": i, "name": n, "id": n} for i, n in enumerate(names)],
    }
    start = time.perf_counter()
    with StoreWriter(path, blocks, attrs, dtype="float16") as writer:
        for first in range(0, samples, batch):
            n = min(batch, samples - first)
            labels = rng.integers(0, classes, size=n)
            gates = {}
            for info in blocks:
                noise = rng.standard_normal((n, info.channels), dtype=np.float32)
                gates[info.name] = np.clip(centers[info.name][labels] + 0.1 * noise, 0.0, 1.0)
            writer.append(
                SampleBatch(
                    label=labels,
                    class_name=[names[i] for i in labels],
                    path=[f"img{first + i}.jpg" for i in range(n)],
                    topk_index=np.zeros((n, 5), dtype=np.int32),
                    topk_prob=np.zeros((n, 5), dtype=np.float32),
                    gates=gates,
                    consumed=n,
                )
            )
        writer.close(complete=True)
    return time.perf_counter() - start


def run_child(mode: str, path: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; figures are medians")
    parser.add_argument("--keep", type=Path, default=None, help="write the store here and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="seviz-bench-") as tmp:
        path = (args.keep or Path(tmp)) / "analysis_scale.h5"
        if path.exists():
            print(f"reusing {path}")
        else:
            seconds = build_store(path, args.samples, args.classes)
            print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {seconds:.1f} s")
        gates = args.samples * sum(count * channels for _, count, channels in SE_RESNET50_BLOCKS)
        print(f"{args.samples} samples x 16 blocks ({gates / 1e6:.0f} M gates), {args.classes} classes")
        run_child("plain", path)  # warm the page cache
        runs: dict[str, list[dict]] = {mode: [] for mode in PASSES}
        for round_index in range(args.rounds):
            order = list(PASSES) if round_index % 2 == 0 else list(reversed(PASSES))
            for mode in order:
                runs[mode].append(run_child(mode, path))

        def median(mode: str, key: str) -> float:
            return statistics.median(r[key] for r in runs[mode])

        plain_wall, plain_cpu = median("plain", "seconds"), median("plain", "cpu")
        print(f"medians of {args.rounds} alternating rounds; ratios to the plain read")
        print(f"  {'pass':<30} {'wall s':>7} {'ratio':>6}   {'CPU s':>7} {'ratio':>6}")
        for mode, label in PASSES.items():
            if mode == "floor":  # its wall time includes untimed set-up; printed below
                continue
            wall, cpu = median(mode, "seconds"), median(mode, "cpu")
            print(f"  {label:<30} {wall:7.2f} {wall / plain_wall:5.1f}x   {cpu:7.2f} {cpu / plain_cpu:5.1f}x")
        stats = runs["stats"]
        ratio = median("stats", "seconds") / plain_wall
        print(
            f"statistics / plain read        : {ratio:5.1f}x wall (target <= 3x), "
            f"{median('stats', 'cpu') / plain_cpu:.1f}x CPU; {stats[0]['workers']} worker(s)"
        )
        print(f"  of which opening the store   : {median('stats', 'open_seconds'):5.2f} s")
        print(f"  float16 read alone           : {median('read16', 'seconds') / plain_wall:5.1f}x")
        print(
            f"  histogram counting + read    : {median('histogram', 'seconds') / plain_wall:5.1f}x "
            "(the step that bounds it)"
        )
        floor = median("floor", "counting_seconds")
        print(
            f"  numpy's counting floor       : {floor / plain_wall:5.1f}x (np.bincount alone over every gate's "
            f"precomputed bin, {floor:.2f} s on one core: no read, no lookup)"
        )
        print(
            f"peak RSS of the statistics run : {max(r['peak_kib'] for r in stats) / 1024:5.0f} MiB "
            f"(target < 1 GB; {stats[0]['baseline_kib'] / 1024:.0f} MiB after imports); "
            f"SE_5_3 nearest-centroid accuracy {stats[0]['accuracy_SE_5_3']:.3f}"
        )


if __name__ == "__main__":
    main()
