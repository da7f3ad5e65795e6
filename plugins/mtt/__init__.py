"""Trajectory-matching plugin: registers ``mtt`` and ``datm`` (experts shared through the artifact store)."""

from __future__ import annotations

from collections.abc import Callable

from dcbench.api import Method, hookimpl

from .method import DATMMethod, MTTMethod


@hookimpl
def dcbench_register_methods(register: Callable[[Method], None]) -> None:
    register(MTTMethod())
    register(DATMMethod())
