"""DM baseline plugin: registers the ``dm`` method (distribution matching)."""

from __future__ import annotations

from collections.abc import Callable

from dcbench.api import Method, hookimpl

from .method import DMMethod


@hookimpl
def dcbench_register_methods(register: Callable[[Method], None]) -> None:
    register(DMMethod())
