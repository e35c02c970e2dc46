"""Recording throughput on one process and on N torchrun ranks, side by side in one run.

CPU (default): the same ``seviz record`` of a random-weight model on the same
generated JPEG folder, with the same total threads: one process with ``T``
torch threads (``OMP_NUM_THREADS=T``) against ``torchrun --nproc-per-node T``
with one thread per rank. Rounds alternate which goes first, so each ratio
compares two runs under the same machine load; figures are medians over rounds.

CUDA (``--device cuda``): one process against ``--nproc N`` processes sharing
one GPU (``--device cuda:0`` on every rank; the ranks coordinate over gloo,
which allows that), each with seviz's CUDA pipeline (decoding workers, a
writer thread). Before the runs, the decode cost per image is measured in this
process: decode and preprocess on one CPU core (seviz's DataLoader path,
inline), and with ``--decode gpu`` on the device, so the number of cores a
GPU's rate needs can be read off.

What is reported, per mode:

* ``loop images/s``: images over seconds of the image loop as ``seviz record``
  reports it (after the model is loaded, excluding start-up). For N ranks,
  the sum of the ranks' rates (their loops run side by side) and, more
  conservatively, all images over the slowest rank's loop;
* ``command seconds``: the whole command, start-up (python, torch, model,
  rendezvous) and rank 0's combining included: what a user waits for;
* ratios N ranks / 1 process of both.

The stores are checked to hold the same samples in the same order.

Usage::

    python benchmarks/record_scaling.py [--images 96] [--threads 2] [--rounds 2] [--batch-size 16]
                                        [--model se_resnet50]
    python benchmarks/record_scaling.py --device cuda --nproc 4 --images 4096 --batch-size 128
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from record_overhead import write_images  # noqa: E402  (the same generated photos-like JPEGs)

_SPEED = re.compile(r"^speed:\s+([0-9.]+) images/s", re.M)
_RANK = re.compile(r"^rank (\d+):\s+(\d+) samples, \d+ skipped, ([0-9.]+) s, ([0-9.]+) images/s", re.M)


@dataclass(frozen=True)
class Run:
    loop_rate: float  # images/s of the image loop(s); for ranks: the sum of their rates
    slowest_rate: float  # all images over the slowest loop (= loop_rate for one process)
    seconds: float  # the whole command


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record_args(args: argparse.Namespace, data: Path, out: Path) -> list[str]:
    device = "cuda:0" if args.device == "cuda" else "cpu"
    extra = ["--decode", args.decode] if args.device == "cuda" else []
    return [
        "record", "--model", args.model, "--weights", "random", "--data", str(data), "--out", str(out),
        "--batch-size", str(args.batch_size), "--device", device, "--overwrite", "--no-progress", *extra,
    ]  # fmt: skip


def environment(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run(command: list[str], env: dict[str, str]) -> tuple[str, float]:
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout, seconds


def one_process(args: argparse.Namespace, data: Path, out: Path) -> Run:
    threads = args.threads if args.device == "cpu" else None
    stdout, seconds = run(
        [sys.executable, "-m", "seviz", *record_args(args, data, out)], environment(threads)
    )
    match = _SPEED.search(stdout)
    if match is None:
        raise SystemExit(f"no speed in the output of seviz record:\n{stdout}")
    rate = float(match.group(1))
    return Run(rate, rate, seconds)


def ranks(args: argparse.Namespace, data: Path, out: Path, n: int) -> Run:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(n),
        "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "seviz",
        *record_args(args, data, out),
    ]  # fmt: skip
    stdout, seconds = run(command, environment(1 if args.device == "cpu" else None))
    parts = [(int(s), float(t), float(r)) for _, s, t, r in _RANK.findall(stdout)]
    if len(parts) != n:
        raise SystemExit(f"expected {n} rank lines in the output of torchrun:\n{stdout}")
    total = sum(s for s, _, _ in parts)
    return Run(sum(r for _, _, r in parts), total / max(t for _, t, _ in parts), seconds)


def decode_cost(args: argparse.Namespace, data: Path) -> None:
    """Decode + preprocess per image: one CPU core inline, and on the GPU with --decode gpu."""
    import torch

    from seviz.data import find_images, iterate_batches
    from seviz.models import load_model

    torch.set_num_threads(1)
    loaded = load_model(args.model, "random", device="cpu")
    items = find_images(data, loaded)
    devices: list[torch.device | None] = [None]
    if args.device == "cuda":
        devices.append(torch.device("cuda:0"))
    for device in devices:
        for _ in range(2):  # the first pass warms the page cache (and nvJPEG)
            began = time.perf_counter()
            for batch in iterate_batches(items, loaded.data_config, args.batch_size, decode_device=device):
                if batch.images is not None and device is not None:
                    torch.cuda.synchronize(device)
            seconds = time.perf_counter() - began
        where = "one CPU core" if device is None else f"{device} (nvJPEG + resize on the GPU)"
        ms = 1000 * seconds / len(items)
        print(f"decode + preprocess on {where}: {ms:.2f} ms/image ({1000 / ms:.0f} images/s)")


def same_samples(a: Path, b: Path) -> bool:
    import numpy as np

    from seviz.store import open_store

    with open_store(a) as x, open_store(b) as y:
        return bool(np.array_equal(x.paths, y.paths) and np.array_equal(x.labels, y.labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--images", type=int, default=96, help="generated JPEGs (two classes)")
    parser.add_argument("--model", default="se_resnet50", help="an ImageNet model (folders goldfish, pug)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU: total threads (= ranks of the torchrun run)"
    )
    parser.add_argument("--nproc", type=int, default=2, help="CUDA: processes sharing the GPU")
    parser.add_argument(
        "--decode", default="cpu", choices=["cpu", "gpu"], help="CUDA: where JPEGs are decoded"
    )
    args = parser.parse_args()
    n = args.threads if args.device == "cpu" else args.nproc
    if args.device == "cpu":
        print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; {args.threads} threads in all")
    else:
        import torch

        print(f"GPU: {torch.cuda.get_device_name(0)}; CPU: {cpu_name()}, {os.cpu_count()} logical cores")
    with tempfile.TemporaryDirectory(prefix="seviz-scaling-") as tmp:
        work = Path(tmp)
        data = work / "data"
        write_images(data, {"goldfish": args.images // 2, "pug": args.images - args.images // 2}, size=256)
        decode_cost(args, data)
        single, many = [], []
        for round_ in range(args.rounds):
            order = ("one", "ranks") if round_ % 2 == 0 else ("ranks", "one")
            for which in order:
                if which == "one":
                    single.append(one_process(args, data, work / "one.h5"))
                else:
                    many.append(ranks(args, data, work / "ranks.h5", n))
            print(
                f"round {round_ + 1}: 1 process {single[-1].loop_rate:.2f} images/s "
                f"({single[-1].seconds:.1f} s), {n} ranks {many[-1].loop_rate:.2f} images/s "
                f"(slowest rank: {many[-1].slowest_rate:.2f}; {many[-1].seconds:.1f} s)"
            )
        if not same_samples(work / "one.h5", work / "ranks.h5"):
            raise SystemExit("the two stores hold different samples")

    def median(runs: list[Run], field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs)

    what = (
        f"{args.threads} threads x 1 process vs 1 thread x {n} ranks"
        if args.device == "cpu"
        else (f"1 process vs {n} processes on one GPU")
    )
    print(
        f"\n{args.model}, {args.images} images, batch {args.batch_size}, {what}; medians of {args.rounds} rounds"
    )
    print(f"{'':28} {'1 process':>10} {f'{n} ranks':>10} {'ratio':>7}")
    for label, field in (("loop images/s", "loop_rate"), ("  (slowest rank)", "slowest_rate")):
        a, b = median(single, field), median(many, field)
        print(f"{label:28} {a:>10.2f} {b:>10.2f} {b / a:>7.3f}")
    a, b = median(single, "seconds"), median(many, "seconds")
    print(f"{'command seconds':28} {a:>10.1f} {b:>10.1f} {a / b:>7.3f}  (speed-up, start-up included)")
    per_round = [m.loop_rate / s.loop_rate for s, m in zip(single, many, strict=True)]
    print(
        f"per-round loop ratios: {', '.join(f'{r:.3f}' for r in per_round)} "
        f"(median {statistics.median(per_round):.3f})"
    )


if __name__ == "__main__":
    main()
