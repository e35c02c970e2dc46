"""Tests for seviz/recording/config.py: every option checked before a model loads or a file changes."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from pathlib import Path

import pytest
from _images import write_class_folders, write_tiny_model

import seviz
import seviz.models
from seviz.errors import OutputError, RecordError
from seviz.recording import RecordConfig, RecordSummary, record
from seviz.recording.session import _RECORD_DEFAULTS
from seviz.store import open_store


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A complete store of the tiny model, its data and its model file."""
    root = tmp_path_factory.mktemp("recorded")
    write_class_folders(root / "data", {"cat": 2, "dog": 2}, size=(32, 32))
    spec = f"{write_tiny_model(root)}:tiny"
    out = root / "store.h5"
    record(spec, root / "data", out, weights="random", class_names=["cat", "dog"], batch_size=2, workers=0,
           device="cpu", progress=False)  # fmt: skip
    return root, spec, out


def options(spec: str, data: Path, out: Path, **changes):
    return {"model": spec, "data": data, "out": out, "weights": "random", "class_names": ["cat", "dog"],
            "workers": 0, "device": "cpu", "progress": False, "overwrite": True, **changes}  # fmt: skip


@pytest.mark.parametrize(
    "change, param, message",
    [
        ({"batch_size": 0}, "batch_size", "`batch_size` must be a whole number of 1 or more, got 0"),
        ({"batch_size": 2.5}, "batch_size", "`batch_size` must be a whole number"),
        (
            {"images_per_class": 0},
            "images_per_class",
            "`images_per_class` must be a whole number of 1 or more",
        ),
        ({"workers": -1}, "workers", "`workers` must be a whole number of 0 or more, got -1"),
        ({"num_classes": 0}, "num_classes", "`num_classes` must be a whole number of 1 or more"),
        ({"classes": ""}, "classes", "`classes` '' names no class"),
        ({"classes": ","}, "classes", "`classes` ',' names no class"),
        ({"classes": []}, "classes", "names no class"),
        ({"class_names": ["cat", ""]}, "class_names", "names no output"),
        ({"dtype": "int8"}, "dtype", "unknown `dtype` 'int8'; use one of float16, float32"),
        ({"dtype": "nonsense"}, "dtype", "unknown `dtype` 'nonsense'"),
        ({"precision": "fp8"}, "precision", "unknown `precision` 'fp8'; use one of fp32, bf16, fp16"),
        ({"decode": "npu"}, "decode", "unknown `decode` 'npu'"),
        ({"writer": "disk"}, "writer", "unknown `writer` 'disk'"),
        ({"device": "tpu"}, "device", "unknown `device` 'tpu'"),
        ({"max_gate_error": -1.0}, "max_gate_error", "`max_gate_error` must be 0 or more"),
        ({"max_gate_error": float("nan")}, "max_gate_error", "finite"),
        ({"resume": True}, "resume", "`overwrite=True` .* and `resume=True` .* exclude each other"),
        ({"model": " "}, "model", "`model` is empty"),
        ({"weights": ""}, "weights", "`weights` is empty"),
    ],
)
def test_a_bad_option_is_refused_before_any_model_loads_or_file_changes(
    recorded, monkeypatch, change, param, message
):
    root, spec, out = recorded
    before = _tree(root)

    def no_model(*_args, **_kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(seviz.models, "load_model", no_model)
    with pytest.raises(RecordError, match=message) as caught:
        record(**options(spec, root / "data", out, **change))
    assert caught.value.param == param
    assert _tree(root) == before  # the complete store (and everything else) is byte for byte as it was
    with open_store(out) as store:
        assert store.complete and len(store) == 4


def test_an_output_with_an_image_suffix_in_the_data_folder_is_refused(recorded):
    """``--data D --out D/cat/img_000.jpg --overwrite`` must not destroy an input image."""
    root, spec, _ = recorded
    image = next((root / "data" / "cat").iterdir())
    before = _tree(root)
    with pytest.raises(RecordError, match="has an image suffix"):
        record(**options(spec, root / "data", image))
    with pytest.raises(OutputError, match="is inside the input folder"):
        record(**options(spec, root / "data", root / "data" / "cat" / "store.h5"))
    with pytest.raises(OutputError, match="is inside the input folder"):
        record(**options(spec, root / "data" / "cat" / "..", root / "data" / "store.h5"))
    assert _tree(root) == before


def test_an_output_that_is_the_model_file_or_the_weights_is_refused(recorded, tmp_path):
    from safetensors.torch import save_file

    root, spec, _ = recorded
    weights = tmp_path / "w.safetensors"
    model = seviz.load_model(spec, "random", class_names=["cat", "dog"]).model
    save_file(model.state_dict(), str(weights))
    before = _sha(weights)
    with pytest.raises(OutputError, match="is one of this command's inputs"):
        record(**options(spec, root / "data", weights, weights=str(weights)))
    assert _sha(weights) == before
    model_file = Path(spec.rpartition(":")[0])
    source = model_file.read_text()
    with pytest.raises(OutputError, match="is one of this command's inputs"):
        record(**options(spec, root / "data", model_file))
    assert model_file.read_text() == source


def test_an_existing_store_needs_overwrite_or_resume(recorded):
    root, spec, out = recorded
    before = _sha(out)
    with pytest.raises(
        OutputError, match="already exists; pass `overwrite=True` to replace it or `resume=True`"
    ):
        record(**options(spec, root / "data", out, overwrite=False))
    with pytest.raises(FileNotFoundError, match="does not exist; drop `resume`"):
        record(**options(spec, root / "data", root / "absent.h5", overwrite=False, resume=True))
    assert _sha(out) == before


def test_record_takes_a_config_or_the_keywords_alike(recorded, tmp_path):
    root, spec, _ = recorded
    config = RecordConfig(
        **options(spec, root / "data", tmp_path / "a.h5", classes="cat, dog", overwrite=False)
    )
    assert config.classes == ("cat", "dog") and config.out == tmp_path / "a.h5"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 3  # type: ignore[misc]
    by_config = seviz.record(config)
    by_keywords = seviz.record(
        **options(spec, root / "data", tmp_path / "b.h5", classes="cat,dog", overwrite=False)
    )
    assert (by_config.samples, by_config.blocks) == (by_keywords.samples, by_keywords.blocks) == (4, 4)
    with pytest.raises(RecordError, match="record\\(config\\) takes no other arguments, got batch_size"):
        seviz.record(config, batch_size=3)


def test_records_keywords_are_the_configs_fields():
    """``record(...)`` and ``RecordConfig`` stay one set of options, in one order, with one default each."""
    parameters = list(inspect.signature(record).parameters)
    # ``shard`` is set by seviz.recording.distributed under torchrun, never by callers.
    assert parameters == [*RecordConfig.field_names(), "shard"]
    for field in dataclasses.fields(RecordConfig):
        if field.default is not dataclasses.MISSING:
            assert _RECORD_DEFAULTS[field.name] == field.default, field.name


def test_the_summary_reads_writes_and_refuses_to_overwrite(recorded, tmp_path):
    root, spec, out = recorded
    summary = record(**options(spec, root / "data", tmp_path / "s.h5", overwrite=False))
    assert isinstance(summary, RecordSummary)
    data = summary.to_dict()
    assert (data["samples"], data["blocks"], data["complete"], data["store"]) == (
        4,
        4,
        True,
        str(tmp_path / "s.h5"),
    )
    path = summary.write_json(tmp_path / "summary.json")
    assert json.loads(path.read_text()) == data
    with pytest.raises(OutputError, match="already exists"):
        summary.write_json(path)
    with pytest.raises(OutputError, match="one of this command's inputs"):
        summary.write_json(tmp_path / "s.h5", overwrite=True)
    text = summary.summary()
    assert "samples:  4" in text and "blocks:   4" in text and f"store:    {tmp_path / 's.h5'}" in text
