"""The CAFE plugin: registers ``cafe`` and ``cafe_dsa``."""

from __future__ import annotations

from collections.abc import Callable

from dcbench.api import Method, hookimpl

from .method import CafeDsaMethod, CafeMethod


@hookimpl
def dcbench_register_methods(register: Callable[[Method], None]) -> None:
    register(CafeMethod())
    register(CafeDsaMethod())
