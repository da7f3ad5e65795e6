"""Source code of plugins that tests install as extra entry points (see the ``extra_plugins``
fixture in conftest.py)."""

GOOD_PLUGIN = """
    from dataclasses import dataclass
    from typing import ClassVar
    from dcbench import hookimpl
    from dcbench.method.contract import Method, class_major_labels
    from dcbench.method.synthetic import SyntheticSet
    import torch

    @dataclass
    class ZeroConfig:
        PRESETS: ClassVar[dict] = {}

    class Zero(Method):
        name = "{name}"
        version = "9.9"
        description = "all-zero images"
        config_class = ZeroConfig

        def condense(self, real, ipc, config, seed, ctx):
            return SyntheticSet(torch.zeros(real.num_classes * ipc, real.channels, *real.image_size),
                                class_major_labels(real.num_classes, ipc))

    @hookimpl
    def dcbench_register_methods(register):
        register(Zero())
"""
