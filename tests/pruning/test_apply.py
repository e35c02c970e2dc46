"""Tests for seviz.pruning.apply: planted identity/constant blocks, BatchNorm folding, save/load, errors."""

from __future__ import annotations

import copy
import json
import textwrap

import pytest
import torch
from torch import nn

from seviz.errors import RecommendationError
from seviz.models import LoadedModel, load_model
from seviz.models.demo_network import CIFAR10_CLASSES, DEMO_MODEL_NAME, build_demo_model, demo_pretrained_cfg
from seviz.pruning.apply import (
    BlockEdit,
    PruningError,
    apply_saved_edits,
    prune,
    prune_blocks,
    prune_from_recommendation,
    read_saved_edits,
    save_pruned,
    select_blocks,
)
from seviz.se import discover_se_gates
from seviz.se.stand_ins import ChannelScale, ConstantGate

DEMO_INPUT = (3, 32, 32)


def randomize_batchnorms(model: nn.Module) -> nn.Module:
    """timm zero-initialises each block's last BN, which would silence every SE branch."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def demo(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_batchnorms(build_demo_model())


def demo_loaded(model: nn.Module) -> LoadedModel:
    return LoadedModel(
        model,
        DEMO_MODEL_NAME,
        DEMO_MODEL_NAME,
        "random",
        "0" * 64,
        CIFAR10_CLASSES,
        None,
        demo_pretrained_cfg(),
    )


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


def plant_identity(se: nn.Module, last_fc: str) -> None:
    with torch.no_grad():  # the gate becomes sigmoid(20) = 1 - 2e-9 for every input
        getattr(se, last_fc).weight.mul_(1e-6)
        getattr(se, last_fc).bias.fill_(20.0)


def plant_constant(se: nn.Module, first_fc: str) -> torch.Tensor:
    """Zero the first FC so the gate ignores its input; returns the constant gate."""
    with torch.no_grad():
        getattr(se, first_fc).weight.zero_()
    captured = {}
    gate = se.gate if hasattr(se, "gate") else se.sigmoid

    def keep(_module, _inputs, output):  # returns None: the output is not replaced
        captured["s"] = output.detach().flatten()

    handle = gate.register_forward_hook(keep)
    try:
        with torch.no_grad():
            se(torch.randn(1, getattr(se, first_fc).in_channels, 4, 4))
    finally:
        handle.remove()
    return captured["s"]


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, *DEMO_INPUT, generator=torch.Generator().manual_seed(1))


def test_planted_identity_block_is_removed_with_logits_unchanged(x):
    model = demo()
    plant_identity(model.layer4[1].se, "fc2")
    gates = discover_se_gates(model, DEMO_INPUT)
    before = logits(model, x)
    pruned = prune(model, gates, [BlockEdit("SE_5_2", "identity")], DEMO_INPUT)
    assert isinstance(model.layer4[1].se, nn.Identity)
    assert pruned.edits[0].replacement == "identity"
    assert pruned.params_removed == next(g.params for g in gates if g.name == "SE_5_2")
    assert relative_change(before, logits(model, x)) < 1e-4


def test_pruning_a_normal_block_changes_logits_measurably(x):
    model = demo()
    gates = discover_se_gates(model, DEMO_INPUT)
    before = logits(model, x)
    prune(model, gates, [BlockEdit("SE_3_1", "identity")], DEMO_INPUT)
    assert relative_change(before, logits(model, x)) > 1e-2


def test_planted_constant_block_folds_exactly_into_bn3(x):
    model = demo()
    scale = plant_constant(model.layer4[1].se, "fc1")
    assert not torch.allclose(scale, torch.ones_like(scale))
    gates = discover_se_gates(model, DEMO_INPUT)
    bn_weight = model.layer4[1].bn3.weight.detach().clone()
    bn_bias = model.layer4[1].bn3.bias.detach().clone()
    before = logits(model, x)
    pruned = prune(model, gates, [BlockEdit("SE_5_2", "constant", tuple(scale.tolist()))], DEMO_INPUT)
    (edit,) = pruned.edits
    assert edit.folded_into == "layer4.1.bn3"
    assert edit.replacement == "identity"
    assert isinstance(model.layer4[1].se, nn.Identity)  # the SE module is gone
    torch.testing.assert_close(model.layer4[1].bn3.weight.detach(), bn_weight * scale)
    torch.testing.assert_close(model.layer4[1].bn3.bias.detach(), bn_bias * scale)
    assert relative_change(before, logits(model, x)) < 1e-5


def test_constant_without_fold_is_a_channel_scale(x):
    model = demo()
    scale = plant_constant(model.layer3[0].se, "fc1")
    gates = discover_se_gates(model, DEMO_INPUT)
    before = logits(model, x)
    edit = BlockEdit("SE_4_1", "constant", tuple(scale.tolist()))
    pruned = prune(model, gates, [edit], DEMO_INPUT, fold=False)
    assert isinstance(model.layer3[0].se, ChannelScale)
    assert pruned.edits[0].folded_into is None
    assert relative_change(before, logits(model, x)) < 1e-5


def test_efficientnet_squeeze_excite_keeps_a_channel_scale_when_folding_is_not_exact():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = randomize_batchnorms(timm.create_model("efficientnet_b0", num_classes=4))
    se = model.blocks[1][0].se  # after bn2, a BatchNormAct2d with SiLU: s * silu(y) != silu(s * y)
    scale = plant_constant(se, "conv_reduce")
    gates = discover_se_gates(model, DEMO_INPUT)
    name = next(g.name for g in gates if g.module_path == "blocks.1.0.se")
    assert next(g.kind for g in gates if g.name == name) == "timm.SqueezeExcite"
    x = torch.randn(2, *DEMO_INPUT)
    before = logits(model, x)
    pruned = prune(model, gates, [BlockEdit(name, "constant", tuple(scale.tolist()))], DEMO_INPUT)
    assert pruned.edits[0].folded_into is None
    assert isinstance(model.blocks[1][0].se, ChannelScale)
    assert relative_change(before, logits(model, x)) < 1e-5


def test_torchvision_squeeze_excitation_without_preceding_batchnorm():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = randomize_batchnorms(torchvision.models.mobilenet_v3_small(num_classes=4))
    gates = discover_se_gates(model, DEMO_INPUT)
    gate = gates[0]
    se = model.get_submodule(gate.module_path)
    with torch.no_grad():
        se.fc1.weight.zero_()
        scale = se.scale_activation(se.fc2(se.activation(se.fc1.bias.view(1, -1, 1, 1)))).flatten()
    x = torch.randn(2, *DEMO_INPUT)
    before = logits(model, x)
    pruned = prune(model, gates, [BlockEdit(gate.name, "constant", tuple(scale.tolist()))], DEMO_INPUT)
    assert pruned.edits[0].folded_into is None
    assert isinstance(model.get_submodule(gate.module_path), ChannelScale)
    assert relative_change(before, logits(model, x)) < 1e-5


def test_glob_selects_exactly_the_stage_5_blocks():
    model = demo()
    gates = discover_se_gates(model, DEMO_INPUT)
    chosen = select_blocks(gates, "SE_5_*")
    assert [g.name for g in chosen] == ["SE_5_1", "SE_5_2", "SE_5_3"]
    assert [g.module_path for g in chosen] == ["layer4.0.se", "layer4.1.se", "layer4.2.se"]
    assert [g.name for g in select_blocks(gates, ["se_2_1, SE_5_3", "SE_2_1"])] == ["SE_2_1", "SE_5_3"]
    assert [g.name for g in select_blocks(gates, "layer1.*")] == ["SE_2_1", "SE_2_2", "SE_2_3"]


def test_prune_blocks_edits_a_copy_and_removes_stage_5():
    model = demo()
    loaded = demo_loaded(model)
    pruned = prune_blocks(loaded, "SE_5_*")
    assert all(isinstance(pruned.model.layer4[i].se, nn.Identity) for i in range(3))
    assert not isinstance(model.layer4[0].se, nn.Identity)  # the loaded model is untouched
    assert pruned.base_spec == DEMO_MODEL_NAME
    assert [e.name for e in pruned.edits] == ["SE_5_1", "SE_5_2", "SE_5_3"]


def test_save_and_load_give_the_in_memory_outputs(tmp_path, x):
    model = demo()
    folded = plant_constant(model.layer4[0].se, "fc1")
    scaled = plant_constant(model.layer3[2].se, "fc1")
    plant_identity(model.layer4[1].se, "fc2")
    loaded = demo_loaded(model)
    gates = discover_se_gates(model, DEMO_INPUT)
    edits = [
        BlockEdit("SE_5_1", "constant", tuple(folded.tolist())),
        BlockEdit("SE_4_3", "constant", tuple(scaled.tolist())),
        BlockEdit("SE_5_2", "identity"),
        BlockEdit("SE_2_1", "identity"),
    ]
    pruned = prune(copy.deepcopy(model), gates, edits, DEMO_INPUT)
    # Leave one constant unfolded so the file holds a ChannelScale buffer too.
    unfolded = prune(copy.deepcopy(model), gates, edits[1:2], DEMO_INPUT, fold=False)
    for result, name in ((pruned, "pruned.safetensors"), (unfolded, "scaled.safetensors")):
        path = save_pruned(result.model, result.edits, tmp_path / name, loaded.spec)
        reloaded = load_model(DEMO_MODEL_NAME, weights=str(path))
        assert type(reloaded.model.get_submodule(result.edits[0].module_path)) is type(
            result.model.get_submodule(result.edits[0].module_path)
        )
        torch.testing.assert_close(logits(reloaded.model, x), logits(result.model, x), rtol=0, atol=1e-6)
        assert read_saved_edits(path) == list(result.edits)
    assert {e.name: e.folded_into for e in pruned.edits}["SE_5_1"] == "layer4.0.bn3"
    saved = json.loads(_metadata(tmp_path / "pruned.safetensors")["seviz_edits"])
    assert saved["model"] == DEMO_MODEL_NAME
    assert {e["name"]: e["action"] for e in saved["edits"]} == {
        "SE_5_1": "constant",
        "SE_4_3": "constant",
        "SE_5_2": "identity",
        "SE_2_1": "identity",
    }


HAND_WRITTEN = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class ScaleSE(nn.Module):
        """Returns x * s."""

        def __init__(self, c):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(c, c // 2, 1)
            self.fc2 = nn.Conv2d(c // 2, c, 1)
            self.sigmoid = nn.Sigmoid()

        def forward(self, x):
            return x * self.sigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))


    class Block(nn.Module):
        def __init__(self, c, gate_only):
            super().__init__()
            self.gate_only = gate_only
            self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(c)
            if gate_only:  # returns s; the block multiplies
                self.se = nn.Sequential(
                    nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // 2, 1), nn.ReLU(), nn.Conv2d(c // 2, c, 1),
                    nn.Sigmoid(),
                )
            else:
                self.se = ScaleSE(c)

        def forward(self, x):
            y = self.bn(self.conv(x))
            y = y * self.se(y) if self.gate_only else self.se(y)
            return torch.relu(x + y)


    class Net(nn.Module):
        def __init__(self, num_classes=5, c=8):
            super().__init__()
            self.stem = nn.Conv2d(3, c, 3, padding=1)
            self.blocks = nn.Sequential(Block(c, gate_only=True), Block(c, gate_only=False))
            self.head = nn.Linear(c, num_classes)

        def forward(self, x):
            return self.head(self.blocks(self.stem(x)).mean((2, 3)))


    def build(num_classes=5):
        return Net(num_classes)
    '''
)


def test_hand_written_factory_model_round_trip(tmp_path):
    from safetensors.torch import save_file

    source = tmp_path / "mynet.py"
    source.write_text(HAND_WRITTEN)
    spec = f"{source}:build"
    base = load_model(spec, weights="random")
    randomize_batchnorms(base.model)
    save_file(base.model.state_dict(), str(tmp_path / "base.safetensors"))
    loaded = load_model(spec, weights=str(tmp_path / "base.safetensors"))
    gates = discover_se_gates(loaded.model, DEMO_INPUT)
    assert [(g.module_path, g.scales_input) for g in gates] == [("blocks.0.se", False), ("blocks.1.se", True)]
    gate_only_scale = plant_constant_sequential(loaded.model.blocks[0].se)
    x = torch.randn(2, *DEMO_INPUT)
    before = logits(loaded.model, x)
    pruned = prune(
        copy.deepcopy(loaded.model),
        gates,
        [BlockEdit(gates[0].name, "constant", tuple(gate_only_scale.tolist()))],
        DEMO_INPUT,
    )
    # The gate-only module folds too: its BN absorbs s and the parent multiplies by ones.
    assert pruned.edits[0].folded_into == "blocks.0.bn"
    assert isinstance(pruned.model.blocks[0].se, ConstantGate)
    assert relative_change(before, logits(pruned.model, x)) < 1e-5

    removed = prune(copy.deepcopy(loaded.model), gates, [BlockEdit(g.name) for g in gates], DEMO_INPUT)
    assert [e.replacement for e in removed.edits] == ["ones_gate", "identity"]
    for result, name in ((pruned, "p1.safetensors"), (removed, "p2.safetensors")):
        path = save_pruned(result.model, result.edits, tmp_path / name, spec)
        reloaded = load_model(spec, weights=str(path))
        torch.testing.assert_close(logits(reloaded.model, x), logits(result.model, x), rtol=0, atol=1e-6)


def plant_constant_sequential(se: nn.Sequential) -> torch.Tensor:
    with torch.no_grad():
        se[1].weight.zero_()
        return se(torch.randn(1, se[1].in_channels, 4, 4)).flatten()


def test_prune_from_recommendation_applies_identity_and_constant_verdicts(x):
    model = demo()
    plant_identity(model.layer4[1].se, "fc2")
    scale = plant_constant(model.layer4[0].se, "fc1")
    loaded = demo_loaded(model)
    recommendation = _recommendation(
        [
            {
                "name": "SE_5_1",
                "module": "layer4.0.se.gate",
                "verdict": "constant",
                "constant_vector": scale.tolist(),
            },
            {"name": "SE_5_2", "module": "layer4.1.se.gate", "verdict": "identity"},
            {"name": "SE_2_1", "module": "layer1.0.se.gate", "verdict": "keep"},
        ]
    )
    pruned = prune_from_recommendation(loaded, recommendation)
    assert [(e.name, e.action, e.folded_into) for e in pruned.edits] == [
        ("SE_5_1", "constant", "layer4.0.bn3"),
        ("SE_5_2", "identity", None),
    ]
    assert relative_change(logits(model, x), logits(pruned.model, x)) < 1e-4


def test_recommendation_file_round_trip(tmp_path):
    model = demo()
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(_recommendation([{"name": "SE_5_3", "verdict": "identity"}])))
    pruned = prune_from_recommendation(demo_loaded(model), path)
    assert isinstance(pruned.model.layer4[2].se, nn.Identity)


# ---------------------------------------------------------------- errors


def test_recommendation_for_another_model_names_both():
    loaded = demo_loaded(demo())
    with pytest.raises(RecommendationError, match=r"'legacy_seresnet50.in1k'.*'se_resnet50_cifar10'"):
        prune_from_recommendation(loaded, _recommendation([], model="legacy_seresnet50.in1k"))


def test_recommendation_for_other_weights_is_refused_unless_told():
    loaded = demo_loaded(demo())
    recommendation = _recommendation([{"name": "SE_5_3", "verdict": "identity"}])
    # As seviz recommend writes it: the store's identity names the weights.
    recommendation["store"] = {"model": DEMO_MODEL_NAME, "weights_sha256": "f" * 64}
    with pytest.raises(RecommendationError, match="SHA-256 ffff"):
        prune_from_recommendation(loaded, recommendation)
    assert prune_from_recommendation(loaded, recommendation, check_weights=False).edits[0].name == "SE_5_3"


def test_bad_recommendations_are_clear_errors(tmp_path):
    loaded = demo_loaded(demo())
    # Reading (one reader, seviz.pruning.load_recommendation) refuses with RecommendationError ...
    with pytest.raises(RecommendationError, match="not a seviz recommendation"):
        prune_from_recommendation(loaded, {"blocks": []})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prune_from_recommendation(loaded, tmp_path / "missing.json")
    with pytest.raises(RecommendationError, match="no constant_vector"):
        prune_from_recommendation(loaded, _recommendation([{"name": "SE_5_3", "verdict": "constant"}]))
    # ... and applying its verdicts to this model with PruningError.
    with pytest.raises(PruningError, match="'SE_9_1' is not in the model"):
        prune_from_recommendation(loaded, _recommendation([{"name": "SE_9_1", "verdict": "identity"}]))
    with pytest.raises(PruningError, match="nothing to prune"):
        prune_from_recommendation(loaded, _recommendation([{"name": "SE_5_3", "verdict": "keep"}]))
    with pytest.raises(PruningError, match="another model"):
        prune_from_recommendation(
            loaded, _recommendation([{"name": "SE_5_3", "module": "layer9.se", "verdict": "identity"}])
        )


def test_bad_selections_are_clear_errors():
    model = demo()
    gates = discover_se_gates(model, DEMO_INPUT)
    with pytest.raises(PruningError, match=r"'SE_6_\*' matches no SE block.*SE_2_1"):
        select_blocks(gates, "SE_6_*")
    with pytest.raises(PruningError, match="no SE block chosen"):
        select_blocks(gates, " , ")
    with pytest.raises(PruningError, match="no SE block chosen"):
        prune(model, gates, [], DEMO_INPUT)
    with pytest.raises(PruningError, match="'SE_7_1' is not in the model"):
        prune(model, gates, [BlockEdit("SE_7_1")], DEMO_INPUT)
    with pytest.raises(PruningError, match="has 3 values but the block has 512 channels"):
        prune(model, gates, [BlockEdit("SE_5_1", "constant", (1.0, 1.0, 1.0))], DEMO_INPUT)
    with pytest.raises(PruningError, match="unknown action 'drop'"):
        prune(model, gates, [BlockEdit("SE_5_1", "drop")], DEMO_INPUT)
    with pytest.raises(PruningError, match="needs the per-channel gate of SE_5_1"):
        prune_blocks(demo_loaded(model), "SE_5_1", action="constant")
    # A refused edit leaves the model as it was.
    assert all(type(model.get_submodule(g.module_path)).__name__ == "SEModule" for g in gates)


def test_saving_refuses_to_overwrite_and_checks_the_model(tmp_path):
    model = demo()
    gates = discover_se_gates(model, DEMO_INPUT)
    pruned = prune(copy.deepcopy(model), gates, [BlockEdit("SE_5_3")], DEMO_INPUT)
    path = save_pruned(pruned.model, pruned.edits, tmp_path / "p.safetensors", DEMO_MODEL_NAME)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_pruned(pruned.model, pruned.edits, path, DEMO_MODEL_NAME)
    with pytest.raises(PruningError, match="does not carry the edit of SE_5_3"):
        save_pruned(model, pruned.edits, tmp_path / "q.safetensors", DEMO_MODEL_NAME)
    with pytest.raises(PruningError, match=r"\*.safetensors"):
        save_pruned(pruned.model, pruned.edits, tmp_path / "p.pth", DEMO_MODEL_NAME)


def test_saved_edits_for_another_model_are_a_clear_error():
    edits = {"format": 1, "model": "mynet.py:build", "edits": [_saved_edit("layer9.0.se")]}
    with pytest.raises(PruningError, match=r"'layer9.0.se'.*--model 'mynet.py:build'"):
        apply_saved_edits(demo(), edits)
    with pytest.raises(PruningError, match="newer"):
        apply_saved_edits(demo(), {"format": 99, "edits": []})


def _saved_edit(module_path: str) -> dict:
    return {
        "name": "SE_5_1",
        "module_path": module_path,
        "action": "identity",
        "replacement": "identity",
        "folded_into": None,
        "channels": 512,
    }


def _recommendation(blocks: list[dict], model: str = DEMO_MODEL_NAME) -> dict:
    return {"seviz_recommendation": 1, "model": model, "blocks": blocks}


def _metadata(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


# ---------------------------------------------------------------- SE kinds across the zoo


def _zoo_model(name: str) -> nn.Module:
    import functools

    import timm
    from timm.layers import GlobalContext
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet

    torch.manual_seed(0)
    if name == "nf_regnet_b0":  # NormFreeBlock: out = attn_gain * se(out), attn_gain = 2
        model = timm.create_model(name, pretrained=False, num_classes=10)
        for module in model.modules():  # NF residual branches start silenced (conv gain 0)
            if isinstance(getattr(module, "gain", None), nn.Parameter):
                module.gain.data.fill_(1.0)
    elif name == "resnest14d_radix1":
        model = timm.create_model(
            "resnest14d",
            pretrained=False,
            num_classes=10,
            block_args={"radix": 1, "avd": True, "avd_first": False},
        )
    else:
        attn, block = {
            "eca_resnet": ("eca", Bottleneck),
            "gc_add_resnet": (functools.partial(GlobalContext, fuse_add=True, fuse_scale=True), BasicBlock),
            "lcbam_resnet": ("lcbam", BasicBlock),
        }[name]
        model = ResNet(block, layers=(1, 1, 1, 1), channels=(16, 24, 32, 40), block_args={"attn_layer": attn})
    return randomize_batchnorms(model)


def _forced(model: nn.Module, gate, values: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """Logits with one gate forced to ``values`` (ones if None), without editing the model."""
    if gate.gate_activation is None:  # force the gate module's own output
        path = gate.gate_path

        def hook(_m, _inputs, output):
            fixed = torch.ones(gate.channels) if values is None else values
            return fixed.view(1, *output.shape[1:]).expand_as(output).clone()

    else:  # the gate is applied inline (LightCbam): force the SE block to x * s
        path = gate.module_path

        def hook(_m, inputs, _output):
            fixed = torch.ones(gate.channels) if values is None else values
            return inputs[0] * fixed.view(1, -1, 1, 1)

    handle = model.get_submodule(path).register_forward_hook(hook)
    try:
        return logits(model, x)
    finally:
        handle.remove()


@pytest.mark.parametrize(
    "name, kind, folds",
    [
        ("nf_regnet_b0", "timm.SEModule", False),
        ("eca_resnet", "timm.EcaModule", True),
        ("resnest14d_radix1", "timm.SplitAttn(radix=1)", False),
        ("gc_add_resnet", "timm.GlobalContext+add", False),
        ("lcbam_resnet", "timm.LightCbam.channel", False),
    ],
)
def test_identity_and_constant_edits_are_exact_for_every_se_kind(name, kind, folds):
    from seviz.pruning.verify import _block_removed

    model = _zoo_model(name)
    size = (3, 64, 64)
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(1))
    gates = discover_se_gates(model, size)
    gate = gates[len(gates) // 2]
    assert gate.kind == kind
    scale = torch.rand(gate.channels, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    as_ones, as_scale = _forced(model, gate, None, x), _forced(model, gate, scale, x)
    assert relative_change(logits(model, x), as_ones) > 1e-3  # the gate matters in this model
    with _block_removed(model, gate):  # what `seviz evaluate` measures per block
        torch.testing.assert_close(logits(model, x), as_ones, rtol=1e-5, atol=1e-5)
    removed = prune(copy.deepcopy(model), gates, [BlockEdit(gate.name, "identity")], size)
    torch.testing.assert_close(logits(removed.model, x), as_ones, rtol=1e-5, atol=1e-5)
    fixed = prune(
        copy.deepcopy(model), gates, [BlockEdit(gate.name, "constant", tuple(scale.tolist()))], size
    )
    torch.testing.assert_close(logits(fixed.model, x), as_scale, rtol=1e-4, atol=1e-5)
    assert (fixed.edits[0].folded_into is not None) == folds
    if name == "nf_regnet_b0":  # the block's gain is still applied after the edit
        block = removed.model.get_submodule(gate.module_path.rpartition(".")[0])
        block.attn_gain = 1.0
        assert relative_change(as_ones, logits(removed.model, x)) > 1e-3


def test_a_gate_level_edit_saves_and_loads(tmp_path):
    # Split attention is edited at its gate (a ConstantGate in the module's rsoftmax).
    model = _zoo_model("resnest14d_radix1")
    size = (3, 64, 64)
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(1))
    gates = discover_se_gates(model, size)
    scale = torch.rand(gates[1].channels, generator=torch.Generator().manual_seed(2))
    edits = [
        BlockEdit(gates[0].name, "identity"),
        BlockEdit(gates[1].name, "constant", tuple(scale.tolist())),
    ]
    pruned = prune(copy.deepcopy(model), gates, edits, size)
    assert [e.replacement for e in pruned.edits] == ["ones_gate", "constant_gate"]
    assert pruned.params_removed == -sum(g.channels for g in gates[:2])  # the fixed gates' buffers
    path = save_pruned(pruned.model, pruned.edits, tmp_path / "pruned.safetensors", "resnest14d")
    rebuilt = copy.deepcopy(model)
    apply_saved_edits(rebuilt, [e.to_dict() for e in read_saved_edits(path)])
    from safetensors.torch import load_file

    rebuilt.load_state_dict(load_file(str(path)), strict=True)
    torch.testing.assert_close(logits(rebuilt, x), logits(pruned.model, x), rtol=0, atol=1e-6)


def test_gate_values_are_checked_in_the_model_dtype():
    """1e39 is finite in float64 and +inf in float32: the folded model would score 0%."""
    model = demo()
    loaded = demo_loaded(model)
    rec = _recommendation([{"name": "SE_5_1", "verdict": "constant", "constant_vector": [1e39] * 512}])
    with pytest.raises(RecommendationError, match=r"constant_vector\[0\] is 1e\+39, beyond float32's range"):
        prune_from_recommendation(loaded, rec)
    gates = discover_se_gates(model, DEMO_INPUT)
    half = copy.deepcopy(model).half()
    with pytest.raises(
        PruningError, match=r"holds 100000, beyond what the model's parameters hold \(\+-6\.55e\+04\)"
    ):
        prune(half, gates, [BlockEdit("SE_5_1", "constant", (1e5,) * 512)], DEMO_INPUT)


def test_a_recommendation_for_blocks_of_another_width_is_refused():
    loaded = demo_loaded(demo())
    rec = _recommendation(
        [{"name": "SE_5_1", "verdict": "constant", "channels": 3, "constant_vector": [0.5] * 3}]
    )
    with pytest.raises(PruningError, match="block SE_5_1 has 3 channels there but 512 in this model"):
        prune_from_recommendation(loaded, rec)
