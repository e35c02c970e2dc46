"""Tests for seviz/recording.py: ``record()`` end to end, crash safety and ``--resume``.

No downloads: random-weight models (seeded, so a run and its resume see one
network), generated images, and a tiny SE network written as a user model file
(tests/_images.py) with planted pacing and interruptions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _images import (
    TINY_CHANNELS,
    write_broken_images,
    write_class_folders,
    write_real_world_images,
    write_tiny_model,
)
from PIL import Image
from timm.models.resnet import BasicBlock, ResNet

import seviz
from seviz.models import ClassResolutionError, ModelLoadError
from seviz.recording import RecordSummary, record
from seviz.store import StoreError, open_store

PAPER_BLOCKS = {
    f"SE_{stage}_{block}": channels
    for stage, depth, channels in ((2, 3, 256), (3, 4, 512), (4, 6, 1024), (5, 3, 2048))
    for block in range(1, depth + 1)
}


# ---------------------------------------------------------------- random-weight se_resnet50, end to end


@pytest.fixture(scope="module")
def se50_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("se50")
    images = write_class_folders(root / "data", {"goldfish": 3, "pug": 3, "tench": 1}, size=(64, 48))
    out = root / "store.h5"
    summary = record(
        model="se_resnet50",
        data=root / "data",
        out=out,
        classes="goldfish,pug",
        weights="random",
        images_per_class=2,
        batch_size=3,
        workers=0,
        device="cpu",
        progress=False,
        command="seviz record --model se_resnet50 --weights random",
    )
    return summary, out, images


def test_se_resnet50_records_the_16_paper_blocks(se50_run):
    summary, out, _ = se50_run
    assert (summary.blocks, summary.samples, summary.skipped, summary.complete) == (16, 4, 0, True)
    with open_store(out) as store:
        assert {name: info.channels for name, info in store.blocks.items()} == PAPER_BLOCKS
        assert store.block_names == list(PAPER_BLOCKS)  # in stage, block order
        for name, info in store.blocks.items():
            stage, block = (int(part) for part in name.split("_")[1:])
            assert (info.stage, info.block) == (stage, block)
            assert info.module == f"layer{stage - 1}.{block - 1}.se_module.sigmoid"
            assert store.gates(name).shape == (4, PAPER_BLOCKS[name])


def test_se_resnet50_gates_equal_a_manual_forward(se50_run):
    from timm.data import create_transform, resolve_data_config

    from seviz.models import load_model

    _, out, _ = se50_run
    with open_store(out) as store:
        stored = {name: store.gates(name) for name in store.block_names}
        paths, topk_index, topk_prob = store.paths.tolist(), store.topk_index, store.topk_prob
        sha = store.attrs["weights_sha256"]
    loaded = load_model("se_resnet50", "random")  # seeded: the network the store was recorded with
    assert loaded.weights_sha256 == sha
    model = loaded.model.eval()
    transform = create_transform(**resolve_data_config({}, model=model), is_training=False)
    images = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])

    # The input of every SE module, captured by our own hooks; the gate is computed by hand (Eq. 2-3).
    se_inputs: dict[str, torch.Tensor] = {}
    handles = []
    for name in PAPER_BLOCKS:
        stage, block = (int(part) for part in name.split("_")[1:])
        se = model.get_submodule(f"layer{stage - 1}.{block - 1}.se_module")
        handles.append(
            se.register_forward_pre_hook(lambda m, a, name=name: se_inputs.update({name: a[0].clone()}))
        )
    with torch.no_grad():
        logits = model(images)
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        for name, x in se_inputs.items():
            stage, block = (int(part) for part in name.split("_")[1:])
            se = model.get_submodule(f"layer{stage - 1}.{block - 1}.se_module")
            z = x.mean((2, 3), keepdim=True)
            s = torch.sigmoid(
                F.conv2d(F.relu(F.conv2d(z, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias)
            )
            manual = s.flatten(1).numpy()
            gates = stored[name]
            assert ((gates > 0) & (gates < 1)).all(), name
            assert gates.std() > 0.01, f"{name}: gates are flat, the comparison would prove nothing"
            np.testing.assert_allclose(gates, manual, rtol=0, atol=5e-4, err_msg=name)  # float16 storage
    expected = torch.softmax(logits, 1).topk(5)
    np.testing.assert_array_equal(topk_index, expected.indices.numpy())
    np.testing.assert_allclose(topk_prob, expected.values.numpy(), atol=1e-5)


def test_store_attributes_carry_provenance(se50_run):
    import timm

    _, out, images = se50_run
    with open_store(out) as store:
        attrs = store.attrs
        assert attrs["seviz_schema"] == 1
        assert attrs["seviz_version"] == seviz.__version__
        assert attrs["torch_version"] == torch.__version__
        assert attrs["timm_version"] == timm.__version__
        assert attrs["h5py_version"] == h5py.__version__
        assert (attrs["model"], attrs["model_spec"], attrs["weights_source"]) == (
            "legacy_seresnet50.in1k",
            "se_resnet50",
            "random",
        )
        assert len(attrs["weights_sha256"]) == 64 and int(attrs["weights_sha256"], 16) >= 0
        assert store.provenance.preprocessing == {
            "input_size": [3, 224, 224],
            "interpolation": "bilinear",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        }
        assert attrs["command"] == "seviz record --model se_resnet50 --weights random"
        created = datetime.fromisoformat(attrs["created"])
        assert created.tzinfo is not None and created <= datetime.fromisoformat(attrs["finished"])
        assert store.complete and attrs["complete"]
        assert (attrs["dtype"], attrs["skipped_count"], attrs["samples"]) == ("float16", 0, 4)
        assert store.classes == [
            {"index": 1, "name": "goldfish", "id": "n01443537"},
            {"index": 254, "name": "pug", "id": "n02110958"},
        ]
        assert store.labels.tolist() == [1, 1, 254, 254]
        assert store.class_names.tolist() == ["goldfish", "goldfish", "pug", "pug"]
        assert store.paths.tolist() == [str(p) for p in images["goldfish"][:2] + images["pug"][:2]]
        assert store.topk_index.shape == store.topk_prob.shape == (4, 5)
        assert (np.diff(store.topk_prob, axis=1) <= 0).all()
    with h5py.File(out, "r") as f:
        assert f["blocks/SE_2_1"].dtype == np.float16
        assert f["progress"][:].tolist() == [4, 4]


# ---------------------------------------------------------------- the tiny user model: fast runs


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    return str(write_tiny_model(tmp_path_factory.mktemp("model")))


def record_tiny(spec_file: str, data: Path, out: Path, factory: str = "tiny", **options):
    options = {"weights": "random", "batch_size": 2, "workers": 0, **options}
    return record(
        model=f"{spec_file}:{factory}",
        data=data,
        out=out,
        class_names=["cat", "dog"],
        device="cpu",
        progress=False,
        **options,
    )


def read_all(path: Path) -> dict[str, np.ndarray]:
    with open_store(path, warn_incomplete=False) as store:
        columns = {
            "path": store.paths,
            "label": store.labels,
            "class_name": store.class_names,
            "topk_index": store.topk_index,
        }
        columns.update({name: store.gates(name) for name in store.block_names})
        return columns


def test_tiny_model_blocks_and_dtype_float32(tiny_spec, tmp_path):
    write_class_folders(tmp_path / "data", {"cat": 3, "dog": 2}, size=(40, 40))
    half = record_tiny(tiny_spec, tmp_path / "data", tmp_path / "half.h5")
    single = record_tiny(tiny_spec, tmp_path / "data", tmp_path / "single.h5", dtype="float32")
    assert half.samples == single.samples == 5
    with open_store(tmp_path / "single.h5") as store:
        assert {n: b.channels for n, b in store.blocks.items()} == TINY_CHANNELS
        assert store.attrs["dtype"] == "float32"
        assert store.labels.tolist() == [0, 0, 0, 1, 1] and store.class_names.tolist()[-1] == "dog"
        assert store.provenance.preprocessing["input_size"] == [3, 32, 32]  # the model's own config
        gates32 = {name: store.gates(name) for name in store.block_names}
    with h5py.File(tmp_path / "single.h5", "r") as f:
        assert all(f[f"blocks/{name}"].dtype == np.float32 for name in TINY_CHANNELS)
    with h5py.File(tmp_path / "half.h5", "r") as f:
        assert all(f[f"blocks/{name}"].dtype == np.float16 for name in TINY_CHANNELS)
    for name, values in read_all(tmp_path / "half.h5").items():
        if name in TINY_CHANNELS:
            np.testing.assert_allclose(values, gates32[name], atol=5e-4)
    # float32 keeps what float16 cannot hold
    everything = np.concatenate([g.ravel() for g in gates32.values()])
    assert (everything.astype(np.float16).astype(np.float32) != everything).any()


def test_pipeline_overlaps_on_gpu_and_runs_inline_on_cpu():
    from seviz.recording import plan_pipeline

    cpu, gpu = plan_pipeline("cpu"), plan_pipeline("cuda")
    assert (cpu.workers, cpu.background_writer) == (0, False)
    assert (gpu.workers, gpu.background_writer) == (min(4, os.cpu_count() or 1), True)
    forced = plan_pipeline("cpu", workers=3, writer="thread")
    assert (forced.workers, forced.background_writer) == (3, True)
    assert not plan_pipeline("cuda", writer="inline").background_writer
    with pytest.raises(ValueError, match="`writer` 'disk'"):
        plan_pipeline("cpu", writer="disk")
    with pytest.raises(ValueError, match="--workers must be 0 or more, got -1"):
        plan_pipeline("cpu", workers=-1)


@pytest.mark.parametrize("workers", [0, 2])
def test_every_pipeline_writes_the_same_store(tiny_spec, tmp_path, workers):
    """Decoding in workers or inline, writing from a thread or inline: the same samples, in order."""
    write_class_folders(tmp_path / "data", {"cat": 5, "dog": 4}, size=(40, 40))
    inline = record_tiny(tiny_spec, tmp_path / "data", tmp_path / "inline.h5", writer="inline")
    threaded = record_tiny(
        tiny_spec, tmp_path / "data", tmp_path / "thread.h5", writer="thread", workers=workers
    )
    assert inline.samples == threaded.samples == 9
    a, b = read_all(tmp_path / "inline.h5"), read_all(tmp_path / "thread.h5")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_unreadable_files_are_skipped_and_counted(tiny_spec, tmp_path):
    images = write_class_folders(tmp_path / "data", {"cat": 2, "dog": 3})
    # Sorted first in cat/, so the first batch (of 2) holds no readable image at all.
    broken = write_broken_images(tmp_path / "data" / "cat", images["cat"][0])
    renamed = {}
    for prefix, (kind, path) in zip("abc", broken.items(), strict=True):
        renamed[kind] = path.rename(path.with_name(f"{prefix}_{path.name}"))
    summary = record_tiny(tiny_spec, tmp_path / "data", tmp_path / "store.h5")
    assert (summary.samples, summary.skipped, summary.complete) == (5, 3, True)
    with open_store(tmp_path / "store.h5") as store:
        assert store.attrs["skipped_count"] == 3
        assert {path for path, _ in store.skipped} == {str(p) for p in renamed.values()}
        assert all(reason for _, reason in store.skipped)
        assert store.paths.tolist() == [str(p) for p in images["cat"] + images["dog"]]
        assert all(store.gates(name).shape == (5, c) for name, c in TINY_CHANNELS.items())
    with h5py.File(tmp_path / "store.h5", "r") as f:
        assert f["skipped/path"].shape == f["skipped/reason"].shape == (3,)
        assert f["progress"][:].tolist() == [5, 8]
    named = sorted(str(p) for p in renamed.values())  # listed first in cat/, in name order
    assert summary.skipped_files == tuple(named)
    assert f"skipped:  3 unreadable files: {', '.join(named)}\n" in summary.summary()
    assert summary.to_dict()["skipped_files"] == named
    assert "skipped 3 unreadable files;" in summary.describe()


def test_the_summary_counts_unreadable_files_in_words_and_names_the_first_five():
    def text(files: tuple[str, ...]) -> str:
        summary = RecordSummary("s.h5", "m", 4, 10, len(files), 1.0, 10.0, "fp32", True, skipped_files=files)
        return next(line for line in summary.summary().splitlines() if line.startswith("skipped:"))

    assert text(()) == "skipped:  0 unreadable files"
    assert text(("d/cat/a.jpg",)) == "skipped:  1 unreadable file: d/cat/a.jpg"
    seven = tuple(f"d/cat/{i}.jpg" for i in range(7))
    assert text(seven) == (
        "skipped:  7 unreadable files: d/cat/0.jpg, d/cat/1.jpg, d/cat/2.jpg, d/cat/3.jpg, d/cat/4.jpg "
        "and 2 more (see the log)"
    )
    assert (
        "skipped 1 unreadable file;" in RecordSummary("s.h5", "m", 4, 1, 1, 1.0, 1.0, "fp32", True).describe()
    )


def test_a_misspelt_class_is_told_before_any_model_is_built_or_downloaded(tmp_path, monkeypatch):
    import timm

    write_class_folders(tmp_path / "data", {"goldfish": 1, "pug": 1}, size=(32, 32))
    built = []

    def create(name, pretrained=False, **kwargs):  # as timm would without network: the download fails
        built.append(name)
        raise RuntimeError("no network")

    monkeypatch.setattr(timm, "create_model", create)
    options = {"model": "se_resnet50", "data": tmp_path / "data", "device": "cpu", "progress": False}
    with pytest.raises(
        ClassResolutionError, match=r"unknown class 'goldfsh'; did you mean 'goldfish' \(n01443537\)"
    ):
        record(**options, out=tmp_path / "s.h5", classes="goldfsh,pug")
    assert built == [] and not (tmp_path / "s.h5").exists()
    # Names it knows pass the check: the build comes next, and its error is the download's.
    with pytest.raises(ModelLoadError, match="could not fetch pretrained weights"):
        record(**options, out=tmp_path / "s.h5", classes="goldfish,pug")
    assert built == ["legacy_seresnet50.in1k"]


def test_real_world_images_are_recorded(tiny_spec, tmp_path):
    kinds = write_real_world_images(tmp_path / "data" / "cat")
    write_class_folders(tmp_path / "data", {"dog": 1})
    summary = record_tiny(tiny_spec, tmp_path / "data", tmp_path / "store.h5", batch_size=4)
    assert (summary.samples, summary.skipped) == (len(kinds) + 1, 0)
    with open_store(tmp_path / "store.h5") as store:
        assert set(store.paths.tolist()) >= {str(p) for p in kinds.values()}
        assert all(np.isfinite(store.gates(name)).all() for name in store.block_names)


def test_existing_output_is_never_overwritten(tiny_spec, tmp_path):
    write_class_folders(tmp_path / "data", {"cat": 2, "dog": 2})
    out = tmp_path / "store.h5"
    record_tiny(tiny_spec, tmp_path / "data", out)
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="`overwrite=True`"):
        record_tiny(tiny_spec, tmp_path / "data", out, images_per_class=1)
    assert out.read_bytes() == before
    record_tiny(tiny_spec, tmp_path / "data", out, images_per_class=1, overwrite=True)
    with open_store(out) as store:
        assert len(store) == 2 and store.complete


def test_missing_data_folder_is_an_error(tiny_spec, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        record_tiny(tiny_spec, tmp_path / "nowhere", tmp_path / "store.h5")
    assert not (tmp_path / "store.h5").exists()


# ---------------------------------------------------------------- interruption and resume, in process


@pytest.fixture()
def interrupted_store(tiny_spec, tmp_path, monkeypatch):
    """A store whose run was stopped by KeyboardInterrupt in its 3rd batch, and the clean run's store."""
    write_class_folders(tmp_path / "data", {"cat": 5, "dog": 5}, size=(36, 36))
    clean = tmp_path / "clean.h5"
    record_tiny(tiny_spec, tmp_path / "data", clean, images_per_class=5)
    out = tmp_path / "store.h5"
    monkeypatch.setenv("TINY_STOP_AT", "4")  # pass 1 is the probe, passes 2-3 the first two batches
    with pytest.raises(KeyboardInterrupt):
        record_tiny(tiny_spec, tmp_path / "data", out, factory="interrupted", images_per_class=5)
    monkeypatch.delenv("TINY_STOP_AT")
    return tmp_path / "data", out, clean


def assert_prefix_of(path: Path, clean: dict[str, np.ndarray], exact: bool = True) -> int:
    """The store at ``path`` opens and its samples are the first ones of the clean run."""
    columns = read_all(path)
    n = len(columns["path"])
    for name, values in columns.items():
        assert len(values) == n, f"{name} has {len(values)} rows, the store says {n}"
        if values.dtype.kind in "fc" and not exact:
            np.testing.assert_allclose(values, clean[name][:n], rtol=0, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(values, clean[name][:n], err_msg=name)
    return n


def test_a_resumed_run_names_the_unreadable_files_of_both_runs(tiny_spec, tmp_path, monkeypatch):
    images = write_class_folders(tmp_path / "data", {"cat": 4, "dog": 4}, size=(36, 36))
    # A corrupt image sorted first in each class: cat's in the first run, dog's after the resume.
    broken = []
    for name in ("cat", "dog"):
        data = images[name][0].read_bytes()
        truncated = tmp_path / "data" / name / "a_truncated.jpg"  # as write_broken_images truncates
        truncated.write_bytes(data[: len(data) // 2])
        broken.append(str(truncated))
    out = tmp_path / "store.h5"
    monkeypatch.setenv("TINY_STOP_AT", "4")  # probe, batches [a_truncated, 000] and [001, 002], then stop
    with pytest.raises(KeyboardInterrupt):
        record_tiny(tiny_spec, tmp_path / "data", out, factory="interrupted", images_per_class=5)
    monkeypatch.delenv("TINY_STOP_AT")
    with open_store(out, warn_incomplete=False) as store:
        assert [path for path, _ in store.skipped] == broken[:1] and len(store) == 3
    summary = record_tiny(
        tiny_spec, tmp_path / "data", out, factory="interrupted", images_per_class=5, resume=True
    )
    assert (summary.samples, summary.skipped, summary.skipped_files) == (8, 2, tuple(broken))
    assert f"skipped:  2 unreadable files: {broken[0]}, {broken[1]}\n" in summary.summary()


def test_interrupted_run_keeps_its_committed_batches_and_resumes(tiny_spec, interrupted_store):
    data, out, clean = interrupted_store
    with open_store(out, warn_incomplete=False) as store:
        assert not store.complete
    assert assert_prefix_of(out, read_all(clean)) == 4
    summary = record_tiny(tiny_spec, data, out, factory="interrupted", images_per_class=5, resume=True)
    assert (summary.samples, summary.complete) == (10, True)
    assert assert_prefix_of(out, read_all(clean)) == 10
    assert not out.with_name(out.name + ".resume-tmp").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"images_per_class": 4}, "images_per_class"),
        ({"dtype": "float32"}, "dtype"),
        ({"classes": "cat"}, "classes"),
    ],
)
def test_resume_with_other_options_is_refused(tiny_spec, interrupted_store, change, message):
    data, out, _ = interrupted_store
    before = out.read_bytes()
    options = {"images_per_class": 5, **change}
    with pytest.raises(StoreError, match=f"cannot resume.*{message}"):
        record_tiny(tiny_spec, data, out, factory="interrupted", resume=True, **options)
    assert out.read_bytes() == before


def test_resume_with_other_weights_is_refused(tiny_spec, interrupted_store):
    from safetensors.torch import save_file

    from seviz.models import load_model

    data, out, _ = interrupted_store
    other = load_model(f"{tiny_spec}:tiny", "random").model
    with torch.no_grad():
        other.fc.weight.add_(1.0)
    save_file(other.state_dict(), str(out.parent / "other.safetensors"))
    with pytest.raises(StoreError, match="weights_sha256"):
        record_tiny(
            tiny_spec,
            data,
            out,
            factory="interrupted",
            images_per_class=5,
            resume=True,
            weights=str(out.parent / "other.safetensors"),
        )


def test_resume_needs_an_unfinished_store(tiny_spec, interrupted_store):
    data, _, clean = interrupted_store
    with pytest.raises(StoreError, match="already complete"):
        record_tiny(tiny_spec, data, clean, images_per_class=5, resume=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        record_tiny(tiny_spec, data, clean.with_name("absent.h5"), images_per_class=5, resume=True)


# -------------------------------------------------------- kill -9, SIGINT, SIGTERM: a real `seviz record`

CLASS_IMAGES = 30  # per class; the paced model takes >= 0.05 s per batch of 2, so a run lasts >= 1.5 s


@pytest.fixture(scope="module")
def paced_clean_run(tiny_spec, tmp_path_factory):
    """Data for the subprocess runs and the store of an uninterrupted run over it."""
    root = tmp_path_factory.mktemp("paced")
    write_class_folders(
        root / "data", {"cat": CLASS_IMAGES, "dog": CLASS_IMAGES}, size=(32, 32), suffix=".png"
    )
    previous = os.environ.get("TINY_SLEEP")
    os.environ["TINY_SLEEP"] = "0"
    try:
        record_tiny(tiny_spec, root / "data", root / "clean.h5", factory="paced", dtype="float32")
    finally:
        if previous is None:
            del os.environ["TINY_SLEEP"]
        else:
            os.environ["TINY_SLEEP"] = previous
    return root / "data", read_all(root / "clean.h5")


def start_seviz_record(
    spec_file: str, data: Path, out: Path, workers: int, log: Path, writer: str = "thread"
) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "seviz", "record", "--model", f"{spec_file}:paced", "--weights", "random",
        "--class-names", "cat,dog", "--data", str(data), "--out", str(out), "--batch-size", "2",
        "--workers", str(workers), "--device", "cpu", "--dtype", "float32", "--no-progress",
        "--writer", writer,
    ]  # fmt: skip
    env = {**os.environ, "TINY_SLEEP": "0.05", "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)


def wait_for_committed(process, out: Path, clean: dict[str, np.ndarray], minimum: int, log: Path) -> int:
    """Poll the store as a reader while it is written; every snapshot must be a consistent prefix."""
    deadline = time.monotonic() + 180
    seen: list[int] = []
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before it was interrupted:\n{log.read_text()}"
        try:
            n = assert_prefix_of(out, clean, exact=False)
        except (FileNotFoundError, StoreError, OSError):
            # Before the writer switches to SWMR mode the file is not readable yet.
            assert not seen, f"the store became unreadable after {seen[-1]} samples"
            time.sleep(0.01)
            continue
        assert not seen or n >= seen[-1], "the committed count went backwards"
        seen.append(n)
        if n >= minimum:
            return n
        time.sleep(0.01)
    raise AssertionError(f"no progress within the time limit:\n{log.read_text()}")


@pytest.mark.parametrize("writer", ["thread", "inline"])
def test_kill_9_then_resume_gives_the_samples_of_an_uninterrupted_run(
    tiny_spec, paced_clean_run, tmp_path, monkeypatch, writer
):
    """With the store written from a background thread (the overlapped pipeline) or inline."""
    data, clean = paced_clean_run
    out, log = tmp_path / "store.h5", tmp_path / "seviz.log"
    process = start_seviz_record(tiny_spec, data, out, workers=0, log=log, writer=writer)
    try:
        seen = wait_for_committed(process, out, clean, minimum=6, log=log)
    finally:
        process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    kept = assert_prefix_of(out, clean, exact=False)
    assert seen <= kept < 2 * CLASS_IMAGES
    with open_store(out, warn_incomplete=False) as store:
        assert not store.complete

    monkeypatch.setenv("TINY_SLEEP", "0")
    summary = record_tiny(tiny_spec, data, out, factory="paced", dtype="float32", resume=True)
    assert (summary.samples, summary.skipped, summary.complete) == (2 * CLASS_IMAGES, 0, True)
    assert assert_prefix_of(out, clean, exact=False) == 2 * CLASS_IMAGES
    with open_store(out) as store:
        assert len(set(store.paths.tolist())) == 2 * CLASS_IMAGES  # nothing duplicated
        assert store.complete


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_leave_a_store_that_opens(
    tiny_spec, paced_clean_run, tmp_path, monkeypatch, signum
):
    data, clean = paced_clean_run
    out, log = tmp_path / "store.h5", tmp_path / "seviz.log"
    process = start_seviz_record(tiny_spec, data, out, workers=1, log=log)
    try:
        seen = wait_for_committed(process, out, clean, minimum=4, log=log)
        process.send_signal(signum)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, log.read_text()
    assert "interrupted" in log.read_text()
    kept = assert_prefix_of(out, clean, exact=False)
    assert seen <= kept < 2 * CLASS_IMAGES
    with open_store(out, warn_incomplete=False) as store:
        assert not store.complete
        assert json.loads(store.attrs["run_config"])["images"] == 2 * CLASS_IMAGES
    monkeypatch.setenv("TINY_SLEEP", "0")
    summary = record_tiny(tiny_spec, data, out, factory="paced", dtype="float32", resume=True)
    assert summary.samples == 2 * CLASS_IMAGES
    assert assert_prefix_of(out, clean, exact=False) == 2 * CLASS_IMAGES


def test_the_store_records_each_gate_with_its_hooked_module():
    from seviz.recording.session import _block_info
    from seviz.se import discover_se_gates

    model = ResNet(BasicBlock, layers=(1, 1, 1, 1), channels=(8, 16, 24, 32), block_args={"attn_layer": "se"})
    for gate in discover_se_gates(model, (3, 32, 32)):
        info = _block_info(gate)
        assert (info.name, info.module, info.channels) == (gate.name, gate.gate_path, gate.channels)
        assert (info.stage, info.block, info.kind, info.params) == (
            gate.stage,
            gate.block,
            gate.kind,
            gate.params,
        )


# ------------------------------------------- one writer, atomic replace, a reader, a full disk, Ctrl-C


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stray(folder: Path) -> list[str]:
    """Temporary or lock files a run left behind."""
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix in (".lock", ".resume-tmp")
    )


def seviz_record(
    spec: str, data: Path, out: Path, log: Path, *extra: str, env=None, **popen
) -> subprocess.Popen:
    command = [sys.executable, "-m", "seviz", "record", "--model", spec, "--weights", "random",
               "--class-names", "cat,dog", "--data", str(data), "--out", str(out), "--batch-size", "2",
               "--workers", "0", "--device", "cpu", "--dtype", "float32", "--no-progress", *extra]  # fmt: skip
    with open(log, "wb") as handle:
        return subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
            **popen,
        )  # fmt: skip


def test_two_writers_of_one_store_one_proceeds_the_other_stops_at_once(tmp_path):
    """The first run holds its store (paused in its 2nd batch) while a second is started on it."""
    from _hostile_model import write_hostile_model

    write_class_folders(tmp_path / "data", {"cat": 4, "dog": 4}, size=(32, 32))
    spec, out, release = (
        f"{write_hostile_model(tmp_path)}:waiting",
        tmp_path / "store.h5",
        tmp_path / "release",
    )
    first = seviz_record(spec, tmp_path / "data", out, tmp_path / "first.log", "--overwrite",
                         env={"AT": "3", "RELEASE": str(release)})  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not (out.exists() and first.poll() is None) and time.monotonic() < deadline:
            time.sleep(0.05)  # the store appears once the first batch has committed
        assert out.exists(), (tmp_path / "first.log").read_text()
        before = _sha(out)
        for extra in (["--overwrite"], ["--resume"]):
            began = time.monotonic()
            second = seviz_record(
                spec, tmp_path / "data", out, tmp_path / "second.log", *extra, env={"AT": "0"}
            )
            second.wait(timeout=180)
            text = (tmp_path / "second.log").read_text()
            assert second.returncode == 2, text
            assert f"already being written by PID {first.pid} (on " in text and "--resume" in text, text
            assert "Traceback" not in text
            assert time.monotonic() - began < 60  # it stops at once (its imports included), never waits
            assert _sha(out) == before  # the second run changed nothing
        assert first.poll() is None
        release.touch()
        first.wait(timeout=180)
    finally:
        release.touch()
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, (tmp_path / "first.log").read_text()
    with open_store(out) as store:
        assert store.complete and len(store) == 8 and len(set(store.paths.tolist())) == 8
    assert _stray(tmp_path) == []


def test_an_overwrite_that_stops_before_its_first_batch_leaves_the_old_store(
    tiny_spec, interrupted_store, monkeypatch
):
    data, _, clean = interrupted_store
    before = _sha(clean)
    monkeypatch.setenv("TINY_STOP_AT", "2")  # the first batch's forward pass
    with pytest.raises(KeyboardInterrupt):
        record_tiny(tiny_spec, data, clean, factory="interrupted", images_per_class=3, overwrite=True)
    assert _sha(clean) == before
    assert _stray(clean.parent) == []


def test_an_overwrite_replaces_the_store_once_its_first_batch_commits(
    tiny_spec, interrupted_store, monkeypatch
):
    data, _, clean = interrupted_store
    reference = read_all(clean)
    monkeypatch.setenv("TINY_STOP_AT", "3")  # the second batch
    with pytest.raises(KeyboardInterrupt):
        record_tiny(tiny_spec, data, clean, factory="interrupted", images_per_class=5, overwrite=True)
    with open_store(clean, warn_incomplete=False) as store:
        assert len(store) == 2 and not store.complete  # the new run's store, resumable
    monkeypatch.delenv("TINY_STOP_AT")
    record_tiny(tiny_spec, data, clean, factory="interrupted", images_per_class=5, resume=True)
    assert assert_prefix_of(clean, reference) == 10
    assert _stray(clean.parent) == []


def test_a_store_held_open_by_a_reader_completes(tmp_path, monkeypatch):
    """The app or ``seviz.open_store`` reading the store must not make its last step fail."""
    from _hostile_model import write_hostile_model

    write_class_folders(tmp_path / "data", {"cat": 4, "dog": 4}, size=(32, 32))
    out, release, log = tmp_path / "s.h5", tmp_path / "release", tmp_path / "reader.log"
    for key, value in {"AT": "3", "HOLD_STORE": out, "HOLD_RELEASE": release, "HOLD_LOG": log}.items():
        monkeypatch.setenv(key, str(value))
    spec = write_hostile_model(tmp_path)
    try:
        summary = record_tiny(str(spec), tmp_path / "data", out, factory="reading", writer="inline")
        assert summary.complete and summary.samples == 8
        assert log.read_text().split() == [
            "open",
            "2",
        ]  # the reader had the store open from the 2nd sample on
        with open_store(out) as store:
            assert store.complete and len(store) == 8
    finally:
        release.touch()  # the reader process ends in every case
    deadline = time.monotonic() + 60
    while "still" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().split()[2:] == ["still", "2"]


def test_a_full_disk_stops_the_run_with_a_message_and_keeps_the_committed_samples(
    tiny_spec, tmp_path, monkeypatch
):
    """In process, the free space reported to the writer runs out after 2 batches."""
    import seviz.store.writer as writer_module
    from seviz.errors import DiskFullError

    write_class_folders(tmp_path / "data", {"cat": 5, "dog": 5}, size=(32, 32))
    free = iter([10**9, 10**9])
    monkeypatch.setattr(writer_module, "free_bytes", lambda _path: next(free, 0))
    with pytest.raises(DiskFullError, match="no space left on .*the 4 committed samples are kept"):
        record_tiny(tiny_spec, tmp_path / "data", tmp_path / "s.h5", images_per_class=5)
    monkeypatch.undo()
    with open_store(tmp_path / "s.h5", warn_incomplete=False) as store:
        assert len(store) == 4 and not store.complete
    assert _stray(tmp_path) == []
    summary = record_tiny(tiny_spec, tmp_path / "data", tmp_path / "s.h5", images_per_class=5, resume=True)
    assert summary.samples == 10 and summary.complete


def test_a_real_full_disk_exits_2_without_a_traceback(tmp_path):
    """``seviz record`` into a 4 MiB tmpfs that another process fills mid-run."""
    from _hostile_model import write_hostile_model
    from _tmpfs import small_tmpfs

    write_class_folders(tmp_path / "data", {"cat": 5, "dog": 5}, size=(32, 32))
    spec = f"{write_hostile_model(tmp_path)}:filling"
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        out, filler = disk / "s.h5", disk / "filler"
        env = {"AT": "4", "FILL_PATH": str(filler), "FILL_LEAVE": str(64 * 1024)}
        process = seviz_record(spec, tmp_path / "data", out, tmp_path / "run.log", env=env)
        process.wait(timeout=300)
        text = (tmp_path / "run.log").read_text()
        assert process.returncode == 2, text
        assert f"seviz record: error: no space left on {str(disk)!r}" in text, text
        assert "the 4 committed samples are kept" in text and "--resume" in text
        assert "Traceback" not in text and "Exception ignored" not in text
        assert _stray(disk) == []
        with open_store(out, warn_incomplete=False) as store:
            assert len(store) == 4 and not store.complete
        filler.unlink()
        summary = record_tiny(spec.rpartition(":")[0], tmp_path / "data", out, factory="filling", resume=True,
                              dtype="float32")  # fmt: skip
        assert summary.samples == 10 and summary.complete
        assert _stray(disk) == []


def test_ctrl_c_in_a_terminal_stops_after_the_batch_with_the_resume_hint(
    tiny_spec, paced_clean_run, tmp_path
):
    """A terminal's Ctrl-C reaches the decoding workers too; they must not break the last batch."""
    data, clean = paced_clean_run
    out, log = tmp_path / "store.h5", tmp_path / "seviz.log"
    process = seviz_record(f"{tiny_spec}:paced", data, out, log, "--workers", "1", env={"TINY_SLEEP": "0.05"},
                           start_new_session=True)  # fmt: skip
    try:
        seen = wait_for_committed(process, out, clean, minimum=4, log=log)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    text = log.read_text()
    assert process.returncode == 130, text
    assert "interrupted" in text and "--resume" in text and "Traceback" not in text, text
    kept = assert_prefix_of(out, clean, exact=False)
    assert seen <= kept < 2 * CLASS_IMAGES
    assert _stray(tmp_path) == []
