"""Check an edited model against the original: the evidence behind a pruning recommendation.

For the same images, both models are run batch by batch and compared:
top-1 / top-5 accuracy against the labels, top-1 agreement between the two,
and the mean KL(original || edited) of their predicted distributions. Model
size and cost are reported as parameters, FLOPs (see :data:`FLOPS_METHOD`) and
measured latency (median of timed forward passes of one batch). With
``per_block=True`` every SE block of the original is also removed on its own,
through a forward hook that makes it a pass-through, giving the "remove only
this block" accuracy delta for each, as in Hu et al. (arXiv 1709.01507,
Sec. 7.2), where removing the last stage's SE blocks cost <0.1% top-5.

Memory stays bounded: each batch's logits are reduced to counts and sums
before the next batch is read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seviz._files import atomic_write_text, check_output
from seviz._torch_utils import eval_mode, forward_hooks
from seviz.errors import EvaluationError, StoreError
from seviz.models.preprocessing import STORE_PREFIX, describe_preprocessing
from seviz.pruning.apply import AppliedEdit, PrunedModel, logits_of
from seviz.pruning.counting import FLOPS_METHOD, count_flops, count_params
from seviz.pruning.recommendation import load_recommendation
from seviz.se import SEGate, discover_se_gates
from seviz.store import open_store

if TYPE_CHECKING:
    import torch
    from torch import nn

    from seviz.data import ImageItem
    from seviz.models import LoadedModel

log = logging.getLogger(__name__)

REPORT_FORMAT = 1
TOPK = 5


@dataclass(frozen=True)
class ModelFigures:
    """Accuracy and cost of one model on the evaluation images.

    Attributes:
        top1: Top-1 accuracy (0-1) over the labelled images, or None without labels.
        top5: Top-5 accuracy (top-k with k = number of classes when fewer than 5).
        params: Parameters, plus the fixed per-channel scales pruning put in.
        flops: Multiply-accumulates per image (see :data:`FLOPS_METHOD`).
        latency_ms: Median time of a forward pass of one batch, or None when not timed.
    """

    top1: float | None
    top5: float | None
    params: int
    flops: int
    latency_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class BlockRemoval:
    """The original model with one SE block made a pass-through."""

    name: str
    module: str
    top1: float | None
    top5: float | None
    delta_top1: float | None  # accuracy with the block removed minus the original's
    delta_top5: float | None
    agreement_top1: float
    kl: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EvaluationReport:
    """Original versus edited model on the same images (see :meth:`to_dict` for the JSON)."""

    original: ModelFigures
    edited: ModelFigures
    agreement_top1: float
    kl: float
    images: int
    labelled: int
    per_block: tuple[BlockRemoval, ...] | None = None
    model: str = ""
    model_spec: str = ""
    weights_sha256: str = ""
    edits: tuple[dict[str, Any], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    latency_batch_size: int = 0
    latency_repeats: int = 0
    device: str = "cpu"
    flops_method: str = FLOPS_METHOD
    preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)
    preprocessing_source: dict[str, str] = dataclasses.field(default_factory=dict)
    preprocessing_notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready data (accuracies and agreement are fractions in [0, 1])."""
        from seviz import __version__

        def change(key: str) -> float | int | None:
            before, after = getattr(self.original, key), getattr(self.edited, key)
            return None if before is None or after is None else after - before

        return {
            "seviz_evaluation": REPORT_FORMAT,
            "model": self.model,
            "model_spec": self.model_spec,
            "weights_sha256": self.weights_sha256,
            "images": self.images,
            "labelled": self.labelled,
            "original": self.original.to_dict(),
            "edited": self.edited.to_dict(),
            "change": {k: change(k) for k in ("top1", "top5", "params", "flops")},
            "agreement_top1": self.agreement_top1,
            "kl": self.kl,
            "per_block": None if self.per_block is None else [b.to_dict() for b in self.per_block],
            "edits": list(self.edits),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "latency": {
                "statistic": "median",
                "unit": "ms per batch",
                "batch_size": self.latency_batch_size,
                "repeats": self.latency_repeats,
                "device": self.device,
            },
            "flops_method": self.flops_method,
            "preprocessing": {
                "config": dict(self.preprocessing),
                "source": dict(self.preprocessing_source),
                "notes": list(self.preprocessing_notes),
            },
            "seviz_version": __version__,
        }

    @property
    def edited_blocks(self) -> dict[str, str]:
        """Block name -> action (``identity`` or ``constant``) of every edit measured."""
        return {str(e.get("name")): str(e.get("action")) for e in self.edits}

    @classmethod
    def from_dict(cls, data: Any, source: str = "evaluation") -> EvaluationReport:
        """The report of :meth:`to_dict` (what ``seviz evaluate --json`` writes), checked.

        Raises:
            EvaluationError: Not a seviz evaluation, or of another format version.
        """
        if not isinstance(data, dict) or "seviz_evaluation" not in data:
            raise EvaluationError(
                f"{source} is not a seviz evaluation (no 'seviz_evaluation' key); "
                "write one with `seviz evaluate ... --json evaluation.json`"
            )
        if data["seviz_evaluation"] != REPORT_FORMAT:
            raise EvaluationError(
                f"{source} has evaluation format {data['seviz_evaluation']!r}; this seviz reads format "
                f"{REPORT_FORMAT}: evaluate again with `seviz evaluate ... --json`"
            )
        try:
            latency = data.get("latency") or {}
            per_block = data.get("per_block")
            return cls(
                original=ModelFigures(**data["original"]),
                edited=ModelFigures(**data["edited"]),
                agreement_top1=float(data["agreement_top1"]),
                kl=float(data["kl"]),
                images=int(data["images"]),
                labelled=int(data["labelled"]),
                per_block=None if per_block is None else tuple(BlockRemoval(**b) for b in per_block),
                model=str(data.get("model", "")),
                model_spec=str(data.get("model_spec", "")),
                weights_sha256=str(data.get("weights_sha256", "")),
                edits=tuple(dict(e) for e in data.get("edits", [])),
                skipped=tuple((str(k["path"]), str(k["reason"])) for k in data.get("skipped", [])),
                latency_batch_size=int(latency.get("batch_size", 0)),
                latency_repeats=int(latency.get("repeats", 0)),
                device=str(latency.get("device", "cpu")),
                flops_method=str(data.get("flops_method", FLOPS_METHOD)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise EvaluationError(f"{source} is not a complete seviz evaluation: {error!r}") from None

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def write_json(
        self,
        path: str | os.PathLike,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
        folders: Sequence[str | os.PathLike | None] = (),
    ) -> Path:
        """Write :meth:`to_json` to ``path`` atomically.

        Args:
            path: The JSON file.
            overwrite: Replace an existing file.
            inputs: Files it may not replace (a pruned model, a rec.json, weights).
            folders: Folders it may not be written into (the images).

        Raises:
            OutputError: ``path`` exists and ``overwrite`` is False, or is an input.
        """
        target = check_output(path, inputs=inputs, folders=folders, overwrite=overwrite, what="JSON")
        return atomic_write_text(target, self.to_json() + "\n")

    def summary(self) -> str:
        """A table a person reads."""
        o, e = self.original, self.edited
        head = f"{self.model or 'model'}: {self.images} images ({self.labelled} labelled)"
        if self.edits:
            head += f", {len(self.edits)} SE blocks edited"
        rows = [("", "original", "edited", "change")]
        if o.top1 is not None and e.top1 is not None:
            rows.append(("top-1", _pct(o.top1), _pct(e.top1), _points(e.top1 - o.top1)))
        if o.top5 is not None and e.top5 is not None:
            rows.append(("top-5", _pct(o.top5), _pct(e.top5), _points(e.top5 - o.top5)))
        rows.append(("params", f"{o.params:,}", f"{e.params:,}", _relative(o.params, e.params)))
        rows.append(("FLOPs (MACs/image)", _giga(o.flops), _giga(e.flops), _relative(o.flops, e.flops)))
        if o.latency_ms is not None and e.latency_ms is not None:
            ratio = f"x{e.latency_ms / o.latency_ms:.2f}" if o.latency_ms > 0 else ""
            rows.append(("latency (ms/batch)", f"{o.latency_ms:.1f}", f"{e.latency_ms:.1f}", ratio))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [head]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.append(f"top-1 agreement: {_pct(self.agreement_top1)}")
        lines.append(f"mean KL(original || edited): {self.kl:.4g} nats")
        if o.latency_ms is not None:
            lines.append(
                f"latency: median of {self.latency_repeats} passes of a batch of {self.latency_batch_size} "
                f"on {self.device}"
            )
        if self.skipped:
            lines.append(f"{len(self.skipped)} unreadable images skipped")
        if self.preprocessing:
            lines.append(
                f"preprocessing: {describe_preprocessing(self.preprocessing, self.preprocessing_source)}"
            )
        lines += [f"note: {note}" for note in self.preprocessing_notes]
        if self.per_block:
            lines.append("remove only this block:")
            width = max(len(b.name) for b in self.per_block)
            for b in self.per_block:
                delta = f"top-1 {_points(b.delta_top1)}  " if b.delta_top1 is not None else ""
                lines.append(
                    f"  {b.name.ljust(width)}  {delta}agreement {_pct(b.agreement_top1)}  KL {b.kl:.3g}"
                )
        return "\n".join(lines)


def read_evaluation(path: str | os.PathLike) -> EvaluationReport:
    """Read a report written by :meth:`EvaluationReport.write_json` (``seviz evaluate --json``).

    Raises:
        EvaluationError: Not JSON, or not a seviz evaluation.
        FileNotFoundError: The file does not exist.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise EvaluationError(
            f"{str(path)!r} is not JSON ({error}); is it a `seviz evaluate --json` file?"
        ) from None
    return EvaluationReport.from_dict(data, source=repr(str(path)))


def find_evaluations(folder: str | os.PathLike, max_bytes: int = 16 << 20) -> list[Path]:
    """The ``seviz evaluate --json`` reports in ``folder`` (``evaluation.json``, ``stage5.json``, ...), sorted.

    Every ``.json`` file of at most ``max_bytes`` is opened; those that are seviz
    evaluations are returned.
    """
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            if path.stat().st_size > max_bytes:
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("seviz_evaluation") == REPORT_FORMAT:
            found.append(path)
    return found


def evaluate(
    original: LoadedModel,
    edited: nn.Module | PrunedModel,
    items: Sequence[ImageItem],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    per_block: bool = False,
    latency_repeats: int = 5,
    progress: bool | None = None,
    edits: Sequence[AppliedEdit] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> EvaluationReport:
    """Compare an edited model with the original on labelled images.

    Args:
        original: The unpruned model, from :func:`seviz.models.load_model`.
        edited: The pruned model (a ``PrunedModel`` from :mod:`seviz.pruning.apply`, or
            a model loaded from a pruned file). Must not be ``original.model`` itself.
        items: Images from :func:`seviz.data.find_images`.
        batch_size: Images per forward pass (and per timed latency pass).
        workers: DataLoader workers decoding images; None picks by the model's device
            (:func:`seviz.recording.plan_pipeline`: inline on CPU, workers on CUDA).
        per_block: Also measure removing each SE block of the original alone.
        latency_repeats: Timed passes per model (0: no timing).
        progress: Show a progress bar (default: when stderr is a terminal).
        edits: The edits to record in the report when ``edited`` is a plain
            model (:func:`seviz.pruned_files.read_saved_edits` reads a pruned file's).
        on_batch: Called after each batch with (batches done, batches in all),
            e.g. to move a progress bar in an app.

    Returns:
        The report; ``report.summary()`` reads well, ``report.to_json()`` is the data.

    Raises:
        EvaluationError: No images, none readable, or the edited model is the original object.
    """
    import torch

    from seviz.data import decoding_workers, iterate_batches, upscaling_note

    parameter = next(original.model.parameters(), None)
    device_type = parameter.device.type if parameter is not None else "cpu"
    workers = decoding_workers(device_type, workers)
    if not items:
        raise EvaluationError("no images to evaluate on; pass --data with a folder of class sub-folders")
    upscaled = upscaling_note(items, original.data_config)
    if upscaled:
        log.warning("%s", upscaled)
    skipped: list[tuple[str, str]] = []

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        for batch in iterate_batches(items, original.data_config, batch_size=batch_size, workers=workers):
            skipped.extend(batch.skipped)
            if batch.images is not None:
                yield batch.images, torch.tensor([item.label for item in batch.items], dtype=torch.long)

    report = compare_models(
        original.model,
        edited,
        batches(),
        input_size=tuple(original.data_config.get("input_size", (3, 224, 224))),
        per_block=per_block,
        latency_repeats=latency_repeats,
        progress=progress,
        total_batches=math.ceil(len(items) / batch_size),
        edits=edits,
        on_batch=on_batch,
    )
    return dataclasses.replace(
        report,
        model=original.name,
        model_spec=original.spec,
        weights_sha256=original.weights_sha256,
        skipped=tuple(skipped),
        preprocessing=dict(original.data_config),
        preprocessing_source=dict(original.preprocessing_source),
        preprocessing_notes=(*original.preprocessing_notes, *([upscaled] if upscaled else [])),
    )


def recorded_preprocessing(
    store: str | os.PathLike | None = None, recommendation: str | os.PathLike | None = None
) -> tuple[str, dict[str, Any]] | None:
    """The preprocessing a store was recorded with: from the store, else from a recommendation made from one.

    Pass the result to :meth:`seviz.models.DataConfigRequest.over` (as ``seviz evaluate``
    and ``seviz prune`` do), so that the model sees the images as they were recorded.

    Returns:
        ``("store:PATH", config)``, or None when neither names any preprocessing
        (a recommendation from an older seviz).

    Raises:
        StoreError: ``store`` is not a seviz store.
        PruningError: ``recommendation`` is not a seviz recommendation.
    """
    if store is not None:
        with open_store(store, warn_incomplete=False) as opened:
            recorded = dict(opened.provenance.preprocessing)
        if not recorded:
            raise StoreError(f"store {str(store)!r} records no preprocessing; pass --input-size/--mean/--std")
        return f"{STORE_PREFIX}{store}", recorded
    if recommendation is not None:
        identity = load_recommendation(recommendation).store
        config = identity.get("preprocessing") if isinstance(identity, dict) else None
        if isinstance(identity, dict) and isinstance(config, dict) and config:
            return f"{STORE_PREFIX}{identity.get('file', '?')} (via {recommendation})", config
    return None


def compare_models(
    original: nn.Module,
    edited: nn.Module | PrunedModel,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
    *,
    input_size: tuple[int, ...] = (3, 224, 224),
    gates: Sequence[SEGate] | None = None,
    per_block: bool = False,
    latency_repeats: int = 5,
    progress: bool | None = None,
    total_batches: int | None = None,
    edits: Sequence[AppliedEdit] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> EvaluationReport:
    """Compare two models on batches of (images, labels or None); the core of :func:`evaluate`.

    Args:
        original: The reference network.
        edited: The network to check against it.
        batches: Preprocessed images, with integer labels where known.
        input_size: (C, H, W) of one image, for FLOP counting and gate discovery.
        gates: The original's SE gates (discovered when None and needed).
        per_block: Also measure removing each SE block of the original alone.
        latency_repeats: Timed passes per model on the first batch (0: no timing).
        progress: Show a progress bar (default: when stderr is a terminal).
        total_batches: Length of ``batches`` for the progress bar.
        edits: The edits to record when ``edited`` is a plain model.
        on_batch: Called after each batch with (batches done, ``total_batches`` or 0).

    Raises:
        EvaluationError: No batch, or ``edited`` is ``original`` itself.
    """
    import torch
    from tqdm.auto import tqdm

    if isinstance(edited, PrunedModel):
        edits = edits or edited.edits
        edited = edited.model
    edit_records = tuple(e.to_dict() for e in edits or ())
    if edited is original:
        raise EvaluationError(
            "the edited model is the original model object, so the comparison would be empty; "
            "prune a copy (inplace=False) or load the pruned file separately"
        )
    input_size = tuple(int(v) for v in input_size)
    if per_block and gates is None:
        gates = discover_se_gates(original, input_size)  # type: ignore[arg-type]
    show = sys.stderr.isatty() if progress is None else progress
    original_tally, edited_tally = _Tally(), _Tally()
    removal_gates = list(gates or ()) if per_block else []
    removals = {g.name: _Tally() for g in removal_gates}
    first_batch: torch.Tensor | None = None
    with eval_mode(original), eval_mode(edited), torch.no_grad():
        device = _device(original)
        bar = tqdm(batches, total=total_batches, unit="batch", desc="evaluating", disable=not show)
        for done, (images, labels) in enumerate(bar, start=1):
            if first_batch is None:
                first_batch = images
            reference = logits_of(original(images.to(device))).float().cpu()
            original_tally.add(reference, labels, reference)
            edited_tally.add(logits_of(edited(images.to(_device(edited)))).float().cpu(), labels, reference)
            for gate in removal_gates:
                with _block_removed(original, gate):
                    removed = logits_of(original(images.to(device))).float().cpu()
                removals[gate.name].add(removed, labels, reference)
            if on_batch is not None:
                on_batch(done, total_batches or 0)
        if first_batch is None:
            raise EvaluationError(
                "no image could be read, so nothing was evaluated; check the files under --data"
            )
        latency = _latencies(original, edited, first_batch, latency_repeats)
    per_block_results = _removals(removal_gates, removals, original_tally) if per_block else None
    return EvaluationReport(
        original=_figures(original, original_tally, input_size, latency[0]),
        edited=_figures(edited, edited_tally, input_size, latency[1]),
        agreement_top1=edited_tally.agreement,
        kl=edited_tally.kl,
        images=original_tally.images,
        labelled=original_tally.labelled,
        per_block=per_block_results,
        edits=edit_records,
        latency_batch_size=int(first_batch.shape[0]),
        latency_repeats=latency_repeats,
        device=str(device),
    )


def _figures(
    model: nn.Module, tally: _Tally, input_size: tuple[int, ...], latency: float | None
) -> ModelFigures:
    return ModelFigures(tally.top1, tally.top5, count_params(model), count_flops(model, input_size), latency)


def _removals(
    gates: Sequence[SEGate], removals: dict[str, _Tally], original: _Tally
) -> tuple[BlockRemoval, ...]:
    """What removing each block alone did, against the original's accuracy."""
    return tuple(
        BlockRemoval(
            name=g.name,
            module=g.module_path,
            top1=removals[g.name].top1,
            top5=removals[g.name].top5,
            delta_top1=_difference(removals[g.name].top1, original.top1),
            delta_top5=_difference(removals[g.name].top5, original.top5),
            agreement_top1=removals[g.name].agreement,
            kl=removals[g.name].kl,
        )
        for g in gates
    )


# ---------------------------------------------------------------- counting


class _Tally:
    """Running counts for one model against the labels and the original's logits."""

    def __init__(self) -> None:
        self.images = 0
        self.labelled = 0
        self.correct1 = 0
        self.correct5 = 0
        self.agree = 0
        self.kl_sum = 0.0

    def add(self, logits: torch.Tensor, labels: torch.Tensor | None, reference: torch.Tensor) -> None:
        import torch

        self.images += logits.shape[0]
        self.agree += int((logits.argmax(1) == reference.argmax(1)).sum())
        # KL(reference || logits) per image, in float64 so that equal logits give exactly 0.
        log_p = torch.log_softmax(reference.double(), dim=1)
        log_q = torch.log_softmax(logits.double(), dim=1)
        self.kl_sum += float((log_p.exp() * (log_p - log_q)).sum(1).clamp_min(0).sum())
        if labels is None:
            return
        labels = labels.to(logits.device).long()
        known = labels >= 0  # negative labels mark unlabelled images
        if not bool(known.any()):
            return
        scores, labels = logits[known], labels[known]
        k = min(TOPK, scores.shape[1])
        top = scores.topk(k, dim=1).indices
        self.labelled += int(labels.numel())
        self.correct1 += int((top[:, 0] == labels).sum())
        self.correct5 += int((top == labels[:, None]).any(1).sum())

    @property
    def top1(self) -> float | None:
        return self.correct1 / self.labelled if self.labelled else None

    @property
    def top5(self) -> float | None:
        return self.correct5 / self.labelled if self.labelled else None

    @property
    def agreement(self) -> float:
        return self.agree / self.images if self.images else float("nan")

    @property
    def kl(self) -> float:
        return self.kl_sum / self.images if self.images else float("nan")


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def _block_removed(model: nn.Module, gate: SEGate) -> Iterator[None]:
    """Make one SE block a pass-through for the forward passes inside, by a hook removed on exit."""
    import torch

    def passthrough(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        # A block returning x * s gives back x; a module returning s gives a gate of ones.
        return inputs[0] if gate.scales_input else torch.ones_like(output)

    with forward_hooks([(model.get_submodule(gate.module_path), passthrough)]):
        yield


def _latencies(
    original: nn.Module, edited: nn.Module, images: torch.Tensor, repeats: int
) -> tuple[float | None, float | None]:
    """Median milliseconds per forward pass of ``images``, both models timed in alternation."""
    if repeats < 1:
        return None, None
    times: tuple[list[float], list[float]] = ([], [])
    models = (original, edited)
    inputs = tuple(images.to(_device(m)) for m in models)
    for model, batch in zip(models, inputs, strict=True):
        model(batch)  # warm-up: allocator, lazy kernels
    for _ in range(repeats):
        for index, (model, batch) in enumerate(zip(models, inputs, strict=True)):
            _synchronize(batch.device)
            start = time.perf_counter()
            model(batch)
            _synchronize(batch.device)
            times[index].append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times[0]), statistics.median(times[1])


def _synchronize(device: Any) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(device)


def _device(model: nn.Module) -> Any:
    import torch

    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _difference(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _points(value: float) -> str:
    return f"{100 * value:+.2f} pt"


def _relative(before: int, after: int) -> str:
    return f"{100 * (after - before) / before:+.2f}%" if before else ""


def _giga(value: int) -> str:
    return f"{value / 1e9:.3f} G" if value >= 1e8 else f"{value / 1e6:.2f} M"


__all__ = [
    "FLOPS_METHOD",
    "BlockRemoval",
    "EvaluationError",
    "EvaluationReport",
    "ModelFigures",
    "compare_models",
    "count_flops",
    "count_params",
    "evaluate",
    "recorded_preprocessing",
    "find_evaluations",
    "read_evaluation",
]
