"""The host's core plugin: the built-in datasets and architectures.

Registered through the same hooks a third-party plugin would implement.
"""

from __future__ import annotations

from collections.abc import Callable

from dcbench import hookimpl
from dcbench.data.builtin import BUILTIN_DATASETS
from dcbench.data.real import DatasetSpec
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, Architecture


@hookimpl
def dcbench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    for spec in BUILTIN_DATASETS:
        register(spec)


@hookimpl
def dcbench_register_architectures(register: Callable[[Architecture], None]) -> None:
    for arch in BUILTIN_ARCHITECTURES:
        register(arch)
