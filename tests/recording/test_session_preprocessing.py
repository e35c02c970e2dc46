"""``record(..., data_config=...)`` and ``attribute``: the preprocessing chosen, told, kept and reused."""

from __future__ import annotations

import numpy as np
import pytest
from _images import write_class_folders, write_tiny_model
from _user_model import write_user_model, write_user_weights

from seviz.models import IMAGENET_DEFAULT_CFG, DataConfigError
from seviz.recording import attribute, record
from seviz.store import StoreError, open_store

CIFAR = {"input_size": [3, 32, 32], "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26], "crop_pct": 1.0}


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    model = write_user_model(root)
    weights = write_user_weights(model, root / "weights.safetensors")
    write_class_folders(root / "data", {"cat": 3, "dog": 3}, size=(36, 36), suffix=".png")
    return root, f"{model}:plain", str(weights)


def _record(user, out, **options):
    root, spec, weights = user
    options = {"weights": weights, "class_names": ["cat", "dog"], **options}
    return record(spec, root / "data", out, batch_size=4, workers=0, progress=False, **options)


@pytest.fixture(scope="module")
def cifar_store(user, tmp_path_factory):
    out = tmp_path_factory.mktemp("cifar") / "store.h5"
    _record(user, out, data_config=CIFAR)
    return out


def test_record_data_config_is_used_stored_and_its_source_kept(cifar_store):
    with open_store(cifar_store) as store:
        assert store.provenance.preprocessing == {
            **CIFAR,
            "interpolation": "bilinear",
            "crop_mode": "center",
        }
        assert store.provenance.preprocessing_source == {
            "input_size": "argument",
            "mean": "argument",
            "std": "argument",
            "crop_pct": "argument",
            "interpolation": "default",
            "crop_mode": "default",
        }
        assert list(store.provenance.preprocessing_notes) == []
        assert store.provenance.run_config["preprocessing"] == store.provenance.preprocessing


def test_upscaling_is_told_in_the_summary_and_the_store(user, tmp_path):
    write_class_folders(tmp_path / "small", {"cat": 2, "dog": 2}, size=(12, 14), suffix=".png")
    root, spec, weights = user
    summary = record(spec, tmp_path / "small", tmp_path / "s.h5", weights=weights, class_names=["cat", "dog"],
                     workers=0, progress=False, data_config=CIFAR)  # fmt: skip
    (note,) = summary.preprocessing_notes
    assert "being upscaled: their median shorter side is 12 px" in note and "model input 32x32" in note
    assert f"note: {note}" in summary.describe()
    assert "input_size, crop_pct, mean, std from the data_config argument" in summary.preprocessing
    with open_store(tmp_path / "s.h5") as store:
        assert list(store.provenance.preprocessing_notes) == [note]


def test_the_imagenet_fallback_is_in_the_summary(user, tmp_path):
    summary = _record(user, tmp_path / "s.h5", images_per_class=1)
    fallback, upscaled = summary.preprocessing_notes
    assert "plain' is fed ImageNet's default preprocessing" in fallback and "--input-size C H W" in fallback
    assert "being upscaled" in upscaled and "--input-size 3 36 36" in upscaled
    assert "from the ImageNet default" in summary.preprocessing


def test_a_bad_data_config_is_refused_before_anything_is_written(user, tmp_path, monkeypatch):
    monkeypatch.setenv("SEVIZ_TEST_BUILT", str(tmp_path / "built"))
    with pytest.raises(DataConfigError, match="must be positive"):
        _record(user, tmp_path / "s.h5", data_config={"std": [0.2, 0.0, 0.2]})
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "built").exists()


def test_resume_with_other_preprocessing_is_refused(tmp_path, monkeypatch):
    spec = f"{write_tiny_model(tmp_path)}:interrupted"
    write_class_folders(tmp_path / "data", {"cat": 4, "dog": 4}, size=(32, 32))
    out = tmp_path / "store.h5"
    options = dict(weights="random", class_names=["cat", "dog"], batch_size=2, workers=0, progress=False)
    monkeypatch.setenv("TINY_STOP_AT", "4")
    with pytest.raises(KeyboardInterrupt):
        record(spec, tmp_path / "data", out, **options)
    monkeypatch.delenv("TINY_STOP_AT")
    before = out.read_bytes()
    with pytest.raises(StoreError, match="cannot resume.*preprocessing"):
        record(spec, tmp_path / "data", out, resume=True, data_config={"mean": [0.4, 0.4, 0.4]}, **options)
    assert out.read_bytes() == before
    assert record(spec, tmp_path / "data", out, resume=True, **options).samples == 8


def test_attribute_uses_the_stores_preprocessing_unless_told(user, cifar_store, tmp_path):
    import shutil

    summary = attribute(
        cifar_store, progress=False, device="cpu", trust_store_model=True
    )  # our own test model
    assert f"from the preprocessing recorded in store {cifar_store}" in summary.preprocessing
    with open_store(cifar_store) as store:
        recorded = {name: a.values.copy() for name, a in store.attributions().items()}
    assert set(recorded) == {"SE_2_1", "SE_3_1", "SE_4_1", "SE_5_1"}

    other = tmp_path / "other.h5"
    shutil.copy(cifar_store, other)
    told = attribute(
        other, progress=False, device="cpu", data_config=IMAGENET_DEFAULT_CFG, trust_store_model=True
    )
    assert "from the data_config argument" in told.preprocessing and "store" not in told.preprocessing
    with open_store(other) as store:
        imagenet = {name: a.values for name, a in store.attributions().items()}
    # The preprocessing matters to the attributions, so the store's was the one in use above.
    assert any(not np.allclose(recorded[n], imagenet[n], atol=1e-6) for n in recorded)
