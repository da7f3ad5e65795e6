"""DC (gradient matching) and DSA (DC with Differentiable Siamese Augmentation) baselines."""

from __future__ import annotations

from dcbench.api import hookimpl

from .method import DCMethod, DSAMethod


@hookimpl
def dcbench_register_methods(register) -> None:
    register(DCMethod())
    register(DSAMethod())
