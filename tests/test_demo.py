"""seviz/demo.py and seviz/demo_model.py: the offline main job on the shipped model and images."""

from __future__ import annotations

import json

import pytest

from seviz.models.demo_network import DEMO_MODEL_NAME, build_demo_model, load_config, sample_dir, weights_path

needs_weights = pytest.mark.skipif(
    not weights_path().is_file(), reason="demo weights are not shipped in this checkout"
)


def test_demo_model_has_se_resnet50_block_structure():
    from seviz.se import discover_se_gates

    gates = discover_se_gates(build_demo_model(), (3, 32, 32))
    expected = [
        f"SE_{s}_{b}" for s, n in zip((2, 3, 4, 5), (3, 4, 6, 3), strict=True) for b in range(1, n + 1)
    ]
    assert [g.name for g in gates] == expected
    assert {g.name[:4]: g.channels for g in gates} == {"SE_2": 64, "SE_3": 128, "SE_4": 256, "SE_5": 512}


def test_shipped_sample_has_every_class():
    config = load_config()
    folders = sorted(p.name for p in sample_dir().iterdir() if p.is_dir())
    assert folders == sorted(config["class_names"])
    assert all(len(list((sample_dir() / c).glob("*.jpg"))) == 100 for c in folders)


@needs_weights
def test_shipped_weights_classify_the_sample(tmp_path):
    """The trained model is real: high accuracy on the shipped test images (a random one gets ~10%)."""
    from seviz.data import find_images
    from seviz.models import load_model
    from seviz.pruning import evaluate

    loaded = load_model(DEMO_MODEL_NAME)
    assert loaded.weights_source == "demo"
    items = find_images(sample_dir(), loaded, images_per_class=30)
    report = evaluate(loaded, load_model(DEMO_MODEL_NAME).model, items, latency_repeats=0, progress=False)
    assert report.original.top1 >= 0.75
    assert "cat" in loaded.class_names and "dog" in loaded.class_names


@needs_weights
def test_demo_writes_verified_results(tmp_path):
    from seviz.demo import run_demo
    from seviz.pruning import recommend

    out = tmp_path / "demo"
    result = run_demo(out, images_per_class=4, progress=False)
    assert result.store.is_file()
    # The recommendation is the one `seviz recommend` gives for the same store.
    assert (out / "rec.json").read_text() == recommend(result.store).to_json()
    assert (out / "rec.md").is_file() and (out / "figures" / "depth.png").is_file()
    evaluation = json.loads(result.evaluation.read_text())
    assert {"original", "edited", "agreement_top1", "kl"} <= set(evaluation)
    assert len(evaluation["per_block"]) == 16
    stage5 = json.loads(result.stage5.read_text())
    assert stage5["edited"]["params"] < stage5["original"]["params"]
    summary = result.summary()
    assert f"seviz app {result.store}" in summary and "SE_5_2" in summary
    with pytest.raises(FileExistsError, match="`overwrite=True`"):
        run_demo(out, images_per_class=4, progress=False)
