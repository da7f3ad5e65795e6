"""Hook specifications of dcbench. Every hook is prefixed ``dcbench_`` so that a typo in a plugin
(``dcbench_regsiter_methods``) is caught by ``check_pending()`` at load time.

Plugins implement these with ``@dcbench.hookimpl``. Hooks are called with keyword arguments; an
implementation may accept fewer arguments than the spec. Results are never order-dependent: the
host sorts what is registered by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from dcbench.data.real import DatasetSpec
    from dcbench.method.contract import Method
    from dcbench.nn.networks import Architecture

hookspec = pluggy.HookspecMarker("dcbench")


# --- registration hooks: called once when the plugin manager is built --------------------------


@hookspec
def dcbench_register_methods(register: Callable[[Method], None]) -> None:
    """Register condensation methods.

    Called when: the plugin manager is built, once per plugin.

    :param register: call ``register(method)`` once per :class:`dcbench.method.contract.Method` instance;
        a plugin may register several (e.g. ``dc`` and ``dsa``). Two methods with one name are an
        error that names both plugins.
    """


@hookspec
def dcbench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register real datasets.

    Called when: the plugin manager is built, once per plugin.

    :param register: call ``register(DatasetSpec(name, loader, description))``; ``loader(data_root)``
        returns a :class:`dcbench.data.real.RealDataset` or raises ``DcbenchError`` with the fix.
    """


@hookspec
def dcbench_register_architectures(register: Callable[[Architecture], None]) -> None:
    """Register network architectures for condensation or evaluation.

    Called when: the plugin manager is built, once per plugin.

    :param register: call ``register(Architecture(name, factory, description))``; the factory is
        called as ``factory(channels, num_classes, image_size, **options)`` and returns an
        ``nn.Module`` (with ``embed(x)`` if feature-matching methods should use it).
    """


# --- tracking: a run's request, claimed once before any cell runs -------------------------------


@hookspec(firstresult=True)
def dcbench_tracking_setting(name: str, value: bool | str, results_dir: Path) -> str | None:
    """Claim the tracking request ``name`` of a run (``dcbench run --track NAME[=VALUE]``, or
    ``NAME = VALUE`` in the spec's ``[tracking]`` table), before any cell runs.

    :param name: what the user asked for, e.g. ``"tensorboard"``.
    :param value: ``True`` (the plugin's default) or the string the user gave, e.g. a directory.
    :param results_dir: the run's results directory (a default place for the plugin's files).
    :return: the setting every cell of the run gets as ``cell["tracking"][name]`` (for example an
        absolute directory), or ``None`` when ``name`` is not this plugin's. Raise
        ``DcbenchError`` naming the fix when the plugin cannot track (a package missing): the run
        is then refused before any work.
    """


# --- observer hooks: progress and logging; return values are ignored ---------------------------


@hookspec
def dcbench_cell_started(cell: Mapping[str, Any]) -> None:
    """A cell (one method, dataset, IPC and seed) starts condensing.

    :param cell: the cell's identity: ``id``, ``method``, ``dataset``, ``ipc``, ``seed``, ``preset``;
        plus ``directory`` (where the cell writes its files) and ``tracking``, the settings of the
        run for tracking plugins, name -> what :func:`dcbench_tracking_setting` returned (e.g.
        ``{"tensorboard": "/abs/dir"}`` under ``--track tensorboard``; empty when nothing was
        asked for).
    """


@hookspec
def dcbench_condense_progress(cell: Mapping[str, Any], step: int, total: int, metrics: Mapping[str, float]) -> None:
    """A method reported progress while condensing.

    :param cell: the cell's identity (as in :func:`dcbench_cell_started`).
    :param step: iterations done so far (a resumed cell starts after its checkpoint's iteration).
    :param total: the iteration budget.
    :param metrics: numbers the method reported, e.g. ``{"loss": 3.2}``.
    """


@hookspec
def dcbench_cell_finished(cell: Mapping[str, Any], result: Mapping[str, Any]) -> None:
    """A cell finished, successfully or not.

    :param cell: the cell's identity.
    :param result: ``status`` ("done" or "failed"), ``reason`` when failed, and on success the
        metrics written to the cell's ``metrics.json`` (accuracies, seconds, memory).
    """
