"""dcbench: a pluggy-based benchmark host for dataset condensation methods."""

from __future__ import annotations

import pluggy

from dcbench.host import legacy_imports, runtime

# Before torch is imported anywhere (libgomp reads its environment once) and before any large
# allocation: see dcbench/host/runtime.py.
runtime.prefer_passive_waiting()
runtime.keep_freed_memory()
# dcbench 0.1's flat module names answer for one more release (with a warning)
legacy_imports.install()

__version__ = "0.1.0"

#: Marker to be imported and used in plugins: ``@dcbench.hookimpl def dcbench_register_methods(register): ...``
hookimpl = pluggy.HookimplMarker("dcbench")

__all__ = ["__version__", "hookimpl"]
