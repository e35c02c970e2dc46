"""seviz/attribute.py: captum gradient x activation on the gates, written into the store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seviz.recording import attribute, record
from seviz.store import StoreError, open_store


@pytest.fixture(autouse=True)
def _keep_sigterm():
    import signal

    handler = signal.getsignal(signal.SIGTERM)  # seviz.cli.main() turns SIGTERM into KeyboardInterrupt
    yield
    signal.signal(signal.SIGTERM, handler)


@pytest.fixture()
def weights(live_demo_weights):
    return live_demo_weights


@pytest.fixture()
def store(tmp_path, weights):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for name in ("cat", "ship"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    out = tmp_path / "s.h5"
    record("se_resnet50_cifar10", root, out, weights=weights, batch_size=4, workers=0, progress=False)
    return out


def _manual_gradient_x_activation(weights: str, image_path: str, label: int, gate_path: str) -> np.ndarray:
    """d logit[label] / d s  *  s for one image, with plain autograd."""
    from seviz.data import load_rgb, make_transform
    from seviz.models import load_model

    loaded = load_model("se_resnet50_cifar10", weights)
    image = make_transform(loaded.data_config)(load_rgb(image_path)).unsqueeze(0)
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["s"] = output

    handle = loaded.model.get_submodule(gate_path).register_forward_hook(keep)
    try:
        loaded.model(image)[0, label].backward()
    finally:
        handle.remove()
    s = captured["s"]
    return (s.grad * s).detach().flatten().numpy()


def test_attributions_are_mean_gradient_x_activation_per_class(store, weights):
    summary = attribute(store, progress=False)
    assert summary.classes == ["cat", "ship"] and summary.images == 6 and summary.blocks == 16
    with open_store(store) as opened:
        tables = opened.attributions()
        block = opened.blocks["SE_5_2"]
        paths, labels, names = list(opened.paths), opened.labels, opened.class_names
    table = tables["SE_5_2"]
    assert table.values.shape == (2, block.channels)
    assert "LayerGradientXActivation" in table.method
    ship_rows = [i for i, n in enumerate(names) if n == "ship"]
    manual = np.mean(
        [_manual_gradient_x_activation(weights, paths[i], int(labels[i]), block.module) for i in ship_rows],
        axis=0,
    )
    np.testing.assert_allclose(table.values[1], manual, rtol=1e-3, atol=1e-6)
    assert np.abs(manual).max() > 0  # a live block, not a vacuous comparison
    top = table.top_channels("ship", 5)
    assert [c for c, _ in top] == list(np.argsort(-manual, kind="stable")[:5])


def test_attribution_refuses_other_weights(store):
    with pytest.raises(StoreError, match="recorded with"):
        attribute(store, weights="random", progress=False)


def test_unknown_class_in_rankings_names_the_choices(store):
    attribute(store, progress=False)
    with open_store(store) as opened:
        table = opened.attributions()["SE_2_1"]
    with pytest.raises(StoreError, match="cat, ship"):
        table.top_channels("dog")


# ---------------------------------------------------------------- a store's model is data, not code (issue 13, point 12)

FACTORY = """
from pathlib import Path

def build(num_classes=None):
    Path({marker!r}).write_text("ran")
    from seviz.models.demo_network import build_demo_model
    return build_demo_model()
"""


@pytest.fixture()
def user_model_store(tmp_path, weights):
    """A store recorded with a ``file.py:factory`` model whose code leaves a mark each time it runs."""
    marker = tmp_path / "factory-ran"
    factory = tmp_path / "mynet.py"
    factory.write_text(FACTORY.format(marker=str(marker)))
    rng = np.random.default_rng(1)
    for label in ("0", "1"):
        (tmp_path / "digits" / label).mkdir(parents=True)
        for i in range(2):
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / "digits" / label / f"{i}.png")
    out = tmp_path / "user.h5"
    spec = f"{factory}:build"
    record(spec, tmp_path / "digits", out, weights=weights, batch_size=4, workers=0, progress=False)
    marker.unlink()
    return out, spec, marker


def test_attribute_does_not_run_the_code_a_store_names(user_model_store):
    from _tiny_store import sha256

    from seviz.cli import main
    from seviz.errors import ModelLoadError

    store, spec, marker = user_model_store
    before = sha256(store)
    with pytest.raises(
        ModelLoadError, match=r"does not run code that a data file names.*--trust-store-model"
    ):
        attribute(store, progress=False)
    assert main(["attribute", str(store), "--no-progress"]) == 2
    assert not marker.exists() and sha256(store) == before
    summary = attribute(store, model=spec, progress=False)  # the user names the code: it runs
    assert marker.exists() and summary.images == 4
    marker.unlink()
    assert attribute(store, trust_store_model=True, progress=False).images == 4 and marker.exists()


def test_attribute_on_an_empty_store_is_an_error(tmp_path, capsys):
    from _tiny_store import sha256

    from seviz.cli import main
    from seviz.models.demo_network import DEMO_MODEL_NAME
    from seviz.store import BlockInfo, StoreWriter

    path = tmp_path / "empty.h5"
    attrs = {"model": DEMO_MODEL_NAME, "model_spec": DEMO_MODEL_NAME, "weights_source": "demo"}
    with StoreWriter(path, [BlockInfo("SE_2_1", "layer1.0.se.gate", 2, 1, 64)], attrs) as writer:
        writer.close(complete=True)
    before = sha256(path)
    with pytest.raises(StoreError, match="has no samples to attribute"):
        attribute(path, progress=False)
    assert main(["attribute", str(path), "--no-progress"]) == 2
    assert "has no samples to attribute" in capsys.readouterr().err
    assert sha256(path) == before


LIGHT_CBAM_FACTORY = """
import torch
from timm.models.resnet import BasicBlock, ResNet

def build(num_classes=2):
    model = ResNet(BasicBlock, layers=(1, 1, 1, 1), channels=(8, 16, 24, 32), num_classes=num_classes,
                   block_args={"attn_layer": "lcbam"})
    with torch.no_grad():  # timm zero-initialises each block's last BatchNorm: no gate would matter
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
    return model
"""


def test_an_inline_sigmoid_gate_is_attributed_at_the_gate(tmp_path):
    # LightCbam applies its sigmoid inline: seviz hooks fc2 and must still attribute to s, not to fc2's output.
    from _timm_models import light_cbam_gradient_x_gate

    from seviz.data import load_rgb, make_transform
    from seviz.models import load_model

    factory = tmp_path / "lcbam.py"
    factory.write_text(LIGHT_CBAM_FACTORY)
    rng = np.random.default_rng(2)
    for name in ("0", "1"):  # the classes of a model without class names are its indices
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / "images" / name / f"{i}.png"
            )
    out, spec = tmp_path / "lcbam.h5", f"{factory}:build"
    record(spec, tmp_path / "images", out, weights="random", batch_size=4, workers=0, progress=False)
    attribute(out, model=spec, progress=False)
    with open_store(out) as opened:
        tables, paths, labels = opened.attributions(), list(opened.paths), opened.labels
        first = next(iter(opened.blocks))
        assert opened.blocks[first].kind == "timm.LightCbam.channel"
    loaded = load_model(spec, "random")
    transform = make_transform(loaded.data_config)
    images = torch.stack([transform(load_rgb(p)) for p in paths])
    expected = light_cbam_gradient_x_gate(loaded.model, images, torch.as_tensor(labels))
    rows = [i for i, label in enumerate(labels) if label == 1]
    manual = expected[0][rows].flatten(1).mean(0).numpy()
    assert np.abs(manual).max() > 1e-4  # a live gate, not a vacuous comparison
    np.testing.assert_allclose(tables[first].values[1], manual, rtol=1e-3, atol=1e-7)
