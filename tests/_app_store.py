"""A planted app store shared by the app's AppTest and browser tests.

Blocks with known behaviour: SE_2_3 uniform noise (class-agnostic), SE_3_4 one fixed
vector (constant), SE_4_6 one centre per class (class-specific), SE_5_2 near one
(identity).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seviz.store import BlockInfo, SampleBatch, StoreWriter, write_attributions

CLASSES = ("goldfish", "pug", "airliner")
BLOCKS = (
    BlockInfo("SE_1_1", "stem.se", 1, 1, 8, "se", params=40, flops=100),
    BlockInfo("SE_2_3", "layer1.2.se", 2, 3, 16, "se", params=136, flops=1000),
    BlockInfo("SE_3_4", "layer2.3.se", 3, 4, 12, "se", params=300, flops=2000),
    BlockInfo("SE_4_6", "layer3.5.se", 4, 6, 24, "se", params=528, flops=3000),
    BlockInfo("SE_5_2", "layer4.1.se", 5, 2, 20, "se", params=820, flops=4000),
)
PAPER_PRESENT = ["SE_2_3", "SE_3_4", "SE_4_6", "SE_5_2"]
IDENTITY, CONSTANT = "SE_5_2", "SE_3_4"


def write_app_store(
    path: Path,
    n: int = 240,
    seed: int = 0,
    blocks: tuple[BlockInfo, ...] = BLOCKS,
    model: str = "planted_senet",
    complete: bool = True,
    attributions: bool = False,
    classes: tuple[str, ...] = CLASSES,
    images: bool = False,
    planted: tuple[str, int, int, int] | None = None,
) -> Path:
    """A store with the planted blocks above (and one skipped file); returns its path.

    With ``images``, every sample's image (a small PNG whose colour is its index)
    is written beside the store; otherwise the stored paths lead nowhere.
    ``planted=(block, channel, high, low)`` gives sample ``high`` the channel's
    only gate of 1 and sample ``low`` its only gate of 0 (use a uniform block).
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(classes))
    width = {b.name: b.channels for b in blocks}
    centres = rng.uniform(0.1, 0.9, size=(len(classes), width.get("SE_4_6", 1)))
    behaviour = {
        "SE_1_1": lambda: rng.uniform(0.0, 1.0, (n, width["SE_1_1"])),
        "SE_2_3": lambda: rng.uniform(0.0, 1.0, (n, width["SE_2_3"])),
        "SE_3_4": lambda: np.broadcast_to(rng.uniform(0.2, 0.8, width["SE_3_4"]), (n, width["SE_3_4"])),
        "SE_4_6": lambda: np.clip(centres[labels] + rng.normal(0.0, 0.02, (n, width["SE_4_6"])), 0.0, 1.0),
        "SE_5_2": lambda: rng.uniform(0.998, 1.0, (n, width["SE_5_2"])),
    }
    gates = {b.name: np.asarray(behaviour[b.name](), dtype=np.float32) for b in blocks}
    if planted is not None:
        block, channel, high, low = planted
        column = gates[block][:, channel]
        column[:] = np.clip(column, 0.001, 0.999)
        column[high], column[low] = 1.0, 0.0
    attrs = {
        "model": model,
        "model_spec": "tests/test_app.py",
        "weights_source": "random",
        "weights_sha256": "ab" * 32,
        "precision": "fp32",
        "created": "2024-01-01T00:00:00+00:00",
        "preprocessing": {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406]},
        "gate_error": {"max_abs": 0.0},
        "classes": [{"index": i, "name": c, "id": f"n0000000{i}"} for i, c in enumerate(classes)],
    }
    with StoreWriter(path, list(blocks), attrs, dtype="float32") as writer:
        half = n // 2
        for start, stop, skipped in (
            (0, half, [("broken.jpg", "cannot identify image file")]),
            (half, n, []),
        ):
            if not complete and start:
                break
            lab = labels[start:stop]
            writer.append(
                SampleBatch(
                    label=lab,
                    class_name=[classes[i] for i in lab],
                    path=[f"img{i}.png" for i in range(start, stop)],
                    topk_index=np.zeros((stop - start, 5), dtype=np.int32),
                    topk_prob=np.zeros((stop - start, 5), dtype=np.float32),
                    gates={name: g[start:stop] for name, g in gates.items()},
                    consumed=stop - start + len(skipped),
                    skipped=skipped,
                )
            )
        writer.close(complete=complete)
    if attributions:
        tables = {
            b.name: np.asarray(rng.normal(size=(len(classes), b.channels)), dtype=np.float32) for b in blocks
        }
        write_attributions(
            path, tables, classes, {"method": "planted", "images": n, "weights_sha256": "ab" * 32}
        )
    if images:
        from PIL import Image

        for i in range(n):
            colour = (i % 256, (7 * i) % 256, (13 * i) % 256)
            Image.new("RGB", (24, 24), colour).save(path.parent / f"img{i}.png")
    return path


def write_evaluation(path: Path, blocks: tuple[BlockInfo, ...] = BLOCKS, images: int = 240) -> Path:
    """A ``seviz evaluate --json`` report of the planted verdicts' edits (SE_3_4 folded, SE_5_2 removed).

    Per-block deltas: removing a deeper block alone costs more (SE_5_2, the identity block, nothing).
    """
    from seviz.pruning.verify import BlockRemoval, EvaluationReport, ModelFigures

    edits = (
        {
            "name": CONSTANT,
            "module_path": "layer2.3.se",
            "action": "constant",
            "replacement": "channel_scale",
            "folded_into": "layer2.3.bn3",
            "channels": 12,
            "channel_dim": 1,
            "gate_shape": [12, 1, 1],
        },
        {
            "name": IDENTITY,
            "module_path": "layer4.1.se",
            "action": "identity",
            "replacement": "identity",
            "folded_into": None,
            "channels": 20,
            "channel_dim": 1,
            "gate_shape": [20, 1, 1],
        },
    )
    deltas = {"SE_1_1": -0.004, "SE_2_3": -0.01, "SE_3_4": 0.0, "SE_4_6": -0.12, "SE_5_2": 0.0}
    report = EvaluationReport(
        original=ModelFigures(top1=0.8, top5=0.95, params=10_000, flops=2_000_000, latency_ms=5.0),
        edited=ModelFigures(top1=0.79, top5=0.95, params=8_880, flops=1_994_000, latency_ms=4.8),
        agreement_top1=0.97,
        kl=0.0123,
        images=images,
        labelled=images,
        per_block=tuple(
            BlockRemoval(b.name, b.module, 0.8 + deltas[b.name], 0.95, deltas[b.name], 0.0, 0.9, 0.05)
            for b in blocks
        ),
        model="planted_senet",
        edits=edits,
    )
    return report.write_json(path, overwrite=True)
