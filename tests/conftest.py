from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged dataset copies go to a temp cache, never the user's ~/.cache; no DCBENCH_* leaks in."""
    monkeypatch.setenv("DCBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "dcbench-cache"))
    for name in [k for k in os.environ if k.startswith("DCBENCH_") and k != "DCBENCH_CACHE"]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FashionMNIST in torchvision's layout: 10 classes x 12 train images, 4 test images each."""
    from dcbench.testing import write_fashion_mnist_idx

    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist_idx(root, per_class=12, test_per_class=4, seed=0)
    return root
