"""A tiny, valid, complete seviz store with every dataset and root attribute, to corrupt in tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from seviz.store import BlockInfo, SampleBatch, StoreWriter

TINY_BLOCKS = (
    BlockInfo("SE_2_1", "layer1.0.se.gate", 2, 1, 4, "se", params=40, flops=100),
    BlockInfo("SE_3_1", "layer2.0.se.gate", 3, 1, 6, "se", params=60, flops=200),
)
TINY_CLASSES = ("cat", "dog")
TINY_ATTRS = {
    "model": "tiny_senet",
    "model_spec": "tiny_senet",
    "weights_source": "random",
    "weights_sha256": "ab" * 32,
    "weights_file_sha256": None,
    "num_classes": 2,
    "preprocessing": {"input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5]},
    "classes": [{"index": i, "name": name, "id": None} for i, name in enumerate(TINY_CLASSES)],
    "command": "seviz record --model tiny_senet",
    "created": "2024-01-01T00:00:00+00:00",
    "precision": "fp32",
    "gate_error": {"precision": "fp32", "max_abs": 0.0, "mean_abs": 0.0, "exact": True},
    "run_config": {"model": "tiny_senet", "images": 13},
    "seviz_version": "0.1.0",
    "torch_version": "2",
    "timm_version": "1",
    "h5py_version": "3",
}
TINY_SAMPLES = 12  # and one skipped file


def write_tiny_store(path: Path, samples: int = TINY_SAMPLES, seed: int = 0) -> Path:
    """``samples`` images of two classes (alternating), gates uniform in [0.05, 0.95], one skipped file."""
    rng = np.random.default_rng(seed)
    labels = np.arange(samples) % 2
    with StoreWriter(path, TINY_BLOCKS, TINY_ATTRS, path_length=32, name_length=8) as writer:
        for start, stop in ((0, samples // 2), (samples // 2, samples)):
            n = stop - start
            writer.append(
                SampleBatch(
                    label=labels[start:stop],
                    class_name=[TINY_CLASSES[i] for i in labels[start:stop]],
                    path=[f"/data/{TINY_CLASSES[labels[i]]}/{i:03d}.png" for i in range(start, stop)],
                    topk_index=np.tile(np.arange(5, dtype=np.int32) % 2, (n, 1)),
                    topk_prob=np.full((n, 5), 0.2, dtype=np.float32),
                    gates={b.name: rng.uniform(0.05, 0.95, (n, b.channels)) for b in TINY_BLOCKS},
                    consumed=n + (1 if start == 0 else 0),
                    skipped=[("/data/cat/bad.png", "OSError: truncated")] if start == 0 else [],
                )
            )
        writer.close(complete=True, final_attrs={"finished": "2024-01-01T00:01:00+00:00"})
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
