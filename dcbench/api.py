"""Everything a method plugin imports from dcbench, in one place.

A plugin (built-in or third-party) imports from this module only, so the host's own layout can
change without breaking it::

    from dcbench.api import CondenseContext, Method, RealDataset, SyntheticSet, hookimpl, make_generator

What is here:

- the plugin marker :data:`hookimpl`;
- the method contract: :class:`Method`, its :class:`CondenseContext`, saved state for resumable
  methods (:class:`SavedState`), the evaluation a paper uses (:class:`NativeEvaluation`), config
  helpers (:func:`make_config`, :data:`PRESETS`) and the label and initialisation helpers;
- the data types: :class:`RealDataset`, :class:`DatasetSpec` (to register a dataset),
  :class:`SyntheticSet`;
- networks: :class:`ConvNet`, the other evaluation architectures, :class:`Architecture` (to
  register one) and :func:`build_network`;
- augmentation: DSA (:func:`augment`, :func:`siamese_augment`, :func:`parse_strategy`, the
  reference strategies per dataset) and the DC paper's augmentation strategy;
- seeding: :func:`make_generator` and :func:`derive_seed`, the named random streams every draw
  comes from;
- errors: :class:`DcbenchError` (a one-line user error) and :class:`NonFiniteLossError`;
- files: :func:`atomic_write` (a file that is whole or absent, e.g. in an artifact builder).

The test kit for a plugin's own tests is :mod:`dcbench.testing`.
"""

from __future__ import annotations

from dcbench import hookimpl
from dcbench.data.real import DatasetSpec, RealDataset
from dcbench.host.errors import DcbenchError
from dcbench.host.files import atomic_write
from dcbench.method.contract import (
    PRESETS,
    SHARED_INIT_STREAM,
    CondenseContext,
    Method,
    NativeEvaluation,
    NonFiniteLossError,
    SavedState,
    StateStore,
    class_major_labels,
    config_to_dict,
    init_synthetic_images,
    make_config,
    real_init_stream,
)
from dcbench.method.seeding import derive_seed, make_generator
from dcbench.method.synthetic import SyntheticSet
from dcbench.nn.augment import (
    DC_AUG_STRATEGY,
    augment,
    dc_strategy_for,
    dsa_strategy_for,
    parse_strategy,
    siamese_augment,
)
from dcbench.nn.networks import (
    BUILTIN_ARCHITECTURES,
    MLP,
    VGG11,
    AlexNet,
    Architecture,
    ConvNet,
    LeNet,
    ResNet18,
    build_network,
)

__all__ = [
    "BUILTIN_ARCHITECTURES",
    "DC_AUG_STRATEGY",
    "MLP",
    "PRESETS",
    "VGG11",
    "AlexNet",
    "Architecture",
    "CondenseContext",
    "ConvNet",
    "DatasetSpec",
    "DcbenchError",
    "atomic_write",
    "LeNet",
    "Method",
    "NativeEvaluation",
    "NonFiniteLossError",
    "RealDataset",
    "ResNet18",
    "SavedState",
    "StateStore",
    "SyntheticSet",
    "augment",
    "build_network",
    "class_major_labels",
    "config_to_dict",
    "dc_strategy_for",
    "derive_seed",
    "dsa_strategy_for",
    "hookimpl",
    "init_synthetic_images",
    "real_init_stream",
    "SHARED_INIT_STREAM",
    "make_config",
    "make_generator",
    "parse_strategy",
    "siamese_augment",
]
