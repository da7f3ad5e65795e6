"""Coreset baselines of the condensation literature: ``random``, ``herding``, ``kcenter`` and the
``whole`` training set as a reference line."""

from __future__ import annotations

from collections.abc import Callable

from dcbench.api import Method, hookimpl

from .method import HerdingMethod, KCenterMethod, RandomMethod, WholeDatasetMethod


@hookimpl
def dcbench_register_methods(register: Callable[[Method], None]) -> None:
    register(RandomMethod())
    register(HerdingMethod())
    register(KCenterMethod())
    register(WholeDatasetMethod())
