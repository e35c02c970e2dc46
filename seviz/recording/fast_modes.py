"""Fast recording: reduced precision, channels-last and torch.compile, with measured faithfulness.

A fast mode is only used after it has been checked: on a calibration batch
seviz runs the exact fp32 forward beside the fast one and measures, per SE
block, the largest and mean absolute difference of the gates. Above
``max_gate_error`` the run stops (or, with ``fallback``, records in fp32).
The measured error is stored in the store's ``gate_error`` attribute.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from seviz.errors import GateErrorTooLarge, RecordError
from seviz.se import Recorder, SEGate

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class FastMode:
    """How the forward pass runs: precision, memory format, compilation."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    @property
    def exact(self) -> bool:
        return self.precision == "fp32" and not self.compile

    def describe(self) -> str:
        extras = [
            name for name, on in (("channels_last", self.channels_last), ("compile", self.compile)) if on
        ]
        return "+".join([self.precision, *extras])


def check_supported(mode: FastMode, device: torch.device) -> None:
    """Raise ValueError when ``mode`` cannot run on ``device``."""
    import torch

    if mode.precision not in PRECISIONS:
        raise RecordError(
            f"unknown `precision` {mode.precision!r}; use one of {', '.join(PRECISIONS)}", param="precision"
        )
    if mode.precision == "fp16" and device.type != "cuda":
        raise RecordError(
            "`precision` fp16 needs a CUDA device; on CPU use bf16 (or fp32)", param="precision"
        )
    if mode.precision == "bf16" and device.type == "cpu" and not _cpu_has_bf16():
        raise RecordError(
            "this CPU has no native bf16 (avx512_bf16/amx); use `precision` fp32", param="precision"
        )
    if mode.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RecordError("this GPU does not support bf16; use `precision` fp16 or fp32", param="precision")


def _cpu_has_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(mode: FastMode, device: torch.device):
    """The autocast context for ``mode`` (a no-op context for fp32)."""
    import torch

    if mode.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mode.precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def prepare_model(model: nn.Module, mode: FastMode) -> nn.Module:
    """Apply the memory format (in place) and compile if asked; returns the module to call."""
    import torch

    if mode.channels_last:
        model.to(memory_format=torch.channels_last)
    if mode.compile:
        return cast("nn.Module", torch.compile(model))  # an OptimizedModule: a Module that compiles on call
    return model


def prepare_input(images: torch.Tensor, mode: FastMode, device: torch.device) -> torch.Tensor:
    import torch

    images = images.to(device, non_blocking=True)
    if mode.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def pad_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """``images`` with zero images appended up to ``size`` rows (eval-mode rows are independent)."""
    import torch

    missing = size - len(images)
    if missing <= 0:
        return images
    padding = images.new_zeros((missing, *images.shape[1:]))
    padded = torch.cat([images, padding])
    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last):
        padded = padded.contiguous(memory_format=torch.channels_last)
    return padded


def calibrate(
    model: nn.Module,
    gates: Sequence[SEGate],
    images: torch.Tensor,
    mode: FastMode,
    device: torch.device,
    max_gate_error: float,
) -> dict[str, Any]:
    """Compare the fast mode's gates with exact fp32 gates on one batch.

    Returns:
        ``{"precision", "max_abs", "mean_abs", "per_block": {name: {max_abs, mean_abs}},
        "calibration_images", "max_gate_error", "within_bound"}``.
    """
    import torch

    with torch.no_grad(), Recorder(model, gates) as recorder:
        model(images.to(device))
        exact = recorder.pop()
        runner = prepare_model(model, mode)
        with autocast(mode, device):
            runner(prepare_input(images, mode, device))
        fast = recorder.pop()
    if mode.channels_last:
        model.to(memory_format=torch.contiguous_format)
    per_block = {}
    for gate in gates:
        diff = (fast[gate.name].float() - exact[gate.name].float()).abs()
        per_block[gate.name] = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}
    worst = max(v["max_abs"] for v in per_block.values())
    return {
        "precision": mode.describe(),
        "max_abs": worst,
        "mean_abs": float(sum(v["mean_abs"] for v in per_block.values()) / len(per_block)),
        "per_block": per_block,
        "calibration_images": int(images.shape[0]),
        "max_gate_error": float(max_gate_error),
        "within_bound": worst <= max_gate_error,
    }


def enforce_bound(report: dict[str, Any], mode: FastMode, fallback: bool) -> FastMode:
    """Stop (or fall back to fp32) when the calibrated gate error exceeds the bound."""
    if report["within_bound"]:
        log.info(
            "fast mode %s: max gate error %.4g <= %.4g",
            mode.describe(),
            report["max_abs"],
            report["max_gate_error"],
        )
        return mode
    worst = max(report["per_block"].items(), key=lambda item: item[1]["max_abs"])
    message = (
        f"`precision` {mode.describe()} changes gates by up to {report['max_abs']:.4g} (worst block {worst[0]}), "
        f"above `max_gate_error` {report['max_gate_error']:g}"
    )
    if not fallback:
        raise GateErrorTooLarge(
            message + "; record in fp32, raise `max_gate_error`, or pass `fallback=True`",
            param="max_gate_error",
        )
    log.warning("%s; recording in exact fp32 instead (fallback)", message)
    return FastMode("fp32", channels_last=False, compile=False)
