"""Shared test set-up.

Tests run torch on one thread on a developer's machine (where other work
shares the cores) and on every core in CI (where the suite runs alone). Set
SEVIZ_TEST_THREADS to choose.
"""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    import torch

    default = str(os.cpu_count() or 1) if os.environ.get("CI") else "1"
    torch.set_num_threads(int(os.environ.get("SEVIZ_TEST_THREADS", default)))
    yield


@pytest.fixture()
def live_demo_weights(tmp_path):
    """Demo-model weights (a file) whose residual branches are live, so every SE gate matters.

    timm zero-initialises each block's last BatchNorm, which would make every SE branch
    irrelevant in a random-weight model.
    """
    import torch
    from safetensors.torch import save_file

    from seviz.models.demo_network import build_demo_model

    torch.manual_seed(0)
    model = build_demo_model()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    path = tmp_path / "live-demo-weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)
