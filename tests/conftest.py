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
