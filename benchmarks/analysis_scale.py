"""How fast and how lean is ``seviz.stats.compute_statistics`` at the paper's scale?

Builds a synthetic store of 50,000 samples x the 16 SE blocks of SE-ResNet-50
(channels 256 x 3, 512 x 4, 1024 x 6, 2048 x 3; float16; about 1.5 GB) in a
temporary folder, written with ``StoreWriter`` in batches, then measures in
fresh subprocesses (so the write phase does not count towards memory):

1. one plain sequential h5py read of every block (the reference time);
2. the same read through ``Store.iter_chunks`` (float32 chunks: the floor of
   any analysis that uses it);
3. ``compute_statistics`` on the whole store: time and peak RSS
   (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of its subprocess).

It prints (3) as a multiple of (1) (target <= 3x) and the peak memory
(target < 1 GB). All timings come from one run on one machine; the file is
read once before timing so every measurement reads from the page cache.

Usage::

    python benchmarks/analysis_scale.py [--samples 50000] [--classes 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SE_RESNET50_BLOCKS = [(2, 3, 256), (3, 4, 512), (4, 6, 1024), (5, 3, 2048)]

_CHILD = r"""
import json, resource, sys, time
import h5py
mode, path = sys.argv[1], sys.argv[2]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if mode == "plain":
    with h5py.File(path, "r") as f:
        for name, data in f["blocks"].items():
            rows = max(256, (1 << 24) // data.shape[1])
            for s in range(0, data.shape[0], rows):
                data[s : s + rows]
elif mode == "iter_chunks":
    from seviz.store import open_store
    with open_store(path) as store:
        for name, info in store.blocks.items():
            for _ in store.iter_chunks(name, rows=max(256, (1 << 24) // info.channels)):
                pass
else:
    from seviz.stats import compute_statistics
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    stats = compute_statistics(path)
    b = stats.block("SE_5_3")
    print("# SE_5_3 accuracy", b.specificity.accuracy, "chance", b.specificity.chance, file=sys.stderr)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_kib": peak, "baseline_kib": base}))
"""


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
    if result.stderr.strip():
        print("  " + result.stderr.strip().replace("\n", "\n  "))
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=10)
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
        plain = run_child("plain", path)
        chunks = run_child("iter_chunks", path)
        stats = run_child("stats", path)
        ratio = stats["seconds"] / plain["seconds"]
        print(f"plain sequential h5py read      : {plain['seconds']:7.2f} s")
        floor = chunks["seconds"] / plain["seconds"]
        print(f"Store.iter_chunks read (float32): {chunks['seconds']:7.2f} s  ({floor:.1f}x)")
        print(f"compute_statistics              : {stats['seconds']:7.2f} s")
        print(f"ratio statistics / plain read   : {ratio:7.1f}x   (target <= 3x)")
        print(
            f"peak RSS of the statistics run  : {stats['peak_kib'] / 1024:7.0f} MiB "
            f"(target < 1 GB; {stats['baseline_kib'] / 1024:.0f} MiB after imports)"
        )


if __name__ == "__main__":
    main()
