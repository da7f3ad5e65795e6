"""The plugin author's test kit: the conformance suite every method plugin runs in its own tests
(:func:`check_method`, :func:`conformance_cases`) and tiny test data (:mod:`dcbench.testing.data`)."""

from __future__ import annotations

from dcbench.testing.conformance import CHECKS, ConformanceSuite, check_method, conformance_cases
from dcbench.testing.data import FASHION_MNIST_FILES, tiny_dataset, write_fashion_mnist_idx

__all__ = [
    "CHECKS",
    "FASHION_MNIST_FILES",
    "ConformanceSuite",
    "check_method",
    "conformance_cases",
    "tiny_dataset",
    "write_fashion_mnist_idx",
]
