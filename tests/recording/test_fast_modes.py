"""Fast mode (seviz/precision.py): reduced precision is used only after it is measured against fp32."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from seviz.models.demo_network import sample_dir, weights_path
from seviz.recording import record
from seviz.recording.fast_modes import FastMode, GateErrorTooLarge, _cpu_has_bf16, check_supported, pad_batch
from seviz.store import open_store

needs_bf16 = pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no native bf16")


@pytest.fixture()
def cifar_like(tmp_path):
    """Three class folders of 32x32 images with class-dependent colour, named like the demo's classes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for k, name in enumerate(["cat", "dog", "ship"]):
        (root / name).mkdir(parents=True)
        for i in range(6):
            base = np.zeros((32, 32, 3)) + 40 * k
            pixels = np.clip(base + rng.normal(120, 50, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


def _record(data, out, weights, **kwargs):
    kwargs = {"batch_size": 6, "workers": 0, "progress": False, **kwargs}
    return record("se_resnet50_cifar10", data, out, weights=weights, **kwargs)


@needs_bf16
@pytest.mark.skipif(not weights_path().is_file(), reason="demo weights are not shipped in this checkout")
def test_bf16_gates_stay_within_the_stored_error_bound(tmp_path):
    """On the trained demo model: the stored calibration error is what the two stores show, and holds for the run."""
    kwargs = dict(images_per_class=3, batch_size=10, workers=0, progress=False, dtype="float32")
    record("se_resnet50_cifar10", sample_dir(), tmp_path / "exact.h5", **kwargs)
    record(
        "se_resnet50_cifar10",
        sample_dir(),
        tmp_path / "fast.h5",
        precision="bf16",
        channels_last=True,
        **kwargs,
    )
    with open_store(tmp_path / "exact.h5") as a, open_store(tmp_path / "fast.h5") as b:
        error = b.provenance.gate_error
        assert b.attrs["precision"] == "bf16+channels_last" and a.attrs["precision"] == "fp32"
        assert error["within_bound"] and 0 < error["max_abs"] <= 0.02  # bf16 really ran, within the bound
        assert list(a.paths) == list(b.paths)
        calibrated = error["calibration_images"]
        for name in a.block_names:
            difference = np.abs(a.gates(name) - b.gates(name))
            stored = error["per_block"][name]
            # The calibration images are the first ones recorded: the store shows the measured error.
            assert difference[:calibrated].max() == pytest.approx(stored["max_abs"], rel=0.05, abs=1e-6)
            # And the whole run stays within the enforced bound.
            assert difference.max() <= error["max_gate_error"]


@needs_bf16
def test_calibration_refuses_a_run_above_the_bound_and_keeps_existing_output(
    cifar_like, live_demo_weights, tmp_path
):
    out = tmp_path / "fast.h5"
    out.write_bytes(b"an earlier file")
    with pytest.raises(GateErrorTooLarge, match="max_gate_error"):
        _record(cifar_like, out, live_demo_weights, precision="bf16", max_gate_error=1e-7, overwrite=True)
    assert out.read_bytes() == b"an earlier file"  # refused before anything was written


@needs_bf16
def test_fallback_records_exact_fp32_and_says_so(cifar_like, live_demo_weights, tmp_path):
    summary = _record(
        cifar_like,
        tmp_path / "fb.h5",
        live_demo_weights,
        precision="bf16",
        max_gate_error=1e-7,
        fallback=True,
    )
    assert summary.precision == "fp32"
    with open_store(tmp_path / "fb.h5") as store:
        error = store.provenance.gate_error
        assert store.attrs["precision"] == "fp32"
        assert not error["within_bound"] and error["recorded_precision"] == "fp32"


def test_fp16_on_cpu_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        check_supported(FastMode("fp16"), torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown `precision`"):
        check_supported(FastMode("int8"), torch.device("cpu"))


def test_pad_batch_appends_zero_images_and_keeps_the_memory_format():
    images = torch.rand(3, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    padded = pad_batch(images, 5)
    assert padded.shape == (5, 3, 8, 8)
    assert torch.equal(padded[:3], images) and not padded[3:].any()
    assert padded.is_contiguous(memory_format=torch.channels_last)
    assert pad_batch(images, 3) is images


def test_compiled_recording_sees_one_batch_shape_and_keeps_every_image(
    cifar_like, live_demo_weights, tmp_path, monkeypatch
):
    """With --compile a short last batch is padded (no recompilation) and the padding never reaches the store."""
    seen = []

    def fake_compile(model):  # stands in for torch.compile: records the shapes the compiled model gets
        def run(images):
            seen.append(tuple(images.shape))
            return model(images)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    # 18 images in batches of 4: the last batch has 2 images.
    _record(cifar_like, tmp_path / "exact.h5", live_demo_weights, batch_size=4, dtype="float32")
    summary = _record(
        cifar_like, tmp_path / "compiled.h5", live_demo_weights, batch_size=4, dtype="float32", compile=True
    )
    assert summary.precision == "fp32+compile" and summary.samples == 18
    assert {shape[0] for shape in seen} == {4}  # calibration and every batch, the short one included
    with open_store(tmp_path / "exact.h5") as exact, open_store(tmp_path / "compiled.h5") as compiled:
        assert len(compiled) == 18 and list(compiled.paths) == list(exact.paths)
        for name in exact.block_names:
            np.testing.assert_allclose(compiled.gates(name), exact.gates(name), atol=1e-5)
        np.testing.assert_array_equal(compiled.topk_index[:, 0], exact.topk_index[:, 0])


@needs_bf16
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_real_compile_with_bf16_stays_within_the_bound(cifar_like, live_demo_weights, tmp_path):
    """torch.compile (inductor) + bf16 + channels-last, for real: calibrated, bounded, every image kept."""
    summary = _record(
        cifar_like,
        tmp_path / "compiled.h5",
        live_demo_weights,
        batch_size=8,
        precision="bf16",
        channels_last=True,
        compile=True,
    )
    assert summary.precision == "bf16+channels_last+compile" and summary.samples == 18
    with open_store(tmp_path / "compiled.h5") as store:
        error = store.provenance.gate_error
        assert error["within_bound"] and 0 < error["max_abs"] <= 0.02
        assert error["calibration_images"] == 8
