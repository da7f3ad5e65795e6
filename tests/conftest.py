from __future__ import annotations

import importlib.metadata
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged dataset copies go to a temp cache, never the user's ~/.cache; no DCBENCH_* leaks in."""
    monkeypatch.setenv("DCBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "dcbench-cache"))
    for name in [k for k in os.environ if k.startswith("DCBENCH_") and k != "DCBENCH_CACHE"]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Every test starts and ends with no plugin registry and no dataset cached in this process."""
    from dcbench.run.shared import reset_caches

    reset_caches()
    yield
    reset_caches()


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FashionMNIST in torchvision's layout: 10 classes x 12 train images, 4 test images each."""
    from dcbench.testing import write_fashion_mnist_idx

    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist_idx(root, per_class=12, test_per_class=4, seed=0)
    return root


REAL_ENTRY_POINTS = importlib.metadata.entry_points


@pytest.fixture
def extra_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install plugin modules written by a test as extra entry points of the ``dcbench`` group."""
    monkeypatch.syspath_prepend(str(tmp_path))
    added: list[importlib.metadata.EntryPoint] = []

    def add(name: str, source: str) -> None:
        module = f"dcbench_test_{name}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(module, None)
        added.append(importlib.metadata.EntryPoint(name, module, "dcbench"))

    def entry_points(**kwargs):
        return (
            [*REAL_ENTRY_POINTS(**kwargs), *added] if kwargs.get("group") == "dcbench" else REAL_ENTRY_POINTS(**kwargs)
        )

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return add
