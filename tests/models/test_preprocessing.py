"""seviz/models/preprocessing.py: which preprocessing a model gets, where each value came from, bad values.

Precedence: explicit values (flags / ``data_config=``) > a ``--data-config`` file >
a store's recorded preprocessing > the model's own config > the ImageNet default.
"""

from __future__ import annotations

import json
import logging

import pytest
from _user_model import write_user_model, write_user_weights

from seviz.errors import SevizError
from seviz.models import (
    IMAGENET_DEFAULT_CFG,
    DataConfigError,
    DataConfigRequest,
    load_model,
    resolve_preprocessing,
)
from seviz.models.preprocessing import FROM_FLAGS, as_request

OWN = {"input_size": (3, 40, 40), "mean": (0.1, 0.2, 0.3), "interpolation": "bicubic"}


@pytest.fixture()
def user_model(tmp_path):
    return write_user_model(tmp_path)


def _file(tmp_path, data, name="cfg.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# ---------------------------------------------------------------- precedence


def test_each_layer_wins_over_the_ones_below_it(tmp_path):
    file = _file(tmp_path, {"input_size": [3, 36, 36], "std": [0.3, 0.3, 0.3], "crop_pct": 1.0})
    request = DataConfigRequest.build(
        values={"input_size": ["3", "32", "32"], "crop_mode": None}, file=file, values_origin=FROM_FLAGS
    ).over(f"store:{tmp_path / 's.h5'}", {"std": [0.9, 0.9, 0.9], "crop_mode": "squash", "mean": [0.4] * 3})
    resolved = resolve_preprocessing(OWN, request)
    assert resolved.config == {
        "input_size": (3, 32, 32),  # flags over file
        "std": (0.3, 0.3, 0.3),  # file over store
        "crop_pct": 1.0,  # file
        "crop_mode": "squash",  # store over model and default
        "mean": (0.4, 0.4, 0.4),  # store over model
        "interpolation": "bicubic",  # the model's own
    }
    assert resolved.sources == {
        "input_size": "flags",
        "std": f"file:{file}",
        "crop_pct": f"file:{file}",
        "crop_mode": f"store:{tmp_path / 's.h5'}",
        "mean": f"store:{tmp_path / 's.h5'}",
        "interpolation": "model",
    }
    assert resolved.notes == ()  # nothing of input_size, mean, std fell back to ImageNet's


def test_with_nothing_given_the_imagenet_default_fills_in_and_says_so():
    resolved = resolve_preprocessing({}, None, model="the model 'x.py:f'")
    assert resolved.config == IMAGENET_DEFAULT_CFG
    assert set(resolved.sources.values()) == {"default"}
    (note,) = resolved.notes
    assert "'x.py:f' is fed ImageNet's default preprocessing" in note
    assert "no timm-style pretrained_cfg or default_cfg" in note
    assert "--input-size C H W --mean R G B --std R G B" in note and "--data-config FILE" in note
    assert resolve_preprocessing({}, None, explain_defaults=False).notes == ()


def test_a_partial_model_config_names_only_the_defaulted_keys():
    resolved = resolve_preprocessing({"input_size": (3, 32, 32)}, {"std": [0.5]})
    assert resolved.config["std"] == (0.5, 0.5, 0.5)  # one value for every channel, as in timm
    (note,) = resolved.notes
    assert (
        "mean (0.485, 0.456, 0.406)" in note and "input_size" not in note and "std" not in note.split(":")[0]
    )


def test_a_user_model_pretrained_cfg_default_cfg_or_none(tmp_path, user_model):
    weights = write_user_weights(user_model, tmp_path / "w.safetensors")
    with_default = load_model(f"{user_model}:with_default_cfg", "random")
    assert with_default.data_config["input_size"] == (3, 40, 40)
    assert with_default.data_config["mean"] == (0.1, 0.2, 0.3)
    assert with_default.preprocessing_source["input_size"] == "model"
    assert with_default.preprocessing_source["std"] == "default"

    with_object = load_model(f"{user_model}:with_pretrained_cfg_object", "random")
    # timm's PretrainedCfg dataclass: every one of its fields counts as the model's own
    assert with_object.data_config["input_size"] == (3, 48, 48)
    assert with_object.data_config["interpolation"] == "bicubic"
    assert set(with_object.preprocessing_source.values()) == {"model"}

    plain = load_model(f"{user_model}:plain", str(weights))
    assert plain.data_config == IMAGENET_DEFAULT_CFG
    assert set(plain.preprocessing_source.values()) == {"default"}
    (note,) = plain.preprocessing_notes
    assert "ImageNet's default preprocessing" in note and "--input-size C H W" in note
    provenance = plain.provenance()
    assert provenance["preprocessing_notes"] == [note]
    assert provenance["preprocessing_source"]["mean"] == "default"

    # random weights were trained on nothing: no preprocessing is wrong for them, so no note
    assert load_model(f"{user_model}:plain", "random").preprocessing_notes == ()


def test_load_model_data_config_as_mapping_or_file_over_the_models_own(tmp_path, user_model, caplog):
    spec = f"{user_model}:with_default_cfg"
    with caplog.at_level(logging.INFO, logger="seviz.models.registry"):
        given = load_model(spec, "random", data_config={"input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5]})
    assert given.data_config["input_size"] == (3, 32, 32) and given.data_config["mean"] == (0.5, 0.5, 0.5)
    assert given.preprocessing_source["input_size"] == "argument"
    assert "input_size, mean from the data_config argument" in caplog.text
    file = _file(tmp_path, {"mean": [0.2, 0.2, 0.2]})
    from_file = load_model(spec, "random", data_config=str(file))
    assert from_file.data_config["mean"] == (0.2, 0.2, 0.2)
    assert from_file.data_config["input_size"] == (3, 40, 40)  # the model's own, below the file
    assert from_file.preprocessing_source["mean"] == f"file:{file}"


def test_timm_and_demo_models_keep_their_own_config_unless_told():
    timm_model = load_model("resnet18", "random")  # no SE needed to load
    assert set(timm_model.preprocessing_source.values()) == {"model"}
    # timm's resnet18 pretrained_cfg says bicubic (seviz's ImageNet default is bilinear)
    assert timm_model.data_config["interpolation"] == "bicubic"
    told = load_model("se_resnet50_cifar10", "random", data_config={"crop_pct": 0.9})
    assert told.data_config["crop_pct"] == 0.9 and told.data_config["input_size"] == (3, 32, 32)
    assert told.preprocessing_source == {
        "input_size": "model",
        "interpolation": "model",
        "crop_pct": "argument",
        "crop_mode": "model",
        "mean": "model",
        "std": "model",
    }


# ---------------------------------------------------------------- bad values


BAD_VALUES = [
    ({"input_size": [32, 32]}, "takes 3 numbers, channels height width"),
    ({"input_size": [3, 32, 32, 1]}, "got 4: 3 32 32 1"),
    ({"input_size": [1, 32, 32]}, "C must be 3"),
    ({"input_size": [3, 0, 32]}, "whole positive numbers"),
    ({"input_size": ["3", "x", "3"]}, "'x' is not one"),
    ({"std": [0.2, -0.1, 0.2]}, "must be positive"),
    ({"std": [0, 0, 0]}, "must be positive"),
    ({"mean": [0.5, 0.5]}, "one number per channel"),
    ({"crop_pct": 0}, "in (0, 1]"),
    ({"crop_pct": 1.5}, "in (0, 1]"),
    ({"interpolation": "cubic"}, "use one of bilinear, bicubic, nearest, lanczos, box, hamming"),
    ({"crop_mode": "middle"}, "use one of center, squash, border"),
    ({"resize": 256}, "unknown key(s) 'resize'"),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES)
def test_bad_values_are_refused_naming_the_value(values, message):
    with pytest.raises(DataConfigError) as raised:
        as_request(values)
    assert message in str(raised.value)
    assert isinstance(raised.value, SevizError)


def test_flag_errors_name_the_flag():
    with pytest.raises(
        DataConfigError, match=r"^--input-size takes 3 numbers.*--input-size 3 32 32.*got 2: 3 32"
    ):
        DataConfigRequest.build({"input_size": ["3", "32"]}, values_origin=FROM_FLAGS)
    with pytest.raises(DataConfigError, match=r"^--std must be positive"):
        DataConfigRequest.build({"std": ["-1"]}, values_origin=FROM_FLAGS)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"input_size": [3, 32, 32],', "is not valid JSON"),
        ("[3, 32, 32]", "holds a list, not a JSON object"),
        ('{"input_size": [3, 32, 32], "img_size": 32}', "unknown key(s) 'img_size'"),
        ('{"std": [0.2, 0.0, 0.2]}', "must be positive"),
    ],
)
def test_bad_data_config_files_are_refused(tmp_path, content, message):
    file = _file(tmp_path, content)
    with pytest.raises(DataConfigError) as raised:
        DataConfigRequest.build(file=file)
    assert message in str(raised.value) and str(file) in str(raised.value)


def test_a_missing_data_config_file_is_refused(tmp_path):
    with pytest.raises(DataConfigError, match="does not exist"):
        as_request(tmp_path / "nowhere.json")


def test_load_model_refuses_a_bad_data_config_before_building_the_model(tmp_path, user_model, monkeypatch):
    marker = tmp_path / "built"
    monkeypatch.setenv("SEVIZ_TEST_BUILT", str(marker))
    with pytest.raises(DataConfigError, match="must be positive"):
        load_model(f"{user_model}:plain", "random", data_config={"std": [-1, 1, 1]})
    assert not marker.exists()
    load_model(f"{user_model}:plain", "random", data_config={"std": [1, 1, 1]})
    assert marker.exists()  # the marker works: a good config does build the model


def test_a_bad_value_in_the_models_own_config_names_its_origin():
    with pytest.raises(DataConfigError, match=r"'interpolation' \(the model's own config\).*'sinc'"):
        resolve_preprocessing({"interpolation": "sinc"})
    # ... unless the user overrides it
    assert (
        resolve_preprocessing({"interpolation": "sinc"}, {"interpolation": "bicubic"}).config["interpolation"]
        == "bicubic"
    )
