"""The paper's findings, checked on the trained demo model (issue: the offline demo model).

These tests use the shipped weights and sample; the pruning check uses the full
CIFAR-10 test split from ``../shared/datasets/cifar10-jpeg.tar.gz`` when it is
there (10,000 images) and the shipped 1,000-image sample otherwise.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from seviz.models.demo_network import DEMO_MODEL_NAME, sample_dir, weights_path

SHARED_TARBALL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg.tar.gz"

pytestmark = pytest.mark.skipif(
    not weights_path().is_file(), reason="demo weights are not shipped in this checkout"
)


@pytest.fixture(scope="module")
def demo_analysis(tmp_path_factory):
    from seviz.analysis import compute_statistics
    from seviz.pruning import recommend
    from seviz.recording import record

    store = tmp_path_factory.mktemp("science") / "demo.h5"
    record(DEMO_MODEL_NAME, sample_dir(), store, batch_size=100, workers=0, progress=False)
    stats = compute_statistics(store)
    return store, stats, recommend(stats)


@pytest.fixture(scope="module")
def test_split(tmp_path_factory) -> Path:
    """The full CIFAR-10 test split when the shared tarball is there, else the shipped sample."""
    if not SHARED_TARBALL.is_file():
        return sample_dir()
    root = tmp_path_factory.mktemp("cifar10")
    with tarfile.open(SHARED_TARBALL) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("test/") and m.isfile()]
        tar.extractall(root, members=members, filter="data")
    return root / "test"


def _stage_mean(stats, stage: int) -> float:
    values = [stats.block(n).specificity.accuracy for n in stats.block_names if n.startswith(f"SE_{stage}_")]
    return float(np.mean(values))


def test_class_specificity_rises_with_depth(demo_analysis):
    _store, stats, _rec = demo_analysis
    stage2, stage5 = _stage_mean(stats, 2), _stage_mean(stats, 5)
    chance = stats.block("SE_2_1").specificity.chance
    # The paper: early gates are class-agnostic, deep ones class-specific.
    assert stage5 > stage2 + 0.15, (stage2, stage5)
    assert stage5 > 3 * chance


def test_recommended_pruning_costs_little_and_less_than_keep_blocks(demo_analysis, test_split):
    from seviz.data import find_images
    from seviz.models import load_model
    from seviz.pruning import evaluate, prune_blocks, prune_from_recommendation

    _store, _stats, recommendation = demo_analysis
    flagged = [b for b in recommendation.blocks if b.verdict != "keep"]
    kept = [b for b in recommendation.blocks if b.verdict == "keep"]
    if not flagged:
        pytest.skip("no block is flagged identity or constant on the demo model with default thresholds")
    loaded = load_model(DEMO_MODEL_NAME)
    items = find_images(test_split, loaded)
    pruned = prune_from_recommendation(loaded, recommendation.to_dict())
    report = evaluate(loaded, pruned, items, batch_size=250, latency_repeats=0, progress=False)
    cost = report.original.top1 - report.edited.top1
    assert cost <= 0.005, f"pruning {[b.name for b in flagged]} cost {100 * cost:.2f} points"

    # The same number of `keep` blocks (the deepest ones, where SE parameters sit) costs more.
    victims = [b.name for b in kept][-len(flagged) :]
    if not victims:
        pytest.skip("every block is flagged; there are no keep blocks to compare with")
    control = prune_blocks(loaded, victims)
    control_report = evaluate(loaded, control, items, batch_size=250, latency_repeats=0, progress=False)
    control_cost = control_report.original.top1 - control_report.edited.top1
    assert control_cost > cost, (victims, control_cost, cost)


def test_stage5_experiment_removes_stage5_parameters(demo_analysis):
    from seviz.data import find_images
    from seviz.models import load_model
    from seviz.pruning import evaluate, prune_blocks

    store_path, _stats, _rec = demo_analysis
    from seviz.store import open_store

    with open_store(store_path) as store:
        stage5_params = sum(b.params for b in store.blocks.values() if b.name.startswith("SE_5_"))
    loaded = load_model(DEMO_MODEL_NAME)
    pruned = prune_blocks(loaded, "SE_5_*")
    items = find_images(sample_dir(), loaded, images_per_class=20)
    report = evaluate(loaded, pruned, items, batch_size=100, latency_repeats=0, progress=False)
    assert report.original.params - report.edited.params == stage5_params
    assert report.edited.flops < report.original.flops
    assert report.agreement_top1 < 1.0 or report.kl > 0  # the edit is real
