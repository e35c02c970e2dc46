"""What does recording SE gates cost on top of plain inference, and does memory grow with the run?

Two measurements, from one run on one machine:

(a) Throughput. A random-weight ``se_resnet50`` (timm ``legacy_seresnet50``,
    224x224 after its own preprocessing) on CPU, over the same generated JPEG
    folder and the same batches. Methods are registered in :data:`METHODS`,
    each paired with the baseline it is compared to. In every round a method
    runs right beside its baseline (which goes first alternates by round), so
    each ratio compares two passes under the same machine load; the figures
    are medians over rounds (of images/s, and of the per-round ratios):

    * ``inference``: ``model(x)`` on pre-decoded batches (the baseline);
    * ``recorder+store``: the same batches with seviz's gate hooks
      (:class:`~seviz.recorder.Recorder`), top-5, and the store writer seviz
      uses on a CPU (inline, see :func:`seviz.recording.plan_pipeline`)
      appending every batch: recording minus decoding;
    * ``decode+inference``: images decoded by seviz's DataLoader
      (:func:`~seviz.data.iterate_batches`, with the workers seviz picks for
      a CPU), then ``model(x)`` on a freshly loaded model, as ``record()`` has;
    * ``record() fp32``: the full exact ``seviz.record(...)`` from the JPEG
      folder into a store, compared to ``inference`` on pre-decoded tensors
      (issue target >= 0.97); its throughput is the one ``record`` reports
      (the image loop, after the model is loaded). ``decode+inference`` over
      ``inference`` shows how much of the gap decoding on the same cores
      accounts for;
    * ``inference (A/A)``: the baseline again, beside itself: the spread of
      its ratio is this machine's noise floor for every other ratio;
    * ``inference, fresh model``: the same passes on a model loaded just
      before, timed from its first batch as ``record()`` is: what a cold
      start (oneDNN primitive creation, first allocations) costs a run of
      this length;
    * ``inference bf16+cl``: ``model(x)`` in channels-last under bf16
      autocast on pre-decoded batches: what the fast mode can reach;
    * ``record() bf16+cl``: ``seviz.record(..., precision="bf16",
      channels_last=True)`` from the JPEG folder, compared to plain fp32
      ``inference`` (target >= 2x on a CPU with bf16); the gate error its
      calibration measured and stored is printed, and so is the one-off
      calibration cost (outside the reported images/s);
    * ``record() bf16+cl, 2 workers + writer thread``: the same with the
      GPU-style overlap forced on, to show what seviz's CPU default avoids;
    * ``record() bf16+cl+compile``: the same with ``compile=True``; the
      compilation happens on the calibration batch, so its cost (tens of
      seconds on CPU) is in the whole call's time, not in images/s.

    It prints each method's images/s and its ratio to its baseline.

(b) Peak memory. ``seviz.record`` of the demo model (``se_resnet50_cifar10``,
    random weights, 32x32 inputs, batch 16) on N and on 10N generated images,
    each in a fresh subprocess started before this process imports torch; peak
    RSS is ``ru_maxrss`` of that subprocess (the RSS at its end and the peak of
    its largest child process are printed too). 10x more images must add
    < 50 MB. N should hold a few full batches, so that both runs reach the
    same activation peak.

Usage::

    python benchmarks/record_overhead.py [--images 64] [--batch-size 16] [--rounds 3]
                                         [--memory-images 64] [--workers N] [--skip-memory]

A new way of recording is one more ``@method(name, baseline=...)`` function;
``--methods`` picks a subset (e.g. ``--methods "record() fp32"``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Context:
    """What every method gets: one model, its gates, one image folder and its decoded batches."""

    loaded: Any
    gates: list
    data: Path
    items: list
    batches: list  # pre-decoded (B, 3, H, W) tensors
    work: Path
    batch_size: int
    workers: int
    extra: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)  # per method, printed after the table


@dataclass(frozen=True)
class Method:
    name: str
    run: Callable[[Context], float]  # returns images per second
    baseline: str | None  # the method this one is compared to


METHODS: dict[str, Method] = {}


def method(name: str, baseline: str | None = None):
    """Register a throughput method (returns images/s), compared to ``baseline``."""

    def decorator(run: Callable[[Context], float]) -> Callable[[Context], float]:
        METHODS[name] = Method(name, run, baseline)
        return run

    return decorator


def _images_per_second(model: Any, batches: list) -> float:
    """``model(x)`` over every batch, under no_grad."""
    import torch

    start = time.perf_counter()
    with torch.no_grad():
        for images in batches:
            model(images)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


@method("inference")
def _inference(ctx: Context) -> float:
    return _images_per_second(ctx.loaded.model, ctx.batches)


@method("recorder+store", baseline="inference")
def _recorder_and_store(ctx: Context) -> float:
    import torch

    from seviz.recording.session import _BackgroundWriter, _InlineWriter, _topk, plan_pipeline
    from seviz.se import Recorder
    from seviz.store import SampleBatch, StoreWriter

    model = ctx.loaded.model
    path = ctx.work / "recorder_store.h5"
    writer = StoreWriter(path, [g.info() for g in ctx.gates], {"model": "benchmark"}, overwrite=True)
    labels = [item.label for item in ctx.items]
    names = [item.class_name for item in ctx.items]
    paths = [item.path for item in ctx.items]
    start = time.perf_counter()
    threaded = plan_pipeline("cpu").background_writer
    background = _BackgroundWriter(writer) if threaded else _InlineWriter(writer)
    first = 0
    with torch.no_grad(), Recorder(model, ctx.gates) as recorder:
        for images in ctx.batches:
            logits = model(images)
            captured = recorder.pop()
            topk_index, topk_prob = _topk(logits)
            last = first + len(images)
            background.put(
                SampleBatch(
                    label=np.asarray(labels[first:last], dtype=np.int64),
                    class_name=names[first:last],
                    path=paths[first:last],
                    topk_index=topk_index,
                    topk_prob=topk_prob,
                    gates={name: t.float().cpu().numpy() for name, t in captured.items()},
                    consumed=len(images),
                )
            )
            first = last
    background.finish()
    seconds = time.perf_counter() - start
    writer.close(complete=True)
    return first / seconds


@method("inference (A/A)", baseline="inference")
def _inference_again(ctx: Context) -> float:
    """The baseline against itself: how far apart two identical passes land on this machine."""
    return _inference(ctx)


@method("inference, fresh model", baseline="inference")
def _inference_fresh(ctx: Context) -> float:
    """Plain inference timed from a freshly loaded model's first batch, as record() is timed."""
    from seviz.models import load_model

    return _images_per_second(load_model("se_resnet50", "random", device="cpu").model, ctx.batches)


@method("inference bf16+cl", baseline="inference")
def _inference_fast(ctx: Context) -> float:
    import copy

    import torch

    if "fast_model" not in ctx.extra:
        ctx.extra["fast_model"] = copy.deepcopy(ctx.loaded.model).to(memory_format=torch.channels_last)
    model = ctx.extra["fast_model"]
    batches = [b.contiguous(memory_format=torch.channels_last) for b in ctx.batches]
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for images in batches:
            model(images)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


@method("decode+inference", baseline="inference")
def _decode_and_inference(ctx: Context) -> float:
    import torch

    from seviz.data import iterate_batches
    from seviz.models import load_model

    # A freshly loaded model, as record() uses: both start with cold oneDNN caches.
    model = load_model("se_resnet50", "random", device="cpu").model
    count = 0
    start = time.perf_counter()
    with torch.no_grad():
        for batch in iterate_batches(
            ctx.items, ctx.loaded.data_config, batch_size=ctx.batch_size, workers=ctx.workers
        ):
            model(batch.images)
            count += len(batch.items)
    return count / (time.perf_counter() - start)


def _run_record(ctx: Context, name: str, **options: Any) -> float:
    from seviz.recording import record
    from seviz.store import open_store

    out = ctx.work / "record.h5"
    began = time.perf_counter()
    summary = record(
        model="se_resnet50",
        weights="random",
        data=ctx.data,
        out=out,
        images_per_class=ctx.extra["images_per_class"],
        batch_size=ctx.batch_size,
        device="cpu",
        overwrite=True,
        progress=False,
        **{"workers": ctx.workers, **options},
    )
    wall = time.perf_counter() - began
    assert summary.samples == len(ctx.items), summary
    with open_store(out) as store:
        error = store.provenance.gate_error
    fast = options.get("precision", "fp32") != "fp32" or options.get("compile")
    note = (
        f"recorded as {summary.precision}; whole call {wall:.1f} s (model load"
        + (", calibration" if fast else "")
        + (", compilation" if options.get("compile") else "")
        + f" and store setup {wall - summary.seconds:.1f} s, outside images/s)"
    )
    if fast:
        note += (
            f"; calibration on {error['calibration_images']} images: max |gate - fp32 gate| "
            f"{error['max_abs']:.4f}, mean {error['mean_abs']:.5f} (bound {error['max_gate_error']:g})"
        )
    ctx.notes.setdefault(name, []).append(note)
    return summary.images_per_second


@method("record() fp32", baseline="inference")
def _record_exact(ctx: Context) -> float:
    return _run_record(ctx, "record() fp32")


@method("record() bf16+cl", baseline="inference")
def _record_fast(ctx: Context) -> float:
    return _run_record(ctx, "record() bf16+cl", precision="bf16", channels_last=True)


@method("record() bf16+cl+compile", baseline="inference")
def _record_compiled(ctx: Context) -> float:
    return _run_record(ctx, "record() bf16+cl+compile", precision="bf16", channels_last=True, compile=True)


@method("record() bf16+cl, 2 workers + writer thread", baseline="inference")
def _record_fast_overlapped(ctx: Context) -> float:
    """The fast mode with GPU-style overlap forced on: what the CPU default (inline) avoids."""
    return _run_record(
        ctx,
        "record() bf16+cl, 2 workers + writer thread",
        precision="bf16",
        channels_last=True,
        workers=2,
        writer="thread",
    )


def write_images(root: Path, classes: dict[str, int], size: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            # smooth noise, so the JPEGs decode like photos rather than static
            small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            Image.fromarray(small).resize((size, size), Image.BILINEAR).save(
                folder / f"{i:05d}.jpg", quality=90
            )


def throughput(args: argparse.Namespace, work: Path) -> None:
    import torch

    from seviz.data import find_images, iterate_batches
    from seviz.models import load_model
    from seviz.recording import plan_pipeline
    from seviz.se import discover_se_gates

    per_class = args.images // 2
    data = work / "throughput"
    write_images(data, {"goldfish": per_class, "pug": per_class}, size=256)
    loaded = load_model("se_resnet50", "random", device="cpu")
    gates = discover_se_gates(loaded.model, tuple(loaded.data_config["input_size"]))
    items = find_images(data, loaded, images_per_class=per_class)
    batches = [b.images for b in iterate_batches(items, loaded.data_config, batch_size=args.batch_size)]
    workers = plan_pipeline("cpu", args.workers).workers
    ctx = Context(loaded, gates, data, items, batches, work, args.batch_size, workers)
    ctx.extra["images_per_class"] = per_class
    chosen = [m for m in METHODS.values() if not args.methods or m.name in args.methods]
    pairs = [(m.baseline, m.name) for m in chosen if m.baseline is not None]
    alone = [m.name for m in chosen if m.baseline is None and all(m.name != b for b, _ in pairs)]
    print(
        f"(a) throughput: se_resnet50 (random weights, {len(gates)} SE blocks), CPU, "
        f"{torch.get_num_threads()} threads, {len(items)} JPEGs 256x256 -> "
        f"{tuple(loaded.data_config['input_size'])}, batch {args.batch_size}, {workers} decode workers; "
        f"{args.rounds} rounds; each method runs right beside its baseline (order alternating by round), "
        "so a ratio compares two passes under the same machine load"
    )
    with torch.no_grad():  # warm-up: first-call allocations and oneDNN primitive caches
        loaded.model(batches[0])
    # What decoding costs, to set against the ratios: one core, in this process, no workers.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    began = time.perf_counter()
    decoded = sum(
        len(b.items) for b in iterate_batches(items, loaded.data_config, batch_size=args.batch_size)
    )
    decode_ms = 1000 * (time.perf_counter() - began) / decoded
    torch.set_num_threads(threads)
    speeds: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {name: [] for _, name in pairs}
    for round_index in range(args.rounds):
        line = []
        for baseline, name in pairs:
            order = (baseline, name) if round_index % 2 == 0 else (name, baseline)
            measured = {which: METHODS[which].run(ctx) for which in order}
            for which, value in measured.items():
                speeds.setdefault(which, []).append(value)
            ratios[name].append(measured[name] / measured[baseline])
            line.append(
                f"{name} {measured[name]:.2f} / {baseline} {measured[baseline]:.2f} = {ratios[name][-1]:.3f}"
            )
        for name in alone:
            speeds.setdefault(name, []).append(METHODS[name].run(ctx))
            line.append(f"{name} {speeds[name][-1]:.2f}")
        print(f"  round {round_index + 1}: " + "; ".join(line), flush=True)
    print(f"  {'method':<26} {'images/s (median)':>18}  median ratio to its baseline")
    for name, values in speeds.items():
        baseline = METHODS[name].baseline
        ratio = f"{statistics.median(ratios[name]):.3f} x {baseline}" if name in ratios else "(baseline)"
        print(f"  {name:<26} {statistics.median(values):>18.2f}  {ratio}")
    inference_ms = 1000 * threads / statistics.median(speeds["inference"]) if "inference" in speeds else None
    if inference_ms:
        print(
            f"  decoding + preprocessing: {decode_ms:.2f} ms per image on one core, against "
            f"{inference_ms:.0f} core-ms per image of fp32 inference ({decode_ms / inference_ms:.1%}); "
            "inference (A/A) shows how far two identical passes land apart on this machine"
        )
    for name, notes in ctx.notes.items():
        for index, note in enumerate(notes):
            print(f"  {name} round {index + 1}: {note}")


_MEMORY_CHILD = r"""
import json, re, resource, sys
inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from seviz.recording import record
data, out, workers = sys.argv[1], sys.argv[2], (None if sys.argv[3] == "auto" else int(sys.argv[3]))
summary = record(model="se_resnet50_cifar10", weights="random", data=data, out=out, batch_size=16,
                 workers=workers, device="cpu", progress=False)
with open("/proc/self/status") as status:
    final = int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1)) / 1024
print(json.dumps({
    "samples": summary.samples,
    "inherited_mb": inherited,
    "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "final_mb": final,
    "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "seconds": summary.seconds,
}))
"""


def memory(args: argparse.Namespace, work: Path) -> None:
    sizes = (args.memory_images, 10 * args.memory_images)
    print(
        f"(b) peak RSS: seviz.record of se_resnet50_cifar10 (demo model, random weights, 32x32), batch 16, "
        f"{'seviz-chosen' if args.workers is None else args.workers} decode workers, each run in a fresh subprocess"
    )
    peaks = {}
    for size in sizes:
        data = work / f"memory_{size}"
        write_images(data, {"cat": size // 2, "dog": size - size // 2}, size=32, seed=size)
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                _MEMORY_CHILD,
                str(data),
                str(work / f"memory_{size}.h5"),
                "auto" if args.workers is None else str(args.workers),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        peaks[size] = figures
        print(
            f"  {figures['samples']:>6} images: peak RSS {figures['self_mb']:.1f} MB, RSS at the end "
            f"{figures['final_mb']:.1f} MB, largest child process {figures['worker_mb']:.1f} MB; "
            f"{figures['seconds']:.1f} s recording"
        )
        if figures["inherited_mb"] > 0.5 * figures["self_mb"]:
            print(
                f"  (warning: {figures['inherited_mb']:.0f} MB of that peak was inherited from this process)"
            )
    small, large = (peaks[s]["self_mb"] for s in sizes)
    verdict = "OK" if large - small < 50 else "ABOVE the 50 MB bound"
    print(f"  10x more images: {large - small:+.1f} MB peak RSS ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="throughput images (two classes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader decode workers (default: seviz's choice for the CPU, see seviz.recording.plan_pipeline)",
    )
    parser.add_argument("--methods", nargs="*", default=None, help=f"subset of {', '.join(METHODS)}")
    parser.add_argument("--memory-images", type=int, default=64, help="the small run; the large one is 10x")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seviz-bench-") as tmp:
        work = Path(tmp)
        # A fresh inductor cache: the first compiled record() pays a cold compilation, as a user's would.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(work / "inductor-cache"))
        # Memory first: on Linux a child's ru_maxrss starts at its parent's RSS when it is
        # forked (it survives fork and exec), so the children must fork from a lean process.
        if not args.skip_memory:
            memory(args, work)
        if not args.skip_throughput:
            throughput(args, work)


if __name__ == "__main__":
    main()
