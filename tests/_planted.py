"""Synthetic seviz stores with planted gate behaviour, for the analysis tests.

Planted blocks (named like the paper's, so the default figure blocks apply):

* ``SE_2_3`` input-dependent but class-agnostic: uniform random per image;
* ``SE_3_4`` constant: one fixed per-channel vector in uniform(0.2, 0.8),
  identical for every image;
* ``SE_4_6`` class-specific: a per-class vector plus small noise;
* ``SE_5_2`` identity: gates in [0.995, 1] (float16 rounds some to 1.0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from seviz.store import BlockInfo, SampleBatch, StoreWriter

CLASSES = ("goldfish", "pug", "plane", "cliff")
BLOCKS = {
    "SE_2_3": BlockInfo("SE_2_3", "layer1.2.se", 2, 3, 16, "se", params=136, flops=1000),
    "SE_3_4": BlockInfo("SE_3_4", "layer2.3.se", 3, 4, 24, "se", params=300, flops=2000),
    "SE_4_6": BlockInfo("SE_4_6", "layer3.5.se", 4, 6, 32, "se", params=528, flops=3000),
    "SE_5_2": BlockInfo("SE_5_2", "layer4.1.se", 5, 2, 40, "se", params=820, flops=4000),
}
AGNOSTIC, CONSTANT, SPECIFIC, IDENTITY = BLOCKS
MODEL = "planted_senet"


def planted_gates(n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels (shuffled, balanced) and float32 gates of the four planted blocks."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    c = {name: info.channels for name, info in BLOCKS.items()}
    class_vectors = rng.uniform(0.1, 0.9, size=(len(CLASSES), c[SPECIFIC]))
    gates = {
        AGNOSTIC: rng.uniform(0.0, 1.0, size=(n, c[AGNOSTIC])),
        CONSTANT: np.broadcast_to(rng.uniform(0.2, 0.8, size=c[CONSTANT]), (n, c[CONSTANT])),
        SPECIFIC: np.clip(class_vectors[labels] + rng.normal(0.0, 0.02, size=(n, c[SPECIFIC])), 0.0, 1.0),
        IDENTITY: rng.uniform(0.995, 1.0, size=(n, c[IDENTITY])),
    }
    return labels, {name: np.asarray(g, dtype=np.float32) for name, g in gates.items()}


def write_store(
    path: Path,
    labels: np.ndarray,
    gates: Mapping[str, np.ndarray],
    blocks: Sequence[BlockInfo] | None = None,
    classes: Sequence[str] = CLASSES,
    batch: int = 64,
    complete: bool = True,
    dtype: str = "float16",
) -> Path:
    """Write ``gates`` (name -> (N, C)) with class indices ``labels`` as a seviz store."""
    blocks = list(blocks) if blocks is not None else [BLOCKS[name] for name in gates]
    attrs = {
        "model": MODEL,
        "model_spec": "tests/_planted.py",
        "weights_sha256": "0" * 64,
        "created": "2024-01-01T00:00:00+00:00",
        "classes": [{"index": i, "name": name, "id": f"c{i}"} for i, name in enumerate(classes)],
    }
    n = len(labels)
    with StoreWriter(path, blocks, attrs, dtype=dtype) as writer:
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            lab = np.asarray(labels[start:stop])
            writer.append(
                SampleBatch(
                    label=lab,
                    class_name=[classes[i] for i in lab],
                    path=[f"img{i}.png" for i in range(start, stop)],
                    topk_index=np.zeros((stop - start, 5), dtype=np.int32),
                    topk_prob=np.zeros((stop - start, 5), dtype=np.float32),
                    gates={name: g[start:stop] for name, g in gates.items()},
                    consumed=stop - start,
                )
            )
        writer.close(complete=complete)
    return path


def write_planted_store(path: Path, n: int = 400, seed: int = 0, **kwargs) -> Path:
    """A store holding the four planted blocks."""
    labels, gates = planted_gates(n, seed)
    return write_store(path, labels, gates, **kwargs)
