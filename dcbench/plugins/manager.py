"""The plugin manager: built-ins and third-party plugins, all through the ``dcbench`` entry-point group.

Loading order: the host's own core plugin (datasets and architectures) -> entry points of the
``dcbench`` group (the built-in methods ship as entry points of this very distribution, exactly as a
third-party ``dcbench-foo`` would) -> ``check_pending()`` -> registries built from the
registration hooks. A plugin that fails to import, to validate or to register is reported in one
line and skipped; ``DCBENCH_STRICT_PLUGINS=1`` turns that into an error.

Environment variables:

- ``DCBENCH_LOAD_PLUGINS=a,b``: load only these entry points (``""`` loads none);
- ``DCBENCH_DISABLE_PLUGINS=a,b``: block these entry points;
- ``DCBENCH_STRICT_PLUGINS=1``: a broken plugin is an error;
- ``DCBENCH_TRACE_PLUGINS=1``: print every hook call to stderr.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from dcbench import __version__
from dcbench.data.paths import is_dataset_path, path_dataset
from dcbench.data.real import DatasetSpec
from dcbench.host.errors import DcbenchError
from dcbench.method.contract import Method
from dcbench.nn.networks import Architecture
from dcbench.plugins import hookspecs

ENTRY_POINT_GROUP = "dcbench"
CORE_PLUGINS = ("dcbench.plugins.core",)


@dataclass
class PluginInfo:
    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Everything the loaded plugins registered, by name, plus the plugins that were skipped."""

    manager: pluggy.PluginManager
    methods: dict[str, Method] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    architectures: dict[str, Architecture] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> plugin name
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    broken: list[tuple[str, str]] = field(default_factory=list)  # (plugin, one-line reason)

    def method(self, name: str) -> Method:
        return self._lookup("method", self.methods, name)

    def dataset(self, name: str) -> DatasetSpec:
        if name not in self.datasets and is_dataset_path(name):
            return path_dataset(name)  # an image folder or a .pt/.npz file
        return self._lookup("dataset", self.datasets, name)

    def architecture(self, name: str) -> Architecture:
        return self._lookup("architecture", self.architectures, name)

    def shipped(self, kind: str, name: str) -> bool:
        """Whether ``name`` (a method, dataset or architecture) comes with dcbench itself, not from
        another installed distribution or a registration by hand."""
        return _is_builtin(self, self.owners.get((kind, name), ""))

    def plugin_version(self, method: str) -> str | None:
        """The version of the distribution whose plugin registered ``method`` (None if unknown)."""
        info = self.plugins.get(self.owners.get(("method", method), ""))
        return info.version if info else None

    @staticmethod
    def _lookup(kind: str, table: dict[str, Any], name: str) -> Any:
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise DcbenchError(f"unknown {kind} {name!r}; known {kind}s: {known} (see `dcbench list`)")
        return table[name]


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _one_line(exc: BaseException) -> str:
    """An exception as one line: pluggy's validation messages span several lines."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}".rstrip(": ")


def _trace(manager: pluggy.PluginManager) -> None:
    def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        print(f"[dcbench trace] {hook_name} -> {[i.plugin_name for i in impls]} {sorted(kwargs)}", file=sys.stderr)

    def after(
        outcome: pluggy.Result[Any], hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
    ) -> None:
        pass

    manager.add_hookcall_monitoring(before, after)


def load_plugins(strict: bool | None = None) -> Registry:
    """Build a fresh plugin manager, load every plugin and collect what they register."""
    strict = os.environ.get("DCBENCH_STRICT_PLUGINS", "") not in ("", "0") if strict is None else strict
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)

    def fail(plugin: str, reason: str) -> None:
        if strict:
            raise DcbenchError(f"plugin {plugin!r} is broken: {reason} (unset DCBENCH_STRICT_PLUGINS to skip it)")
        registry.broken.append((plugin, reason))
        print(f"dcbench: skipping broken plugin {plugin!r}: {reason}", file=sys.stderr)

    for module_name in CORE_PLUGINS:
        module = importlib.import_module(module_name)
        manager.register(module, name=module_name)
        registry.plugins[module_name] = PluginInfo(module_name, "dcbench", _own_version())

    allow = _env_list("DCBENCH_LOAD_PLUGINS")
    blocked = set(_env_list("DCBENCH_DISABLE_PLUGINS") or [])
    for name in blocked:
        manager.set_blocked(name)
    seen: dict[str, str] = {}  # entry-point name -> the module it loads
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in blocked or (allow is not None and ep.name not in allow):
            continue
        if ep.name in seen:  # a duplicated dist-info (e.g. a symlinked lib64) must not register twice ...
            if seen[ep.name] != ep.value:  # ... but two different plugins under one name is a clash
                fail(
                    ep.name,
                    f"two installed plugins are named {ep.name!r} ({seen[ep.name]} and {ep.value}); "
                    f"{ep.value} is skipped: uninstall one or rename its entry point",
                )
            continue
        seen[ep.name] = ep.value
        try:
            plugin = ep.load()
            manager.register(plugin, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - any failure of third-party code is reported, not fatal
            fail(ep.name, _one_line(exc))
            continue
        if not manager.get_hookcallers(plugin):  # pluggy ignores functions not marked @hookimpl
            manager.unregister(plugin)
            fail(ep.name, "implements no dcbench hook: mark its hook functions with @dcbench.hookimpl")
            continue
        dist = ep.dist
        registry.plugins[ep.name] = PluginInfo(ep.name, dist.name if dist else None, dist.version if dist else None)

    while True:  # check_pending raises for the first bad plugin only; drop it and check again
        try:
            manager.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            name = manager.get_name(exc.plugin) or str(exc.plugin)
            manager.unregister(exc.plugin)
            registry.plugins.pop(name, None)
            fail(name, _one_line(exc))

    if os.environ.get("DCBENCH_TRACE_PLUGINS", "") not in ("", "0"):
        _trace(manager)
    _collect(registry, fail)
    for name, info in registry.plugins.items():
        plugin = manager.get_plugin(name)
        info.hooks = sorted(h.name for h in manager.get_hookcallers(plugin) or []) if plugin else []
    return registry


def _collect(registry: Registry, fail: Callable[[str, str], None]) -> None:
    """Call each registration hook plugin by plugin, so one broken plugin cannot hide the others."""
    tables: dict[str, tuple[dict[str, Any], type]] = {
        "method": (registry.methods, Method),
        "dataset": (registry.datasets, DatasetSpec),
        "architecture": (registry.architectures, Architecture),
    }
    for kind, hook_name in (
        ("dataset", "dcbench_register_datasets"),
        ("architecture", "dcbench_register_architectures"),
        ("method", "dcbench_register_methods"),
    ):
        table, expected_type = tables[kind]
        hook = getattr(registry.manager.hook, hook_name)
        for impl in hook.get_hookimpls():  # in registration order (pluggy calls them LIFO)
            plugin_name = impl.plugin_name
            staged: dict[str, Any] = {}

            def register(
                item: Any,
                _staged: dict[str, Any] = staged,
                _plugin: str = plugin_name,
                _kind: str = kind,
                _expected: type = expected_type,
            ) -> None:
                if not isinstance(item, _expected):
                    raise DcbenchError(f"register() expects a {_expected.__name__}, got {type(item).__name__}")
                name = getattr(item, "name", None)
                if not isinstance(name, str) or not name:
                    raise DcbenchError(f"a registered {_kind} has no name")
                owner = registry.owners.get((_kind, name)) or (_plugin if name in _staged else None)
                if owner is not None:
                    # suggest disabling the third-party one: the built-ins ship with dcbench itself
                    culprit = next((p for p in (_plugin, owner) if not _is_builtin(registry, p)), _plugin)
                    raise DcbenchError(
                        f"{_kind} {name!r} is registered by both {owner!r} and {_plugin!r}; "
                        f"uninstall or disable one (DCBENCH_DISABLE_PLUGINS={culprit})"
                    )
                _staged[name] = item

            try:
                impl.function(*[{"register": register}[arg] for arg in impl.argnames])
                if kind == "method":
                    for method in staged.values():
                        _check_method(method)
            except DcbenchError as exc:
                if "registered by both" in str(exc):
                    raise  # two methods with one name: refuse rather than pick one silently
                fail(plugin_name, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001
                fail(plugin_name, _one_line(exc))
                continue
            for name, item in staged.items():
                table[name] = item
                registry.owners[(kind, name)] = plugin_name


def _is_builtin(registry: Registry, plugin: str) -> bool:
    info = registry.plugins.get(plugin)
    return info is not None and info.distribution == "dcbench"


def _check_method(method: Method) -> None:
    for attr in ("name", "version", "config_class"):
        if not getattr(method, attr, None):
            raise DcbenchError(f"method {type(method).__name__} does not set {attr!r}")
    for preset in ("smoke", "quick", "paper"):
        method.make_config(preset)


def _own_version() -> str:
    return __version__
