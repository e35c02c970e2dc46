"""The preprocessing flags on the command line: faithful gates, the store's preprocessing reused, bad input.

A user's own SE network (``user_model.py:plain``, tests/_user_model.py) carries no
preprocessing, as a CIFAR model of one's own would not; the flags say how it was
trained, and the stored gates must be those of a hand-written forward pass with
that transform.
"""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest
import torch
from _images import noise_image, write_class_folders
from _user_model import USER_GATES, build_user_model, write_user_model, write_user_weights
from PIL import Image
from safetensors.torch import load_file
from torchvision import transforms as T

from seviz.cli import main
from seviz.store import open_store

MEAN = ("0.49", "0.48", "0.45")
STD = ("0.25", "0.24", "0.26")
FLAGS = ("--input-size", "3", "32", "32", "--mean", *MEAN, "--std", *STD)


@pytest.fixture(autouse=True)
def _keep_sigterm():
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A user model file, its weights, and class folders of images of several sizes near 32 px."""
    root = tmp_path_factory.mktemp("user")
    model = write_user_model(root)
    weights = write_user_weights(model, root / "weights.safetensors")
    write_class_folders(root / "data", {"cat": 3, "dog": 2}, size=(40, 48), suffix=".png")
    noise_image((37, 33), seed=5).save(root / "data" / "dog" / "odd.png")
    return root, model, weights


def _model_args(user, factory="plain"):
    root, model, weights = user
    return ["--model", f"{model}:{factory}", "--weights", str(weights), "--class-names", "cat,dog"]


def _record(user, out, *extra):
    root = user[0]
    return ["record", *_model_args(user), "--data", str(root / "data"), "--out", str(out), "--workers", "0",
            "--no-progress", "--device", "cpu", "--batch-size", "4", "--dtype", "float32", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def flagged_store(user, tmp_path_factory):
    out = tmp_path_factory.mktemp("flagged") / "store.h5"
    handler = signal.getsignal(signal.SIGTERM)
    assert main(_record(user, out, *FLAGS)) == 0
    signal.signal(signal.SIGTERM, handler)
    return out


def _hand_gates(user, paths, mean, std, size=32, crop_pct=0.875):
    """The user model's gates on ``paths``, preprocessed by a transform written by hand."""
    _, model_path, weights = user
    model = build_user_model(model_path)
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    transform = T.Compose(
        [
            T.Resize(math.floor(size / crop_pct), interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    images = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    captured = {}
    handles = [
        model.get_submodule(path).register_forward_hook(
            lambda _m, _i, out, name=name: captured.update({name: out.flatten(1).numpy()})
        )
        for name, path in USER_GATES.items()
    ]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def test_flagged_user_model_stores_the_gates_of_a_hand_written_forward(user, flagged_store, capsys):
    with open_store(flagged_store) as store:
        paths = store.paths.tolist()
        stored = {name: store.gates(name) for name in store.block_names}
        assert store.provenance.preprocessing == {
            "input_size": [3, 32, 32],
            "interpolation": "bilinear",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": [0.49, 0.48, 0.45],
            "std": [0.25, 0.24, 0.26],
        }
        assert store.provenance.preprocessing_source == {
            "input_size": "flags",
            "mean": "flags",
            "std": "flags",
            "interpolation": "default",
            "crop_pct": "default",
            "crop_mode": "default",
        }
        assert list(store.provenance.preprocessing_notes) == []  # input, mean and std were given
    assert len(paths) == 6 and set(stored) == set(USER_GATES)
    hand = _hand_gates(user, paths, [float(v) for v in MEAN], [float(v) for v in STD])
    for name, gates in stored.items():
        assert gates.std() > 1e-3, f"{name}: flat gates would prove nothing"
        np.testing.assert_allclose(gates, hand[name], rtol=0, atol=1e-5, err_msg=name)
    # The comparison is sensitive to the transform: ImageNet's mean/std give other gates.
    imagenet = _hand_gates(user, paths, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert max(np.abs(stored[n] - imagenet[n]).max() for n in stored) > 1e-3


def test_record_summary_names_the_preprocessing_and_its_sources(user, tmp_path, capsys):
    assert main(_record(user, tmp_path / "s.h5", *FLAGS, "--crop-pct", "1.0")) == 0
    out = capsys.readouterr().out
    assert "preprocessing: input 3x32x32, mean (0.49, 0.48, 0.45), std (0.25, 0.24, 0.26), crop_pct 1" in out
    assert "input_size, crop_pct, mean, std from flags" in out
    assert "interpolation, crop_mode from the ImageNet default" in out
    assert "note:" not in out


def test_the_imagenet_fallback_and_upscaling_are_told_in_the_summary_and_the_store(user, tmp_path, capsys):
    out_path = tmp_path / "s.h5"
    assert main(_record(user, out_path)) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2
    assert "is fed ImageNet's default preprocessing (input_size (3, 224, 224)" in notes[0]
    assert "--input-size C H W --mean R G B --std R G B" in notes[0] and "--data-config FILE" in notes[0]
    assert "the images are being upscaled: their median shorter side is 40 px" in notes[1]
    assert "--input-size 3 40 40" in notes[1]
    with open_store(out_path) as store:
        assert store.provenance.preprocessing["input_size"] == [3, 224, 224]
        assert set(store.provenance.preprocessing_source.values()) == {"default"}
        assert list(store.provenance.preprocessing_notes) == [n[len("note: ") :] for n in notes]


def test_a_data_config_file_and_flags_over_it(user, tmp_path):
    config = tmp_path / "cifar.json"
    config.write_text(json.dumps({"input_size": [3, 32, 32], "mean": [0.1] * 3, "std": [0.3] * 3}))
    out = tmp_path / "s.h5"
    assert main(_record(user, out, "--data-config", str(config), "--mean", *MEAN)) == 0
    with open_store(out) as store:
        assert store.provenance.preprocessing["mean"] == [0.49, 0.48, 0.45]
        assert store.provenance.preprocessing["std"] == [0.3, 0.3, 0.3]
        source = store.provenance.preprocessing_source
    assert (source["mean"], source["std"], source["input_size"]) == (
        "flags",
        f"file:{config}",
        f"file:{config}",
    )


def test_blocks_takes_the_flags(user, capsys):
    assert main(["blocks", *_model_args(user), "--input-size", "3", "16", "16"]) == 0
    assert "SE_5_1" in capsys.readouterr().out


# ---------------------------------------------------------------- a store's preprocessing, reused


def _evaluate(user, store_args, json_out, *extra):
    root = user[0]
    return ["evaluate", *_model_args(user), "--data", str(root / "data"), "--blocks", "SE_5_1",
            "--workers", "0", "--no-progress", "--json", str(json_out), *store_args, *extra]  # fmt: skip


def test_evaluate_uses_the_stores_preprocessing_and_says_so(user, flagged_store, tmp_path, capsys):
    from seviz.pruning.counting import count_flops

    assert main(_evaluate(user, ["--store", str(flagged_store)], tmp_path / "e.json")) == 0
    out = capsys.readouterr().out
    assert f"from the preprocessing recorded in store {flagged_store}" in out
    report = json.loads((tmp_path / "e.json").read_text())
    with open_store(flagged_store) as store:
        assert report["preprocessing"]["config"] == store.provenance.preprocessing
    assert set(report["preprocessing"]["source"].values()) == {f"store:{flagged_store}"}
    assert report["preprocessing"]["notes"] == []
    model = build_user_model(user[1])
    assert report["original"]["flops"] == count_flops(model, (3, 32, 32))  # the recorded input size

    # Without the store the model gets ImageNet's 224x224, and the report says so.
    assert main(_evaluate(user, [], tmp_path / "plain.json")) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert plain["preprocessing"]["config"]["input_size"] == [3, 224, 224]
    assert set(plain["preprocessing"]["source"].values()) == {"default"}
    assert any("ImageNet's default preprocessing" in n for n in plain["preprocessing"]["notes"])
    assert plain["original"]["flops"] > 10 * report["original"]["flops"]


def test_flags_override_the_stores_preprocessing(user, flagged_store, tmp_path):
    argv = _evaluate(
        user, ["--store", str(flagged_store)], tmp_path / "e.json", "--input-size", "3", "28", "28"
    )
    assert main(argv) == 0
    report = json.loads((tmp_path / "e.json").read_text())["preprocessing"]
    assert report["config"]["input_size"] == [3, 28, 28] and report["source"]["input_size"] == "flags"
    assert (
        report["config"]["mean"] == [0.49, 0.48, 0.45]
        and report["source"]["mean"] == f"store:{flagged_store}"
    )


def test_prune_and_evaluate_from_a_recommendation_use_its_stores_preprocessing(
    user, flagged_store, tmp_path, capsys
):
    from seviz.pruning import Thresholds, recommend

    # Thresholds every block meets, so that the recommendation has something to prune.
    rec = recommend(flagged_store, Thresholds(identity_max_deviation=1.0, identity_min_near_one=0.0))
    rec_path, _ = rec.write(tmp_path / "rec.json")
    origin = f"store:{flagged_store.name} (via {rec_path})"
    root = user[0]
    assert main(["evaluate", *_model_args(user), "--data", str(root / "data"), "--recommendation",
                 str(rec_path), "--workers", "0", "--no-progress", "--json", str(tmp_path / "e.json")]) == 0  # fmt: skip
    report = json.loads((tmp_path / "e.json").read_text())["preprocessing"]
    assert report["config"]["input_size"] == [3, 32, 32]
    assert set(report["source"].values()) == {origin}
    capsys.readouterr()
    pruned = tmp_path / "pruned.safetensors"
    assert main(["prune", *_model_args(user), "--recommendation", str(rec_path), "--out", str(pruned)]) == 0
    out = capsys.readouterr().out
    assert "input 3x32x32, mean (0.49, 0.48, 0.45)" in out
    assert f"from the preprocessing recorded in store {flagged_store.name} (via {rec_path})" in out


def test_prune_with_store_finds_the_blocks_at_the_recorded_input_size(user, flagged_store, tmp_path, capsys):
    pruned = tmp_path / "pruned.safetensors"
    argv = [
        "prune",
        *_model_args(user),
        "--blocks",
        "SE_5_1",
        "--store",
        str(flagged_store),
        "--out",
        str(pruned),
    ]
    assert main(argv) == 0
    assert f"from the preprocessing recorded in store {flagged_store}" in capsys.readouterr().out


# ---------------------------------------------------------------- bad input: refused before any model work


BAD = [
    (("--input-size", "32", "32"), "--input-size takes 3 numbers, channels height width"),
    (("--input-size", "3", "32", "32", "32"), "--input-size takes 3 numbers"),
    (("--std", "0.2", "-0.1", "0.2"), "--std must be positive"),
    (("--std", "0", "0", "0"), "--std must be positive"),
    (("--mean", "0.5", "red", "0.5"), "--mean takes numbers; 'red' is not one"),
    (("--interpolation", "cubic"), "--interpolation is 'cubic'; use one of bilinear, bicubic"),
    (("--crop-mode", "middle"), "--crop-mode is 'middle'; use one of center, squash, border"),
    (("--crop-pct", "0"), "--crop-pct is the fraction"),
    ("bad-json", "is not valid JSON"),
    ("unknown-key", "has unknown key(s) 'resize'"),
    ("missing-file", "does not exist"),
]


def _bad_flags(bad, tmp_path):
    if not isinstance(bad, str):
        return list(bad)
    path = tmp_path / f"{bad}.json"
    if bad == "bad-json":
        path.write_text('{"input_size": [3, 32, 32]')
    elif bad == "unknown-key":
        path.write_text('{"input_size": [3, 32, 32], "resize": 36}')
    return ["--data-config", str(path)]


def _command(name, user, tmp_path, flagged_store):
    if name == "record":
        return _record(user, tmp_path / "new.h5"), tmp_path / "new.h5"
    if name == "evaluate":
        return _evaluate(user, [], tmp_path / "e.json"), tmp_path / "e.json"
    if name == "prune":
        out = tmp_path / "p.safetensors"
        return ["prune", *_model_args(user), "--blocks", "SE_5_1", "--out", str(out)], out
    if name == "blocks":
        return ["blocks", *_model_args(user)], None
    assert name == "attribute"
    return ["attribute", str(flagged_store), "--no-progress", "--device", "cpu"], None


@pytest.mark.parametrize("command", ["record", "evaluate", "prune", "blocks", "attribute"])
@pytest.mark.parametrize(("bad", "message"), BAD, ids=[str(b) for b, _ in BAD])
def test_bad_preprocessing_input_exits_2_before_any_model_work(
    user, flagged_store, tmp_path, monkeypatch, capsys, command, bad, message
):
    built = tmp_path / "built"
    monkeypatch.setenv("SEVIZ_TEST_BUILT", str(built))
    argv, output = _command(command, user, tmp_path, flagged_store)
    with open_store(flagged_store) as store:
        attributions_before = store.attributions()
    assert main([*argv, *_bad_flags(bad, tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"seviz {command}: error: " in err and message in err and "Traceback" not in err
    assert not built.exists(), "the model was built before the bad input was refused"
    if output is not None:
        assert not output.exists()
    with open_store(flagged_store) as store:
        assert store.attributions().keys() == attributions_before.keys()
