"""Shared test set-up.

Tests run torch on one thread by default: our models are tiny, and on a
2-core machine several threads per process mostly contend. Set
SEVIZ_TEST_THREADS to change it.
"""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    import torch

    torch.set_num_threads(int(os.environ.get("SEVIZ_TEST_THREADS", "1")))
    yield
