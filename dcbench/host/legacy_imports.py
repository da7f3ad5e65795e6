"""The import paths of dcbench 0.1's flat layout, kept working for one release.

``import dcbench.methods`` (or ``from dcbench.datasets import RealDataset``) still works: a finder
on ``sys.meta_path`` answers each old name with a thin module whose attributes come from the
modules that now hold them, and warns once per old name (:class:`LegacyImportWarning`, a
``DeprecationWarning``, so test runners show it). Plugins should import from :mod:`dcbench.api`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

#: old module -> the modules its names now live in, first match wins
LEGACY_MODULES: dict[str, tuple[str, ...]] = {
    "dcbench.augment": ("dcbench.nn.augment",),
    "dcbench.checkpoint": ("dcbench.method.checkpoint",),
    "dcbench.compare": ("dcbench.report.compare",),
    "dcbench.compat": ("dcbench.host.compat",),
    "dcbench.condensation": ("dcbench.method.condense",),
    "dcbench.core_plugin": ("dcbench.plugins.core",),
    "dcbench.cost": ("dcbench.report.cost",),
    "dcbench.curves": ("dcbench.results.curves", "dcbench.report.curves"),
    "dcbench.data_cache": ("dcbench.data.cache", "dcbench.host.files"),
    "dcbench.datasets": ("dcbench.data.real", "dcbench.data.builtin", "dcbench.data.paths"),
    "dcbench.devices": ("dcbench.host.devices",),
    "dcbench.errors": ("dcbench.host.errors",),
    "dcbench.executors": ("dcbench.run.executors",),
    "dcbench.folder_dataset": ("dcbench.data.paths", "dcbench.data.folders", "dcbench.data.tensor_files"),
    "dcbench.hookspecs": ("dcbench.plugins.hookspecs",),
    "dcbench.identity": ("dcbench.results.identity",),
    "dcbench.importers": ("dcbench.tools.importers",),
    "dcbench.lock": ("dcbench.results.lock",),
    "dcbench.methods": ("dcbench.method.contract",),
    "dcbench.networks": ("dcbench.nn.networks",),
    "dcbench.outputs": ("dcbench.host.outputs",),
    "dcbench.progress": ("dcbench.run.progress",),
    "dcbench.ray_probe": ("dcbench.run.ray_probe",),
    "dcbench.runner": (
        "dcbench.run.grid",
        "dcbench.run.plan",
        "dcbench.run.workers",
        "dcbench.run.cell",
        "dcbench.run.shared",
    ),
    "dcbench.runtime": ("dcbench.host.runtime",),
    "dcbench.safe_pickle": ("dcbench.data.safe_pickle", "dcbench.host.errors"),
    "dcbench.scaffold": ("dcbench.tools.scaffold",),
    "dcbench.schema": ("dcbench.host.schema",),
    "dcbench.seeding": ("dcbench.method.seeding",),
    "dcbench.spec": ("dcbench.run.spec",),
    "dcbench.store": ("dcbench.results.store", "dcbench.results.record", "dcbench.results.runs_table"),
    "dcbench.synthetic": ("dcbench.method.synthetic", "dcbench.host.files"),
    "dcbench.umask": ("dcbench.host.files",),
}


class LegacyImportWarning(DeprecationWarning):
    """An old (0.1) dcbench import path was used; it goes away in the next release."""


class _LegacyModule(types.ModuleType):
    """An old module name: each attribute is looked up in the modules that hold it now."""

    def __init__(self, name: str, homes: Sequence[str]) -> None:
        super().__init__(name, f"dcbench 0.1's {name}, now {', '.join(homes)}")
        self.__homes = tuple(homes)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        for home in self.__homes:
            module = importlib.import_module(home)
            if hasattr(module, attribute):
                return getattr(module, attribute)
        raise AttributeError(
            f"module {self.__name__!r} has no attribute {attribute!r} (its names now live in {', '.join(self.__homes)})"
        )

    def __dir__(self) -> list[str]:
        return sorted({n for home in self.__homes for n in dir(importlib.import_module(home))})


class _LegacyLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        homes = LEGACY_MODULES[spec.name]
        warnings.warn(
            f"{spec.name} is dcbench 0.1's import path; import from {' or '.join(homes)} (plugins: "
            "dcbench.api). The old path goes away in the next release.",
            LegacyImportWarning,
            stacklevel=2,
        )
        return _LegacyModule(spec.name, homes)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _LegacyFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LEGACY_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _LegacyLoader())


def install() -> None:
    """Answer the old module names (idempotent)."""
    if not any(isinstance(finder, _LegacyFinder) for finder in sys.meta_path):
        sys.meta_path.append(_LegacyFinder())
