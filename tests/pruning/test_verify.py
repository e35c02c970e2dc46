"""Tests for seviz.pruning.verify: figures checked against hand computation on tiny models.

Also: its report reader and progress callback, and the ``seviz recommend`` command line
that :func:`seviz.pruning.recommend_command` writes.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from seviz.cli import build_parser
from seviz.models import LoadedModel
from seviz.models.demo_network import CIFAR10_CLASSES, DEMO_MODEL_NAME, build_demo_model, demo_pretrained_cfg
from seviz.pruning import (
    BlockEdit,
    EvaluationReport,
    Thresholds,
    find_evaluations,
    prune,
    prune_blocks,
    read_evaluation,
    recommend_command,
    threshold_flag,
)
from seviz.pruning.verify import EvaluationError, compare_models, count_flops, count_params, evaluate
from seviz.se import discover_se_gates

INPUT = (3, 8, 8)


class TinySE(nn.Module):
    """Hand-written SE block: x * sigmoid(fc2(relu(fc1(pool(x)))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, 2, 1)
        self.fc2 = nn.Conv2d(2, channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.se = TinySE(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.se(self.bn(self.conv(x))))


class TinyNet(nn.Module):
    """Two SE blocks, 4 channels, 10 classes, on 8x8 inputs.

    Multiply-accumulates per image: stem 4*64*27 = 6912; each block's conv
    4*64*36 = 9216 and SE 2*4*64 (pool, scale) + 8 + 8 (FCs) = 528; head 40.
    Parameters: stem 108, each block 144 + 8 + 10 + 12 = 174, head 50.
    """

    FLOPS = 6912 + 2 * (9216 + 528) + 40
    PARAMS = 108 + 2 * 174 + 50
    SE_FLOPS = 528
    SE_PARAMS = 22

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(Block(4), Block(4))
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def tiny(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    model = TinyNet()
    with torch.no_grad():
        for block in model.blocks:
            block.bn.weight.uniform_(0.5, 1.5)
            block.bn.bias.normal_(0.0, 0.5)
    return model.eval()


def images(count: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, *INPUT, generator=torch.Generator().manual_seed(seed))


def split(x: torch.Tensor, labels: torch.Tensor | None, sizes=(3, 3, 2)):
    start = 0
    for size in sizes:
        yield x[start : start + size], None if labels is None else labels[start : start + size]
        start += size


def test_identical_models_agree_fully_with_zero_kl():
    model = tiny()
    x = images(8)
    report = compare_models(model, copy.deepcopy(model), split(x, None), input_size=INPUT, latency_repeats=0)
    assert report.agreement_top1 == 1.0
    assert report.kl < 1e-12
    assert report.images == 8 and report.labelled == 0
    assert report.original.top1 is None and report.edited.top5 is None
    assert report.original.params == report.edited.params == TinyNet.PARAMS
    assert report.original.flops == report.edited.flops == TinyNet.FLOPS
    assert report.original.latency_ms is None


def test_accuracy_agreement_and_kl_match_hand_computation():
    original, edited = tiny(0), tiny(0)
    with torch.no_grad():  # a different but related model
        noise = torch.randn(edited.head.weight.shape, generator=torch.Generator().manual_seed(5))
        edited.head.weight.add_(0.3 * noise)
    x = images(8)
    with torch.no_grad():
        p, q = original(x).double(), edited(x).double()
    ranking = torch.argsort(p, dim=1, descending=True)
    # Labels at known ranks of the original's prediction: 1st, 3rd, 10th, 6th, repeated.
    ranks = [0, 2, 9, 5] * 2
    labels = torch.stack([ranking[i, r] for i, r in enumerate(ranks)])
    report = compare_models(original, edited, split(x, labels), input_size=INPUT, latency_repeats=0)

    assert report.original.top1 == pytest.approx(2 / 8)
    assert report.original.top5 == pytest.approx(4 / 8)
    top = np.argsort(-q.numpy(), axis=1)
    assert report.edited.top1 == pytest.approx(float(np.mean(top[:, 0] == labels.numpy())))
    assert report.edited.top5 == pytest.approx(float(np.mean((top[:, :5] == labels.numpy()[:, None]).any(1))))
    assert report.agreement_top1 == pytest.approx(float(np.mean(p.argmax(1).numpy() == q.argmax(1).numpy())))
    log_p, log_q = torch.log_softmax(p, 1).numpy(), torch.log_softmax(q, 1).numpy()
    expected_kl = float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)))
    assert expected_kl > 1e-4
    # Batches of 3, 3, 2 against one of 8: float32 rounding differs slightly.
    assert report.kl == pytest.approx(expected_kl, rel=1e-4)
    assert report.labelled == 8


def test_params_and_flops_of_a_pruned_model():
    model = tiny()
    gates = discover_se_gates(model, INPUT)
    assert count_flops(model, INPUT) == TinyNet.FLOPS
    assert count_params(model) == TinyNet.PARAMS
    removed = prune(copy.deepcopy(model), gates, [BlockEdit(gates[0].name)], INPUT).model
    assert count_flops(removed, INPUT) == TinyNet.FLOPS - TinyNet.SE_FLOPS
    assert count_params(removed) == TinyNet.PARAMS - TinyNet.SE_PARAMS
    # Unfolded, a constant block is a ChannelScale: 4 stored values, 4 x 64 multiplies.
    constant = (0.5, 0.6, 0.7, 0.8)
    edit = BlockEdit(gates[0].name, "constant", constant)
    scaled = prune(copy.deepcopy(model), gates, [edit], INPUT, fold=False)
    assert count_flops(scaled.model, INPUT) == TinyNet.FLOPS - TinyNet.SE_FLOPS + 4 * 64
    assert count_params(scaled.model) == TinyNet.PARAMS - TinyNet.SE_PARAMS + 4


def test_per_block_removal_deltas_and_no_hooks_left():
    model = tiny()
    with torch.no_grad():  # plant an identity first block: its removal changes nothing
        model.blocks[0].se.fc2.weight.mul_(1e-6)
        model.blocks[0].se.fc2.bias.fill_(20.0)
    gates = discover_se_gates(model, INPUT)
    edited = prune(copy.deepcopy(model), gates, [BlockEdit(gates[0].name)], INPUT)
    x = images(8)
    with torch.no_grad():
        labels = model(x).argmax(1)
    labels[:2] = (labels[:2] + 1) % 10  # two wrong: top-1 0.75
    report = compare_models(
        model, edited, split(x, labels), input_size=INPUT, gates=gates, per_block=True, latency_repeats=1
    )
    assert report.original.top1 == pytest.approx(0.75)
    assert report.edits and report.edits[0]["name"] == gates[0].name
    identity, normal = report.per_block
    assert (identity.name, normal.name) == (gates[0].name, gates[1].name)
    assert identity.delta_top1 == pytest.approx(0.0)
    assert identity.agreement_top1 == 1.0
    assert identity.kl < 1e-10
    assert normal.kl > 1e-6
    with torch.no_grad():
        x_removed = copy.deepcopy(model)
        x_removed.blocks[1].se = nn.Identity()
        expected = float((x_removed(x).argmax(1) == labels).float().mean())
    assert normal.top1 == pytest.approx(expected)
    assert normal.delta_top1 == pytest.approx(expected - 0.75)
    assert report.edited.latency_ms > 0 and report.latency_repeats == 1
    assert not any(m._forward_hooks for m in model.modules())
    assert not model.training


def test_hooks_are_removed_when_a_forward_pass_fails():
    model = tiny()
    edited = copy.deepcopy(model)
    bad = [(torch.randn(2, 5, 8, 8), None)]  # wrong channel count
    with pytest.raises(RuntimeError):
        compare_models(model, edited, bad, input_size=INPUT, per_block=True, latency_repeats=0)
    assert not any(m._forward_hooks for m in model.modules())


def test_evaluate_on_image_files_writes_the_report(tmp_path, monkeypatch):
    from PIL import Image

    from seviz.data import find_images

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for index in range(2):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{index}.png")
    (tmp_path / "dog" / "9_broken.png").write_bytes(b"not an image")
    torch.manual_seed(0)
    loaded = LoadedModel(
        build_demo_model().eval(),
        DEMO_MODEL_NAME,
        DEMO_MODEL_NAME,
        "random",
        "0" * 64,
        CIFAR10_CLASSES,
        None,
        demo_pretrained_cfg(),
    )
    items = find_images(tmp_path, loaded)
    pruned = prune_blocks(loaded, "SE_5_*")
    import seviz.data.loader

    decoding = []
    real_iterate = seviz.data.iterate_batches

    def iterate_batches(*args, **kwargs):
        decoding.append(kwargs["workers"])
        return real_iterate(*args, **kwargs)

    monkeypatch.setattr(seviz.data, "iterate_batches", iterate_batches)
    report = evaluate(loaded, pruned, items, batch_size=3, latency_repeats=1, progress=False)
    assert decoding and set(decoding) == {0}  # on CPU images are decoded inline by default

    assert report.images == 4 and report.labelled == 4
    assert [p.endswith("9_broken.png") for p, _ in report.skipped] == [True]
    data = json.loads(report.to_json())
    for side in ("original", "edited"):
        assert {"top1", "top5", "params", "flops"} <= set(data[side])
    assert data["edited"]["params"] == data["original"]["params"] - sum(
        g.params for g in discover_se_gates(loaded.model, (3, 32, 32)) if g.name.startswith("SE_5_")
    )
    assert data["edited"]["flops"] < data["original"]["flops"]
    assert 0.0 <= data["agreement_top1"] <= 1.0 and data["kl"] >= 0.0
    assert data["model"] == DEMO_MODEL_NAME and len(data["edits"]) == 3
    assert "top-1 agreement" in report.summary()
    path = report.write_json(tmp_path / "report.json")
    with pytest.raises(FileExistsError):
        report.write_json(path)


def test_bad_inputs_are_clear_errors(tmp_path):
    model = tiny()
    with pytest.raises(EvaluationError, match="original model object"):
        compare_models(model, model, split(images(8), None), input_size=INPUT)
    with pytest.raises(EvaluationError, match="no image could be read"):
        compare_models(model, copy.deepcopy(model), [], input_size=INPUT)
    loaded = LoadedModel(model, "tiny", "tiny", "random", "", tuple(str(i) for i in range(10)), None, {})
    with pytest.raises(EvaluationError, match="no images"):
        evaluate(loaded, copy.deepcopy(model), [])


# ---------------------------------------------------------------- reading reports, progress, commands


def _batches(count: int):
    generator = torch.Generator().manual_seed(0)
    for _ in range(count):
        yield torch.randn(4, 3, generator=generator), torch.tensor([0, 1, 2, 0])


def _report() -> EvaluationReport:
    torch.manual_seed(0)
    original = nn.Linear(3, 3)
    edited = nn.Linear(3, 3)
    return compare_models(original, edited, _batches(3), input_size=(3,), latency_repeats=0)


def test_compare_models_reports_progress_batch_by_batch():
    torch.manual_seed(0)
    seen = []
    compare_models(
        nn.Linear(3, 3),
        nn.Linear(3, 3),
        _batches(3),
        input_size=(3,),
        latency_repeats=0,
        total_batches=3,
        on_batch=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_an_evaluation_report_reads_back_as_written(tmp_path):
    report = _report()
    path = report.write_json(tmp_path / "evaluation.json")
    again = read_evaluation(path)
    assert again.to_dict() == report.to_dict()
    assert again.to_json() == report.to_json()


def test_evaluations_are_found_among_other_json_files(tmp_path):
    _report().write_json(tmp_path / "evaluation.json")
    _report().write_json(tmp_path / "stage5.json")
    (tmp_path / "rec.json").write_text(json.dumps({"seviz_recommendation": 1}))
    (tmp_path / "broken.json").write_text("{")
    assert [p.name for p in find_evaluations(tmp_path)] == ["evaluation.json", "stage5.json"]


def test_reading_something_else_is_a_clear_error(tmp_path):
    (tmp_path / "rec.json").write_text(json.dumps({"seviz_recommendation": 1}))
    with pytest.raises(EvaluationError, match="not a seviz evaluation.*seviz evaluate"):
        read_evaluation(tmp_path / "rec.json")
    data = _report().to_dict()
    data["seviz_evaluation"] = 99
    with pytest.raises(EvaluationError, match="format 99"):
        EvaluationReport.from_dict(data)
    del data["original"]
    data["seviz_evaluation"] = 1
    with pytest.raises(EvaluationError, match="not a complete seviz evaluation"):
        EvaluationReport.from_dict(data)
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(EvaluationError, match="not JSON"):
        read_evaluation(tmp_path / "x.json")


def test_the_recommend_command_is_what_the_cli_parses_back():
    thresholds = Thresholds(identity_max_deviation=0.0005, near_one=0.999, constant_max_dependence=0.25)
    words = recommend_command("a.h5", thresholds)
    assert words[:3] == ["seviz", "recommend", "a.h5"] and "--identity-min-near-one" not in words
    args = build_parser().parse_args(words[1:])
    parsed = {f: getattr(args, f) for f in ("identity_max_deviation", "identity_min_near_one", "near_one")}
    assert parsed == {"identity_max_deviation": 0.0005, "identity_min_near_one": None, "near_one": 0.999}
    assert recommend_command("a.h5") == ["seviz", "recommend", "a.h5"]
    # Every threshold has its option in `seviz recommend`.
    options = {
        a.option_strings[0]
        for a in build_parser()._subparsers._group_actions[0].choices["recommend"]._actions
        if a.option_strings
    }
    assert {threshold_flag(f) for f in Thresholds.__dataclass_fields__} <= options
