"""Tests for seviz/models.py: model specs, weights files, class names and provenance (no downloads)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from _images import write_tiny_model

from seviz.models import (
    MODEL_ALIASES,
    ClassResolutionError,
    ModelLoadError,
    check_classes,
    classes_before_building,
    load_model,
)


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    return f"{write_tiny_model(tmp_path_factory.mktemp('model'))}:tiny"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_paper_names_map_to_the_authors_weights_in_timm(monkeypatch):
    import timm

    assert MODEL_ALIASES["se_resnet50"] == "legacy_seresnet50.in1k"
    assert MODEL_ALIASES["senet154"] == "legacy_senet154.in1k"
    assert all(timm.is_model(name.split(".")[0]) for name in MODEL_ALIASES.values())
    built = []
    real_create = timm.create_model

    def create(name, pretrained=False, **kwargs):  # records what seviz asks timm for, builds a small model
        built.append((name, pretrained))
        return real_create("seresnet18", pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", create)
    loaded = load_model("se_resnet101", "random")
    assert built == [("legacy_seresnet101.in1k", False)]
    assert (loaded.spec, loaded.name, loaded.weights_source) == (
        "se_resnet101",
        "legacy_seresnet101.in1k",
        "random",
    )
    assert loaded.is_imagenet and loaded.class_names[1] == "goldfish" and loaded.class_ids[1] == "n01443537"


def test_unknown_model_suggests_close_names():
    with pytest.raises(ModelLoadError, match=r"unknown model 'se_resnet5'; did you mean se_resnet50"):
        load_model("se_resnet5", "random")
    with pytest.raises(ModelLoadError, match="unknown torchvision model 'efficientnet_b9'; did you mean"):
        load_model("torchvision:efficientnet_b9", "random")


def test_random_weights_are_one_network_and_leave_the_caller_rng_alone(tiny_spec):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = load_model(tiny_spec, "random")
    assert torch.equal(torch.random.get_rng_state(), state)
    second = load_model(tiny_spec, "random")
    assert first.weights_sha256 == second.weights_sha256
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_file_round_trip(tiny_spec, tmp_path, suffix):
    from safetensors.torch import save_file

    source = load_model(tiny_spec, "random").model
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(torch.randn_like(parameter))  # weights no fresh model has
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # a wrapped checkpoint
    loaded = load_model(tiny_spec, str(path), class_names=["cat", "dog"])
    assert (loaded.weights_source, loaded.weights_file_sha256) == (str(path.resolve()), sha256(path))
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert loaded.model.training is False


def test_the_same_tensors_have_one_hash_whatever_file_holds_them(tiny_spec, tmp_path):
    """A store recorded with one copy of the weights accepts another copy (hub, .pth, .safetensors)."""
    from safetensors.torch import save_file

    source = load_model(tiny_spec, "random").model
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(torch.randn_like(parameter))
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pth")
    a = load_model(tiny_spec, str(tmp_path / "w.safetensors"), class_names=["cat", "dog"])
    b = load_model(tiny_spec, str(tmp_path / "w.pth"), class_names=["cat", "dog"])
    assert a.weights_file_sha256 != b.weights_file_sha256  # different bytes
    assert a.weights_sha256 == b.weights_sha256  # the same tensors
    assert b.has_weights(a.weights_sha256) and b.has_weights(b.weights_file_sha256)
    assert not b.has_weights(a.weights_file_sha256)  # another file's bytes are not these weights
    random = load_model(tiny_spec, "random", class_names=["cat", "dog"])
    assert not random.has_weights(a.weights_sha256) and random.weights_file_sha256 is None


def test_weights_that_do_not_fit_list_the_first_mismatches(tiny_spec, tmp_path):
    from safetensors.torch import save_file

    state = load_model(tiny_spec, "random").model.state_dict()
    state["fc.weight"] = torch.zeros(7, 32)
    del state["conv1.weight"]
    state["extra.bias"] = torch.zeros(3)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ModelLoadError) as error:
        load_model(tiny_spec, str(tmp_path / "bad.safetensors"))
    message = str(error.value)
    assert "1 missing (first: conv1.weight)" in message
    assert "1 unexpected (first: extra.bias)" in message
    assert "fc.weight: file (7, 32) vs model (2, 32)" in message
    assert "--num-classes" in message


class Payload:
    """Arbitrary pickled code: what ``weights_only=True`` exists to refuse."""


def test_weights_files_that_are_not_state_dicts_are_refused(tiny_spec, tmp_path):
    torch.save({"state_dict": Payload()}, tmp_path / "pickled.pth")
    with pytest.raises(ModelLoadError, match="weights_only=True"):
        load_model(tiny_spec, str(tmp_path / "pickled.pth"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tiny_spec, str(tmp_path / "absent.safetensors"))


def test_unavailable_pretrained_weights_say_how_to_pass_a_file(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub

    # Offline for real: the Hub client refuses every request, and the cache is empty.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError) as error:
        load_model("mobilenetv3_small_050", "pretrained")
    message = str(error.value)
    assert "could not fetch pretrained weights for 'mobilenetv3_small_050'" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "--weights path/to/model.safetensors" in message


def test_failing_timm_download_says_how_to_pass_a_file(monkeypatch):
    import timm

    def create(name, pretrained=False, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(timm, "create_model", create)
    with pytest.raises(
        ModelLoadError, match=r"legacy_seresnet50.in1k.*Network is unreachable.*--weights path/to"
    ):
        load_model("se_resnet50", "pretrained")


def test_user_factory_with_class_names(tiny_spec):
    loaded = load_model(tiny_spec, "random", class_names=["cat", "dog"])
    assert (loaded.spec, loaded.name, loaded.weights_source) == (tiny_spec, tiny_spec, "random")
    assert loaded.class_names == ("cat", "dog") and loaded.class_ids is None and not loaded.is_imagenet
    assert loaded.data_config["input_size"] == (3, 32, 32)  # from the model's own pretrained_cfg
    assert loaded.data_config["std"] == (0.25, 0.25, 0.25)
    assert loaded.provenance()["num_classes"] == 2
    assert load_model(tiny_spec, "random", num_classes=3, class_names=["a", "b", "c"]).class_names == (
        "a",
        "b",
        "c",
    )


@pytest.mark.parametrize(
    "spec_suffix, options, message",
    [
        (":tiny", {"class_names": ["cat"]}, "gives 1 names but the model has 2 outputs"),
        (":tiny", {"weights": "pretrained"}, "has no 'pretrained' weights; pass --weights FILE"),
        (":nothing_here", {}, "has no callable 'nothing_here'; it has .*tiny"),
    ],
)
def test_user_factory_errors(tiny_spec, spec_suffix, options, message):
    spec = tiny_spec.rsplit(":", 1)[0] + spec_suffix
    with pytest.raises(ModelLoadError, match=message):
        load_model(spec, **{"weights": "random", **options})


def test_missing_user_model_file_and_module(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(f"{tmp_path}/absent.py:factory", "random")
    with pytest.raises(ModelLoadError, match="cannot import 'no_such_package_xyz.models'"):
        load_model("no_such_package_xyz.models:factory", "random")


def test_package_module_factory():
    loaded = load_model("seviz.models.demo_network:build_demo_model", "random")
    assert len(loaded.class_names) == 10 and loaded.data_config["input_size"] == (3, 32, 32)


def test_demo_model_has_cifar_classes_and_a_clean_data_config():
    from seviz.models.demo_network import CIFAR10_MEAN, CIFAR10_STD

    loaded = load_model("se_resnet50_cifar10", "random")
    assert loaded.class_names[3] == "cat" and loaded.class_names[5] == "dog" and loaded.class_ids is None
    # the same types and keys as every other model's config, whether or not the shipped JSON is there
    assert loaded.data_config == {
        "input_size": (3, 32, 32),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
    }


def test_torchvision_efficientnet_b0_random():
    from seviz.se import discover_se_gates

    loaded = load_model("torchvision:efficientnet_b0", "random")
    assert (loaded.name, loaded.weights_source) == ("torchvision:efficientnet_b0", "random")
    assert len(loaded.class_names) == 1000 and loaded.class_ids[1] == "n01443537"
    assert loaded.data_config["input_size"] == (3, 224, 224)
    gates = discover_se_gates(loaded.model, (3, 64, 64))
    assert len(gates) == 16 and {g.kind for g in gates} == {"torchvision.SqueezeExcitation"}


# ---------------------------------------------------------------- options that would be ignored are refused


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"class_names": ["a", "b"]}, r"--class-names: the demo model .* has its own classes \(airplane, "),
        ({"num_classes": 5}, r"--num-classes 5: the demo model .* has 10 outputs"),
        ({"num_classes": 0}, r"--num-classes 0 is not a number of outputs"),
    ],
)
def test_the_demo_model_refuses_options_it_would_ignore(options, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model("se_resnet50_cifar10", "random", **options)


def test_the_demo_model_accepts_its_own_class_names_and_size():
    from seviz.models.demo_network import CIFAR10_CLASSES

    loaded = load_model("se_resnet50_cifar10", "random", num_classes=10, class_names=list(CIFAR10_CLASSES))
    assert loaded.class_names == tuple(CIFAR10_CLASSES)


@pytest.mark.parametrize("spec", ["seresnet18", "torchvision:efficientnet_b0"])
def test_zero_outputs_are_refused_for_every_family(spec, tiny_spec):
    for each in (spec, tiny_spec):
        with pytest.raises(ModelLoadError, match="--num-classes 0 is not a number of outputs"):
            load_model(each, "random", num_classes=0)


def test_the_weights_a_store_names_are_found_by_one_function():
    from seviz.models import runs_user_code, weights_for_source

    assert weights_for_source("pretrained:legacy_seresnet50.in1k") == "pretrained"
    assert weights_for_source("torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1") == "pretrained"
    assert weights_for_source("demo") == weights_for_source("") == "pretrained"
    assert weights_for_source("random") == "random"
    assert weights_for_source("/models/w.safetensors") == "/models/w.safetensors"
    assert runs_user_code("net.py:build") and runs_user_code("package.module:make")
    assert not runs_user_code("torchvision:efficientnet_b0") and not runs_user_code("se_resnet50")
    assert not runs_user_code("hf-hub:timm/seresnet50.a1_in1k")


@pytest.mark.parametrize(
    "spec, options",
    [
        ("se_resnet50", {}),
        ("se_resnet50", {"num_classes": 10}),
        ("seresnet18", {"class_names": [f"c{i}" for i in range(1000)]}),
        ("vit_base_patch16_224.augreg_in21k", {}),  # a 21,843-class ImageNet-21k head
        ("se_resnet50_cifar10", {}),
    ],
)
def test_the_classes_known_before_a_build_are_the_built_models(spec, options, monkeypatch):
    import timm

    real_create = timm.create_model

    def create(name, pretrained=False, **kwargs):  # the head seviz asks for, on a small network
        head = kwargs.pop("num_classes", None) or timm.models.get_pretrained_cfg(name).num_classes
        return real_create("seresnet18", pretrained=False, num_classes=head, **kwargs)

    monkeypatch.setattr(timm, "create_model", create)
    known = classes_before_building(spec, **options)
    loaded = load_model(spec, "random", **options)
    assert known is not None and len(known.class_names) == len(loaded.class_names)
    assert (known.class_names, known.class_ids) == (loaded.class_names, loaded.class_ids)


def test_classes_only_a_build_can_tell_are_left_to_it(tiny_spec):
    assert classes_before_building(tiny_spec) is None  # user code: its head is known once built
    assert classes_before_building("torchvision:efficientnet_b0") is None
    assert classes_before_building("no_such_model") is None  # the build names the models there are
    assert classes_before_building(tiny_spec, class_names=["cat", "dog"]).class_names == ("cat", "dog")
    check_classes(tiny_spec, "gldfish")  # nothing to check against yet: find_images checks it after the build
    with pytest.raises(ClassResolutionError, match=r"unknown class 'kat'; did you mean 'cat'"):
        check_classes(tiny_spec, "kat", class_names=["cat", "dog"])
