"""Plugins: the hook specifications, the plugin manager with its registry, and the host's own core
plugin (built-in datasets and architectures)."""

from __future__ import annotations

from dcbench.plugins.manager import CORE_PLUGINS, ENTRY_POINT_GROUP, PluginInfo, Registry, load_plugins

__all__ = ["CORE_PLUGINS", "ENTRY_POINT_GROUP", "PluginInfo", "Registry", "load_plugins"]
