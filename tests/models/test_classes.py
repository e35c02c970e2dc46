"""Tests for seviz/classes.py: ImageNet names, synonyms, WordNet ids, indices; demo class names."""

from __future__ import annotations

import pytest
from torch import nn

from seviz.models import (
    ClassResolutionError,
    ClassSpace,
    LoadedModel,
    imagenet_names,
    resolve_classes,
    split_class_list,
)


@pytest.fixture(scope="module")
def imagenet():
    """An ImageNet-1k head (class names and WordNet ids from timm's ImageNet info); no network needed."""
    names, ids = imagenet_names(1000)
    return LoadedModel(nn.Identity(), "imagenet_head", "imagenet_head", "random", "", names, ids, {})


@pytest.fixture(scope="module")
def demo():
    from seviz.models import load_model

    return load_model("se_resnet50_cifar10", "random")


def test_imagenet_22k_heads_resolve_names_too():
    """A 21,841-class ImageNet-22k head (timm infers the subset from the model): synonyms by WordNet id."""
    head = nn.Module()
    head.num_classes = 21841
    names, ids = imagenet_names(21841, head)
    loaded = LoadedModel(nn.Identity(), "in22k_head", "in22k_head", "random", "", names, ids, {})
    goldfish = ids.index("n01443537")
    for term in ("goldfish", "Carassius auratus", "n01443537"):
        assert [r.index for r in resolve_classes(term, loaded)] == [goldfish]


def indices(requested, loaded):
    return [ref.index for ref in resolve_classes(requested, loaded)]


def test_names_resolve_to_imagenet_outputs(imagenet):
    refs = resolve_classes("goldfish,pug", imagenet)
    assert [(r.index, r.name, r.id) for r in refs] == [
        (1, "goldfish", "n01443537"),
        (254, "pug", "n02110958"),
    ]
    assert refs[1].describe() == "'pug' (n02110958)"


@pytest.mark.parametrize("term", ["pug", "pug-dog", "n02110958", "254", " Pug ", "PUG-DOG"])
def test_synonyms_ids_and_indices_name_the_same_class(imagenet, term):
    assert indices(term, imagenet) == [254]


def test_multi_word_names_accept_underscores(imagenet):
    assert indices("great white shark", imagenet) == [2]
    assert indices(["great_white_shark"], imagenet) == [2]


def test_plane_is_ambiguous_and_lists_the_candidates(imagenet):
    with pytest.raises(ClassResolutionError, match="ambiguous") as error:
        resolve_classes("goldfish,plane", imagenet)
    message = str(error.value)
    assert "'plane'" in message
    assert "n03954731" in message and "carpenter's plane" in message
    assert "n04552348" in message and "warplane" in message
    assert indices("airliner,warplane", imagenet) == [404, 895]


def test_crane_is_a_bird_and_a_machine(imagenet):
    with pytest.raises(ClassResolutionError, match="ambiguous") as error:
        resolve_classes("crane", imagenet)
    assert "n02012849" in str(error.value) and "n03126707" in str(error.value)
    assert indices("n02012849,n03126707", imagenet) == [134, 517]


def test_a_typo_suggests_the_close_name(imagenet):
    with pytest.raises(
        ClassResolutionError, match=r"unknown class 'gldfish'; did you mean 'goldfish' \(n01443537\)"
    ):
        resolve_classes("gldfish", imagenet)


@pytest.mark.parametrize(
    "term, message",
    [
        ("1000", "out of range: the model has 1000 classes"),
        ("n99999999", "not one of the model's 1000 ImageNet classes"),
        ("goldfish,n01443537", "given twice"),
        ("zzzzqqqq", "unknown class 'zzzzqqqq'"),
    ],
)
def test_bad_terms_are_errors_that_say_why(imagenet, term, message):
    with pytest.raises(ClassResolutionError, match=message):
        resolve_classes(term, imagenet)


def test_demo_model_uses_its_own_class_names(demo):
    refs = resolve_classes("cat,dog", demo)
    assert [(r.index, r.name, r.id) for r in refs] == [(3, "cat", None), (5, "dog", None)]
    assert indices("Airplane, 9", demo) == [0, 9]
    with pytest.raises(ClassResolutionError, match=r"unknown class 'kat'; did you mean 'cat' \(3\)"):
        resolve_classes("kat", demo)
    with pytest.raises(ClassResolutionError, match="airplane, automobile, bird"):
        resolve_classes("goldfish", demo)  # an ImageNet name means nothing to a CIFAR-10 model
    with pytest.raises(ClassResolutionError, match="out of range: the model has 10 classes"):
        resolve_classes("10", demo)


def test_folder_names_map_to_classes(imagenet, demo):
    space = ClassSpace(imagenet)
    assert space.folder_class("n01443537") == 1
    assert space.folder_class("goldfish") == 1
    assert space.folder_class("pug-dog") == 254
    assert space.folder_class("crane") is None  # ambiguous: never guessed
    assert space.folder_class("holiday_photos") is None
    assert ClassSpace(demo).folder_class("dog") == 5


def test_split_class_list():
    assert split_class_list(" goldfish, pug ,,") == ["goldfish", "pug"]
    assert split_class_list(["a", " b "]) == ["a", "b"]
    assert split_class_list(None) == []


@pytest.mark.parametrize("term", ["", ",", " , ,", []])
def test_a_class_list_that_names_no_class_is_refused_not_every_class(term, demo):
    with pytest.raises(ClassResolutionError, match="names no class; .*drop --classes to use every class"):
        resolve_classes(term, demo)


def test_finding_images_with_an_empty_class_list_is_refused(demo, tmp_path):
    from seviz.data import find_images

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "0.png").write_bytes(b"")
    assert len(find_images(tmp_path, demo)) == 1  # no --classes: every class
    with pytest.raises(ClassResolutionError, match="names no class"):
        find_images(tmp_path, demo, classes=",")
