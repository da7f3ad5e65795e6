"""Explicit seeds: every random stream is a ``torch.Generator`` derived from (seed, purpose).

The global RNGs (torch, numpy, random) are never seeded or read, so a library user's own
randomness is left alone and runs are reproducible from the seeds recorded in the results.
"""

from __future__ import annotations

import hashlib

import torch

from dcbench.host.schema import Integer


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed for the stream named by ``keys`` under ``seed`` (stable across runs and machines)."""
    text = "/".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def make_generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU generator for the stream ``keys`` of ``seed``. Draw on the CPU, then move the tensors:
    the same seed then gives the same numbers on every device."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, *keys))


SEED = Integer(minimum=0)  # the one seed policy, for the CLI, specs and the library alike


def check_seed(seed: object, where: str = "seed") -> int:
    """``seed`` if it is an integer >= 0 (not a bool); a one-line error naming ``where`` otherwise."""
    return SEED.check(where, seed)
