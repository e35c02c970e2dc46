"""``seviz record``: run images through a model and stream its SE gates into a store.

The pipeline has three stages: images are decoded (in DataLoader workers, or
inline), the model runs in the main thread, and each batch is appended to the
HDF5 store (:class:`~seviz.store.StoreWriter`, crash-safe), from a background
thread or inline. How they overlap depends on where the model runs
(:func:`plan_pipeline`): on a GPU they overlap, so the model never waits for
decoding or disk; on a CPU, whose cores the forward pass already fills, extra
processes and threads only preempt its threads, so decoding and writing run
between forward passes (``benchmarks/record_overhead.py`` on a 2-core machine:
bf16 SE-ResNet-50 recording at 2.34x plain fp32 inference inline, 2.15x with 2
decoding workers and a writer thread, in the same run).
A run that is interrupted (Ctrl-C, SIGTERM, ``kill -9``) leaves a store holding
every committed sample; ``resume=True`` finishes it with no sample missing or
duplicated.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seviz._torch_utils import resolve_device
from seviz.errors import RecordError, StoreError
from seviz.recording import distributed
from seviz.recording.pipeline import _BackgroundWriter, _InlineWriter, plan_pipeline
from seviz.se import SEGate
from seviz.store import BlockInfo, SampleBatch, StoreWriter, open_store

if TYPE_CHECKING:
    import torch


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordSummary:
    """What a recording produced."""

    store: str
    model: str
    blocks: int
    samples: int
    skipped: int
    seconds: float
    images_per_second: float
    precision: str
    complete: bool
    # [distributed] Under torchrun: every rank's own summary, in rank order (empty otherwise).
    ranks: tuple[RecordSummary, ...] = ()

    def describe(self) -> str:
        return (
            f"recorded {self.samples} images x {self.blocks} SE blocks of {self.model} "
            f"({self.precision}) into {self.store}; skipped {self.skipped} unreadable files; "
            f"{self.images_per_second:.1f} images/s" + (f" on {len(self.ranks)} ranks" if self.ranks else "")
        )


def _topk(logits: torch.Tensor, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    import torch

    probs = torch.softmax(logits.float(), dim=1)
    kk = min(k, probs.shape[1])
    values, indices = probs.topk(kk, dim=1)
    index = np.full((probs.shape[0], k), -1, dtype=np.int32)
    prob = np.zeros((probs.shape[0], k), dtype=np.float32)
    index[:, :kk] = indices.cpu().numpy()
    prob[:, :kk] = values.cpu().numpy()
    return index, prob


def _versions() -> dict[str, str]:
    import h5py
    import timm
    import torch

    from seviz import __version__

    return {
        "seviz_version": __version__,
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "h5py_version": h5py.__version__,
    }


def _check_resumable(path: Path) -> dict[str, Any]:
    """Before loading any model: the store to resume is readable and not complete.

    Returns:
        The run configuration it was recorded with, for :func:`_check_resume_matches`.
    """
    try:
        existing = open_store(path, warn_incomplete=False)
    except StoreError as error:
        raise StoreError(
            f"cannot resume: {error}. A run stopped before it had set up the store leaves nothing to "
            "resume: record it again with --overwrite instead of --resume"
        ) from None
    with existing:
        if existing.complete:
            raise StoreError(
                f"cannot resume: store {str(path)!r} is already complete ({len(existing)} samples); "
                "drop --resume, or pass --overwrite to record it again"
            )
        return existing.json_attr("run_config", {})


def _check_resume_matches(path: Path, previous: dict[str, Any], run_config: dict[str, Any]) -> None:
    differing = [k for k in run_config if previous.get(k) != run_config[k]]
    if differing:
        key = differing[0]
        raise StoreError(
            f"cannot resume {str(path)!r}: it was recorded with {key}={previous.get(key)!r}, this run has "
            f"{key}={run_config[key]!r}; rerun with the original options or record a new store (--overwrite)"
        )


# [distributed] Under torchrun, each rank records its slice into its shard and rank 0 combines
# the shards (seviz.recording.distributed); outside torchrun the call goes straight through.
@distributed.across_ranks(RecordSummary)
def record(
    model: str,
    data: str | Path,
    out: str | Path,
    classes: str | Sequence[str] | None = None,
    weights: str = "pretrained",
    images_per_class: int | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    device: str = "auto",
    dtype: str = "float16",
    overwrite: bool = False,
    resume: bool = False,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    max_gate_error: float = 0.02,
    fallback: bool = False,
    progress: bool = True,
    command: str = "",
    decode: str = "cpu",
    writer: str = "auto",
    shard: distributed.Shard | None = None,
) -> RecordSummary:
    """Record the SE gates of ``model`` on the images under ``data`` into the store ``out``.

    Args:
        model: Model spec (see :mod:`seviz.models.registry`).
        data: Image folder (see :mod:`seviz.data.loader`).
        out: The ``.h5`` store to write.
        classes: Classes to record (all classes found under ``data`` when None).
        weights: ``pretrained``, ``random`` or a weights file.
        images_per_class: First N images of each class (the paper used 50).
        batch_size: Images per forward pass.
        workers: DataLoader worker processes decoding images; None picks by
            device (see :func:`plan_pipeline`).
        device: ``auto``, ``cpu`` or ``cuda``.
        dtype: Stored gate dtype, ``float16`` or ``float32``.
        overwrite: Replace an existing store.
        resume: Finish an interrupted store with the same options.
        num_classes: Output size of a user's model.
        class_names: Output names of a user's model.
        precision: ``fp32`` (exact), ``bf16`` or ``fp16`` (checked against fp32 first).
        channels_last: Run in channels-last memory format.
        compile: ``torch.compile`` the model (checked against fp32 first).
        max_gate_error: Largest gate difference a fast mode may show on calibration.
        fallback: Record in fp32 when the fast mode exceeds ``max_gate_error``.
        progress: Show a progress bar.
        command: The command line, stored for provenance.
        decode: ``cpu`` (PIL, in DataLoader workers or inline) or ``gpu`` (JPEG
            decoding and preprocessing on the CUDA device; see :mod:`seviz.data.gpu_decode`).
        writer: ``auto``, ``thread`` (append to the store from a background
            thread) or ``inline`` (between forward passes); see :func:`plan_pipeline`.
        shard: Set by :func:`~seviz.recording.distributed.across_ranks` under
            torchrun (not by callers): record only this rank's slice into ``out``,
            its shard.

    Returns:
        A :class:`RecordSummary`.
    """
    import torch
    from tqdm.auto import tqdm

    from seviz.data import find_images, iterate_batches
    from seviz.models import load_model
    from seviz.recording import fast_modes as fast
    from seviz.se import Recorder, discover_se_gates

    out = Path(out)
    if np.dtype(dtype) not in (np.float16, np.float32):
        raise RecordError(f"unsupported --dtype {dtype!r}; use float16 or float32")
    if out.exists() and not (overwrite or resume):
        raise FileExistsError(
            f"store {str(out)!r} already exists; pass --overwrite to replace it or --resume to finish it"
        )
    if resume and not out.exists():
        raise FileNotFoundError(f"cannot --resume: store {str(out)!r} does not exist")
    previous_run = _check_resumable(out) if resume else {}
    if not Path(data).expanduser().is_dir():
        raise FileNotFoundError(
            f"data folder {str(data)!r} does not exist; pass --data with a folder of images"
        )
    torch_device = resolve_device(device)
    if decode not in ("cpu", "gpu"):
        raise RecordError(f"unknown --decode {decode!r}; use cpu or gpu")
    if decode == "gpu" and torch_device.type != "cuda":
        raise RecordError("--decode gpu needs a CUDA device (--device cuda); on CPU use --decode cpu")
    mode = fast.FastMode(precision, channels_last, compile)
    fast.check_supported(mode, torch_device)
    pipeline = plan_pipeline(torch_device.type, workers, writer)

    loaded = load_model(
        model, weights, num_classes=num_classes, class_names=class_names, device=str(torch_device)
    )
    items = find_images(data, loaded, classes, images_per_class)
    gates = discover_se_gates(loaded.model, tuple(loaded.data_config["input_size"]))
    recorded_classes = list({item.label: item.class_name for item in items}.items())
    classes_attr = [
        {"index": index, "name": name, "id": loaded.class_ids[index] if loaded.class_ids else None}
        for index, name in recorded_classes
    ]
    run_config = {
        "model": loaded.name,
        "weights_sha256": loaded.weights_sha256,
        "data": str(Path(data).expanduser().resolve()),
        "classes": [c["index"] for c in classes_attr],
        "images_per_class": images_per_class,
        "images": len(items),
        "dtype": np.dtype(dtype).name,
        **(shard.run_config(len(items)) if shard else {}),  # [distributed] the rank's slice
    }
    if resume:
        _check_resume_matches(out, previous_run, run_config)

    gate_error: dict[str, Any] = {"precision": "fp32", "max_abs": 0.0, "mean_abs": 0.0, "exact": True}
    if not mode.exact:
        # A whole first batch: a compiled model then sees the loop's batch shape here already.
        first = next(iterate_batches(items, loaded.data_config, batch_size=batch_size), None)
        if first is not None and first.images is not None:
            gate_error = fast.calibrate(loaded.model, gates, first.images, mode, torch_device, max_gate_error)
            mode = fast.enforce_bound(gate_error, mode, fallback)
            gate_error["recorded_precision"] = mode.describe()
    attrs = {
        **loaded.provenance(),
        **_versions(),
        "classes": classes_attr,
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "precision": mode.describe(),
        "gate_error": gate_error,
        "run_config": run_config,
        **(shard.attrs() if shard else {}),  # [distributed] rank, world_size
    }
    if shard is not None:  # [distributed] after calibration, which every rank runs on the same first batch
        items = shard.take(items)
    store_writer = StoreWriter(
        out,
        [_block_info(g) for g in gates],
        attrs,
        dtype=dtype,
        overwrite=overwrite and not resume,
        resume=resume,
        path_length=max((len(i.path.encode()) for i in items), default=1),
        name_length=max((len(i.class_name.encode()) for i in items), default=1),
    )
    began = time.perf_counter()
    start_samples = store_writer.samples
    log.info("recording on %s: %s", torch_device, pipeline.describe())
    background = (
        _BackgroundWriter(store_writer) if pipeline.background_writer else _InlineWriter(store_writer)
    )
    runner = fast.prepare_model(loaded.model, mode)
    finished = False
    bar = tqdm(
        total=len(items),
        initial=store_writer.consumed,
        unit="img",
        desc=shard.label if shard else "recording",  # [distributed] one bar per rank, in rank order
        position=shard.local_rank if shard else None,
        disable=not progress,
    )
    try:
        # One autocast context for the whole run: autocast caches its low-precision copies of
        # the weights only while its context is open, so a context per batch re-casts them.
        with torch.no_grad(), Recorder(loaded.model, gates) as recorder, fast.autocast(mode, torch_device):
            for batch in iterate_batches(
                items,
                loaded.data_config,
                batch_size=batch_size,
                workers=pipeline.workers,
                start=store_writer.consumed,
                pin_memory=torch_device.type == "cuda",
                decode_device=torch_device if decode == "gpu" else None,
            ):
                if batch.images is not None:
                    images = fast.prepare_input(batch.images, mode, torch_device)
                    rows = len(images)
                    if mode.compile:  # one batch shape: a short last batch would recompile
                        images = fast.pad_batch(images, batch_size)
                    logits = runner(images)[:rows]
                    captured = {name: gate[:rows] for name, gate in recorder.pop().items()}
                    topk_index, topk_prob = _topk(logits)
                    gate_arrays = {name: t.float().cpu().numpy() for name, t in captured.items()}
                else:
                    topk_index = np.zeros((0, 5), np.int32)
                    topk_prob = np.zeros((0, 5), np.float32)
                    gate_arrays = {}
                background.put(
                    SampleBatch(
                        label=np.asarray([i.label for i in batch.items], dtype=np.int64),
                        class_name=[i.class_name for i in batch.items],
                        path=[i.path for i in batch.items],
                        topk_index=topk_index,
                        topk_prob=topk_prob,
                        gates=gate_arrays,
                        consumed=batch.consumed,
                        skipped=batch.skipped,
                    )
                )
                bar.update(batch.consumed)
        background.finish()
        finished = True
    finally:
        bar.close()
        if not finished:
            # Keep every batch already handed to the writer, then close cleanly.
            try:
                background.finish()
            except BaseException as error:  # the original exception matters more
                log.error("store writer failed while stopping: %s", error)
            store_writer.close(complete=False)
            log.warning(
                "recording stopped: %d samples are saved in %s; finish with the same command and --resume",
                store_writer.samples,
                out,
            )
        if mode.channels_last:
            loaded.model.to(memory_format=torch.contiguous_format)
    seconds = time.perf_counter() - began
    skipped_total = store_writer.consumed - store_writer.samples
    store_writer.close(
        complete=True,
        final_attrs={
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "skipped_count": skipped_total,
            "samples": store_writer.samples,
        },
    )
    new = store_writer.samples - start_samples
    summary = RecordSummary(
        store=str(out),
        model=loaded.name,
        blocks=len(gates),
        samples=store_writer.samples,
        skipped=skipped_total,
        seconds=round(seconds, 3),
        images_per_second=new / seconds if seconds > 0 else 0.0,
        precision=mode.describe(),
        complete=True,
    )
    log.debug("record summary: %s", json.dumps(asdict(summary)))
    return summary


def _block_info(gate: SEGate) -> BlockInfo:
    """The store's record of one discovered SE block."""
    return BlockInfo(
        name=gate.name,
        module=gate.gate_path,
        stage=gate.stage,
        block=gate.block,
        channels=gate.channels,
        kind=gate.kind,
        params=gate.params,
        flops=gate.flops,
    )
