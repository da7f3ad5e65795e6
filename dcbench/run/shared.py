"""What one process loads once and every cell it runs shares: the plugin registry and the real
datasets (read, moved to the device, content-hashed). Each worker process has its own copies.

:func:`forget_data` drops the datasets (a method modified one in place: the next cell reloads it);
:func:`reset_caches` drops everything, e.g. after a test changed the installed plugins or files.
"""

from __future__ import annotations

import functools
from pathlib import Path

from dcbench.data.paths import DatasetSource
from dcbench.data.real import RealDataset
from dcbench.data.zca import zca_whitened
from dcbench.plugins import Registry, load_plugins


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The plugins loaded in this process (once)."""
    return load_plugins()


@functools.lru_cache(maxsize=2)
def loaded_dataset(
    name: str, data_root: str | None, source: DatasetSource | None = None, zca: bool = False
) -> RealDataset:
    """A dataset as read (on the CPU): a registered one from ``data_root``, or one given by path;
    ZCA-whitened (:mod:`dcbench.data.zca`) when ``zca``."""
    if zca:
        return zca_whitened(loaded_dataset(name, data_root, source))
    if source is not None:  # an image folder or a .pt/.npz file
        return source.load()
    return registry().dataset(name).loader(Path(data_root) if data_root else None)


@functools.lru_cache(maxsize=2)
def dataset_on(
    name: str, data_root: str | None, device: str, source: DatasetSource | None = None, zca: bool = False
) -> RealDataset:
    """:func:`loaded_dataset` on ``device``."""
    return loaded_dataset(name, data_root, source, zca).to(device)


@functools.lru_cache(maxsize=16)
def dataset_fingerprint(
    name: str, data_root: str | None, source: DatasetSource | None = None, zca: bool = False
) -> str:
    """The content hash of a dataset (as whitened, with ``zca``), once per dataset and process."""
    real = loaded_dataset(name, data_root, source, zca)
    return fingerprint_of(real)


def fingerprint_of(real: RealDataset) -> str:
    """The content hash of ``real``'s tensors as they are now."""
    return real.content_hash()


def forget_data() -> None:
    """Drop every cached dataset: the next cell reads its data again."""
    for cache in (loaded_dataset, dataset_on, dataset_fingerprint):
        cache.cache_clear()


def reset_caches() -> None:
    """Drop the registry and every dataset: the next cell loads plugins and data afresh."""
    registry.cache_clear()
    forget_data()
