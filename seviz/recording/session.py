"""``seviz record``: run images through a model and stream its SE gates into a store.

:func:`record` runs in three steps over a :class:`~seviz.recording.config.RecordConfig`,
checked before anything else happens: **prepare** (check the files, take the
store's lock, load the model, list the images, check a resume against the
store, calibrate a fast mode, open the :class:`~seviz.store.StoreWriter`),
**run** (the batch loop), **finish** (mark the store complete).

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
duplicated. One Ctrl-C stops after the current batch, a second at once
(:mod:`~seviz.recording.interrupts`).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seviz._files import atomic_write_text, check_output
from seviz._torch_utils import resolve_device
from seviz.errors import RecordError
from seviz.models.preprocessing import DataConfigLike, config_json, describe_preprocessing
from seviz.recording import distributed
from seviz.recording import fast_modes as fast
from seviz.recording import resume as resume_checks
from seviz.recording.config import RecordConfig
from seviz.recording.interrupts import StopRequest, stop_requests
from seviz.recording.pipeline import Pipeline, _BackgroundWriter, _InlineWriter, plan_pipeline
from seviz.se import SEGate
from seviz.store import BlockInfo, SampleBatch, StoreWriter
from seviz.store.lock import StoreLock

if TYPE_CHECKING:
    import torch

    from seviz.data import ImageItem
    from seviz.models import LoadedModel


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
    preprocessing: str = ""  # the data config and where its values came from, in words
    preprocessing_notes: tuple[str, ...] = ()  # ImageNet fallback, upscaled images
    # [distributed] Under torchrun: every rank's own summary, in rank order (empty otherwise).
    ranks: tuple[RecordSummary, ...] = ()
    skipped_files: tuple[str, ...] = ()  # the unreadable files, in list order (the store's /skipped/path)

    def to_dict(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict (what :meth:`write_json` writes)."""
        return {
            **asdict(self),
            "preprocessing_notes": list(self.preprocessing_notes),
            "ranks": [rank.to_dict() for rank in self.ranks],
            "skipped_files": list(self.skipped_files),
        }

    def write_json(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write :meth:`to_dict` as JSON (never over the store, nor over a file without ``overwrite``)."""
        target = check_output(path, inputs=[self.store], overwrite=overwrite, what="JSON")
        return atomic_write_text(target, json.dumps(self.to_dict(), indent=2) + "\n")

    def summary(self) -> str:
        """The lines a person reads."""
        return (
            f"store:    {self.store}\n"
            f"model:    {self.model} ({self.precision})\n"
            f"blocks:   {self.blocks}\n"
            f"samples:  {self.samples}\n"
            f"skipped:  {_unreadable(self.skipped, self.skipped_files)}\n"
            f"speed:    {self.images_per_second:.1f} images/s"
            + (" (all ranks)" if self.ranks else "")
            + "".join(
                f"\nrank {rank}:   {part.samples} samples, {part.skipped} skipped, {part.seconds:.1f} s, "
                f"{part.images_per_second:.1f} images/s into {part.store}"
                for rank, part in enumerate(self.ranks)
            )
            + (f"\npreprocessing: {self.preprocessing}" if self.preprocessing else "")
            + "".join(f"\nnote: {note}" for note in self.preprocessing_notes)
        )

    def describe(self) -> str:
        """One line."""
        return (
            f"recorded {self.samples} images x {self.blocks} SE blocks of {self.model} "
            f"({self.precision}) into {self.store}; skipped {_unreadable(self.skipped)}; "
            f"{self.images_per_second:.1f} images/s"
            + (f" on {len(self.ranks)} ranks" if self.ranks else "")
            + "".join(f"\nnote: {note}" for note in self.preprocessing_notes)
        )


SKIPPED_NAMED = 5  # unreadable files a summary names; the log has every one


def _unreadable(count: int, files: Sequence[str] = ()) -> str:
    """``1 unreadable file: a.jpg``, ``7 unreadable files: a, b, c, d, e and 2 more (see the log)``."""
    text = f"{count} unreadable file{'' if count == 1 else 's'}"
    if not files:
        return text
    named = ", ".join(files[:SKIPPED_NAMED])
    more = len(files) - SKIPPED_NAMED
    return f"{text}: {named}" + (f" and {more} more (see the log)" if more > 0 else "")


@dataclass
class _Run:
    """A prepared recording: the model loaded, the images listed, the store open for writing."""

    config: RecordConfig
    device: torch.device
    mode: fast.FastMode
    pipeline: Pipeline
    loaded: LoadedModel
    items: list[ImageItem]
    gates: list[SEGate]
    writer: StoreWriter
    notes: tuple[str, ...] = ()  # preprocessing notes: ImageNet fallback, upscaled images
    shard: distributed.Shard | None = None  # under torchrun: this rank's slice of the image list
    began: float = 0.0
    start_samples: int = 0
    sink: _BackgroundWriter | _InlineWriter | None = None
    skipped_files: list[str] = field(
        default_factory=list
    )  # unreadable files: a resumed store's, then this run's


# Under torchrun, each rank records its slice into its shard and rank 0 combines the
# shards (seviz.recording.distributed); outside torchrun the call goes straight through.
@distributed.across_ranks(RecordSummary)
def record(
    model: str | RecordConfig,
    data: str | Path | None = None,
    out: str | Path | None = None,
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
    data_config: DataConfigLike = None,
    shard: distributed.Shard | None = None,
) -> RecordSummary:
    """Record the SE gates of ``model`` on the images under ``data`` into the store ``out``.

    Call it with keyword arguments, or with one :class:`RecordConfig`
    (``record(config)``). Every option is checked before any model is loaded or
    any file is written; the store's lock is held from the first look at the
    store to the last write (one writer per store).

    Args:
        model: Model spec (see :mod:`seviz.models.registry`), or a :class:`RecordConfig`.
        data: Image folder (see :mod:`seviz.data.loader`).
        out: The ``.h5`` store to write (never inside ``data``).
        classes: Classes to record, a list or comma-separated (all classes found under ``data`` when None).
        weights: ``pretrained``, ``random`` or a weights file.
        images_per_class: First N images of each class (the paper used 50).
        batch_size: Images per forward pass.
        workers: DataLoader worker processes decoding images; None picks by
            device (see :func:`plan_pipeline`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: Stored gate dtype, ``float16`` or ``float32``.
        overwrite: Replace an existing store (once the new run has committed its first batch).
        resume: Finish an interrupted store with the same options and images.
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
        data_config: Preprocessing instead of the model's own (see
            :func:`seviz.models.load_model`): a mapping of any of ``input_size``,
            ``mean``, ``std``, ``crop_pct``, ``crop_mode``, ``interpolation``, or a JSON file.
        shard: Set by :func:`~seviz.recording.distributed.across_ranks` under
            torchrun (never by callers): this rank's slice of the image list and
            its shard.

    Returns:
        A :class:`RecordSummary`.

    Raises:
        RecordError: An option seviz cannot use (``error.param`` names it).
        StoreLockedError: Another run is writing ``out``.
        StoreError: ``resume`` on a store that is complete, or of another run or image list.
        DiskFullError: The disk filled up; the committed samples are kept.
        KeyboardInterrupt: Ctrl-C; the committed samples are kept (finish with ``resume=True``).
    """
    arguments = dict(locals())
    arguments.pop("shard")
    config = _as_config(arguments)
    device_, mode, pipeline = _check_setup(config)
    with stop_requests() as stop, StoreLock(config.out) as _lock:
        run = _prepare(config, device_, mode, pipeline, _lock, shard)
        stop.mode = "after_batch"
        try:
            _run(run, stop)
        except BaseException:
            stop.mode = "hold"
            _abandon(run)
            raise
        stop.mode = "hold"
        return _finish(run)


def _as_config(arguments: dict[str, Any]) -> RecordConfig:
    """``record``'s arguments as a config; a config passed as ``model`` stands alone."""
    given = arguments.pop("model")
    if not isinstance(given, RecordConfig):
        return RecordConfig(model=given, **arguments)
    defaults = {name: value for name, value in _RECORD_DEFAULTS.items() if name != "model"}
    extra = sorted(name for name, value in arguments.items() if value != defaults.get(name))
    if extra:
        raise RecordError(
            f"record(config) takes no other arguments, got {', '.join(extra)}; "
            "use dataclasses.replace(config, ...) to change a config",
            param=extra[0],
        )
    return given


def _check_setup(config: RecordConfig) -> tuple[torch.device, fast.FastMode, Pipeline]:
    """The checks that need no model and write nothing: files, device, fast mode, pipeline."""
    config.check_paths()
    device = resolve_device(config.device)
    if config.decode == "gpu" and device.type != "cuda":
        raise RecordError(
            "`decode` gpu needs a CUDA device (`device` cuda); on a CPU use `decode` cpu", param="decode"
        )
    mode = fast.FastMode(config.precision, config.channels_last, config.compile)
    fast.check_supported(mode, device)
    return device, mode, plan_pipeline(device.type, config.workers, config.writer)


def _prepare(
    config: RecordConfig,
    device: torch.device,
    mode: fast.FastMode,
    pipeline: Pipeline,
    lock: StoreLock,
    shard: distributed.Shard | None = None,
) -> _Run:
    """Under the store's lock: the model, the images, the resume checks, the calibration, the writer."""
    from seviz.se import discover_se_gates

    committed = resume_checks.read_committed(config.out) if config.resume else None
    loaded = _load_checked_model(config, device)
    items, notes = _find_items(config, loaded)
    gates = discover_se_gates(loaded.model, tuple(loaded.data_config["input_size"]))
    classes_attr, run_config = _describe(config, loaded, items)
    if shard is not None:
        run_config.update(shard.run_config(len(items)))  # the rank's slice, of the whole list
    if committed is not None:
        resume_checks.check_options(config.out, committed, run_config)
        resume_checks.check_committed_paths(config.out, committed, shard.take(items) if shard else items)
    mode, gate_error = _calibrate(config, loaded, gates, items, mode, device)
    attrs = {
        **loaded.provenance(),
        **_versions(),
        "classes": classes_attr,
        "command": config.command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "precision": mode.describe(),
        "gate_error": gate_error,
        "run_config": run_config,
        "preprocessing_notes": list(notes),
        **(shard.attrs() if shard else {}),  # rank, world_size
    }
    if shard is not None:  # after calibration, which every rank runs on the same first batch
        items = shard.take(items)
    writer = _open_writer(config, gates, attrs, items, lock)
    return _Run(
        config,
        device,
        mode,
        pipeline,
        loaded,
        items,
        gates,
        writer,
        notes,
        shard,
        start_samples=writer.samples,
        skipped_files=list(committed.skipped) if committed is not None else [],
    )


def _load_checked_model(config: RecordConfig, device: torch.device) -> LoadedModel:
    """The model, once the classes asked for are known to exist and its preprocessing suits the decoder."""
    from seviz.data.gpu_decode import check_preprocessing
    from seviz.models import check_classes, load_model

    # A typo in --classes is told at once, not after a model build or a weights download.
    check_classes(config.model, config.classes, config.num_classes, config.class_names)
    loaded = load_model(
        config.model,
        config.weights,
        num_classes=config.num_classes,
        class_names=config.class_names,
        device=str(device),
        data_config=config.data_config,
    )
    if config.decode == "gpu":
        check_preprocessing(loaded.data_config)
    return loaded


def _find_items(config: RecordConfig, loaded: LoadedModel) -> tuple[list[ImageItem], tuple[str, ...]]:
    """The images to record, and the preprocessing notes (the model's, plus any upscaling warning)."""
    from seviz.data import find_images, upscaling_note

    items = find_images(config.data, loaded, config.classes, config.images_per_class)
    upscaled = upscaling_note(items, loaded.data_config)
    if upscaled:
        log.warning("%s", upscaled)
    notes = (*loaded.preprocessing_notes, *([upscaled] if upscaled else []))
    return items, notes


def _open_writer(
    config: RecordConfig, gates: list[SEGate], attrs: dict[str, Any], items: list[ImageItem], lock: StoreLock
) -> StoreWriter:
    """The store writer for these gates and images, sized to their longest path and class name."""
    return StoreWriter(
        config.out,
        [_block_info(g) for g in gates],
        attrs,
        dtype=config.dtype,
        overwrite=config.overwrite,
        resume=config.resume,
        path_length=max((len(i.path.encode()) for i in items), default=1),  # a rank's slice may be empty
        name_length=max((len(i.class_name.encode()) for i in items), default=1),
        inputs=config.inputs(),
        lock=lock,
    )


def _describe(
    config: RecordConfig, loaded: LoadedModel, items: list[ImageItem]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The store's ``classes`` and ``run_config`` (what a resume must match)."""
    classes_attr = [
        {"index": index, "name": name, "id": loaded.class_ids[index] if loaded.class_ids else None}
        for index, name in {item.label: item.class_name for item in items}.items()
    ]
    run_config = {
        "model": loaded.name,
        "weights_sha256": loaded.weights_sha256,
        "data": str(config.data.resolve()),
        "classes": [c["index"] for c in classes_attr],
        "images_per_class": config.images_per_class,
        "images": len(items),
        "dtype": config.dtype,
        "preprocessing": config_json(loaded.data_config),
    }
    return classes_attr, run_config


def _calibrate(
    config: RecordConfig,
    loaded: LoadedModel,
    gates: list[SEGate],
    items: list[ImageItem],
    mode: fast.FastMode,
    device: torch.device,
) -> tuple[fast.FastMode, dict[str, Any]]:
    """A fast mode is measured against fp32 on a whole first batch (the loop's batch shape, for compile)."""
    from seviz.data import iterate_batches

    gate_error: dict[str, Any] = {"precision": "fp32", "max_abs": 0.0, "mean_abs": 0.0, "exact": True}
    if mode.exact:
        return mode, gate_error
    first = next(iterate_batches(items, loaded.data_config, batch_size=config.batch_size), None)
    if first is not None and first.images is not None:
        gate_error = fast.calibrate(loaded.model, gates, first.images, mode, device, config.max_gate_error)
        mode = fast.enforce_bound(gate_error, mode, config.fallback)
        gate_error["recorded_precision"] = mode.describe()
    return mode, gate_error


def _run(run: _Run, stop: StopRequest) -> None:
    """The batch loop: decode, forward, hand each batch to the store; stop between batches on request."""
    import torch
    from tqdm.auto import tqdm

    from seviz.data import iterate_batches
    from seviz.se import Recorder

    config, mode, writer = run.config, run.mode, run.writer
    log.info("recording on %s: %s", run.device, run.pipeline.describe())
    sink = _BackgroundWriter(writer) if run.pipeline.background_writer else _InlineWriter(writer)
    run.sink = sink
    runner = fast.prepare_model(run.loaded.model, mode)
    bar = tqdm(
        total=len(run.items),
        initial=writer.consumed,
        unit="img",
        desc=run.shard.label if run.shard else "recording",  # under torchrun one bar per rank, in rank order
        position=run.shard.local_rank if run.shard else None,
        disable=not config.progress,
    )
    run.began = time.perf_counter()
    try:
        # One autocast context for the whole run: autocast caches its low-precision copies of
        # the weights only while its context is open, so a context per batch re-casts them.
        with (
            torch.no_grad(),
            Recorder(run.loaded.model, run.gates) as recorder,
            fast.autocast(mode, run.device),
        ):
            for batch in iterate_batches(
                run.items,
                run.loaded.data_config,
                batch_size=config.batch_size,
                workers=run.pipeline.workers,
                start=writer.consumed,
                pin_memory=run.device.type == "cuda",
                decode_device=run.device if config.decode == "gpu" else None,
            ):
                sink.put(_forward(batch, runner, recorder, mode, config.batch_size, run.device))
                run.skipped_files.extend(path for path, _ in batch.skipped)
                bar.update(batch.consumed)
                stop.raise_if_requested()
        sink.finish()
    finally:
        bar.close()
        if mode.channels_last:
            run.loaded.model.to(memory_format=torch.contiguous_format)


def _forward(
    batch: Any, runner: Any, recorder: Any, mode: fast.FastMode, batch_size: int, device: Any
) -> SampleBatch:
    """One batch through the model: its top-5 predictions and every SE gate, ready for the store."""
    if batch.images is not None:
        images = fast.prepare_input(batch.images, mode, device)
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
    return SampleBatch(
        label=np.asarray([i.label for i in batch.items], dtype=np.int64),
        class_name=[i.class_name for i in batch.items],
        path=[i.path for i in batch.items],
        topk_index=topk_index,
        topk_prob=topk_prob,
        gates=gate_arrays,
        consumed=batch.consumed,
        skipped=batch.skipped,
    )


def _abandon(run: _Run) -> None:
    """After an error or Ctrl-C: keep every batch handed to the writer, close the store incomplete."""
    if run.sink is not None:
        try:
            run.sink.finish()
        except BaseException as error:  # the original exception matters more
            log.error("store writer failed while stopping: %s", error)
    writer = run.writer
    try:
        writer.close(complete=False)
    except BaseException as error:
        log.error("closing the store failed: %s", error)
    if writer.published:
        log.warning(
            "recording stopped: %d samples are saved in %s; finish it by running the same command with "
            "--resume (resume=True)",
            writer.samples,
            writer.path,
        )
    else:
        log.warning(
            "recording stopped before its first batch was stored: %s",
            f"{writer.path} is as it was" if writer.path.exists() else "no store was written",
        )


def _finish(run: _Run) -> RecordSummary:
    """Mark the store complete (the last thing written) and sum the run up."""
    writer = run.writer
    seconds = time.perf_counter() - run.began
    skipped = writer.consumed - writer.samples
    writer.close(
        complete=True,
        final_attrs={
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "skipped_count": skipped,
            "samples": writer.samples,
        },
    )
    new = writer.samples - run.start_samples
    summary = RecordSummary(
        store=str(run.config.out),
        model=run.loaded.name,
        blocks=len(run.gates),
        samples=writer.samples,
        skipped=skipped,
        seconds=round(seconds, 3),
        images_per_second=new / seconds if seconds > 0 else 0.0,
        precision=run.mode.describe(),
        complete=True,
        preprocessing=describe_preprocessing(run.loaded.data_config, run.loaded.preprocessing_source),
        preprocessing_notes=run.notes,
        skipped_files=tuple(run.skipped_files),
    )
    log.debug("record summary: %s", json.dumps(summary.to_dict()))
    return summary


_RECORD_DEFAULTS = {name: p.default for name, p in inspect.signature(record).parameters.items()}


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
