"""The plugin manager: entry points in group ``unigen``, blocking, failures, registries.

Environment variables (the semantics of pytest's and llm's):

``UNIGEN_PLUGINS``
    Allow-list of entry-point names, comma-separated. Unset: load every installed plugin. ``""``:
    load none. A name that matches no installed entry point is an error.
``UNIGEN_BLOCK_PLUGINS``
    Block-list of entry-point names, comma-separated; blocked plugins are never imported.
``UNIGEN_DISABLE_PLUGIN_AUTOLOAD``
    Any non-empty value: load no entry points (only the core's built-ins).

A plugin that fails to import, or whose registration fails (a duplicate id, say), is skipped with one
warning naming it, its distribution and the variable that disables it; the others load.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy
from importlib_metadata import entry_points

from . import hookspecs
from .errors import UnigenError
from .registry import DatasetSpec, MetricSpec, ModelSpec, Registry, SamplerSpec

GROUP = "unigen"
ENV_ALLOW = "UNIGEN_PLUGINS"
ENV_BLOCK = "UNIGEN_BLOCK_PLUGINS"
ENV_NO_AUTOLOAD = "UNIGEN_DISABLE_PLUGIN_AUTOLOAD"


class PluginWarning(UserWarning):
    """A plugin was skipped because it failed to import or register."""


@attrs.frozen
class PluginFailure:
    name: str
    dist: str
    error: str


def _stage(staged: list, registry: Registry, spec: Any) -> None:
    staged.append((registry, spec))


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class Host:
    """A plugin manager with the registries its registration hooks filled."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.models: Registry[ModelSpec] = Registry("model")
        self.datasets: Registry[DatasetSpec] = Registry("dataset")
        self.samplers: Registry[SamplerSpec] = Registry("sampler")
        self.metrics: Registry[MetricSpec] = Registry("metric")
        self.failures: list[PluginFailure] = []
        self.dists: dict[str, str] = {}  # plugin name -> "dist version"
        self.blocked: list[str] = []

    # -- registration -------------------------------------------------------------------------
    def fill_registries(self) -> None:
        hooks = [
            ("unigen_register_models", self.models),
            ("unigen_register_datasets", self.datasets),
            ("unigen_register_samplers", self.samplers),
            ("unigen_register_metrics", self.metrics),
        ]
        for name in self.plugin_names():
            plugin = self.pm.get_plugin(name)
            try:
                # Register into scratch registries first, so a failing plugin adds nothing.
                staged: list[tuple[Registry, Any]] = []
                for hook_name, registry in hooks:
                    for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                        if impl.plugin is plugin:
                            cb = functools.partial(_stage, staged, registry)
                            impl.function(*([cb] if impl.argnames else []))
                seen: dict[tuple[str, str], bool] = {}
                for registry, spec in staged:
                    key = (registry.what, spec.id)
                    if spec.id in registry or key in seen:
                        other = registry[spec.id].plugin if spec.id in registry else name
                        raise UnigenError(
                            f"{registry.what} id {spec.id!r} is already registered by plugin {other!r}"
                        )
                    seen[key] = True
                for registry, spec in staged:
                    registry.callback(name)(spec)
            except Exception as exc:  # a broken plugin must not take the others down
                self._fail(name, exc)
                self.pm.unregister(name=name)

    def _fail(self, name: str, exc: BaseException) -> None:
        dist = self.dists.get(name, "unknown distribution")
        self.failures.append(PluginFailure(name, dist, f"{type(exc).__name__}: {exc}"))
        warnings.warn(
            f"unigen plugin {name!r} ({dist}) skipped: {type(exc).__name__}: {exc} "
            f"(disable it with {ENV_BLOCK}={name})",
            PluginWarning,
            stacklevel=3,
        )

    # -- queries ------------------------------------------------------------------------------
    def plugin_names(self) -> list[str]:
        # list_name_plugin() also lists blocked names with plugin None: filter them.
        return [n for n, p in self.pm.list_name_plugin() if p is not None]

    def ids_of(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for reg in (self.models, self.datasets, self.samplers, self.metrics):
            ids = [s.id for s in reg.values() if s.plugin == plugin]
            if ids:
                out[reg.what + "s"] = ids
        return out

    def hooks_of(self, plugin: str) -> list[str]:
        obj = self.pm.get_plugin(plugin)
        return sorted(h.name for h in (self.pm.get_hookcallers(obj) or []))


def _load_entry_points(host: Host, allow: Iterable[str] | None) -> None:
    eps = list(entry_points(group=GROUP))
    names = {ep.name for ep in eps}
    if allow is not None:
        missing = sorted(set(allow) - names)
        if missing:
            raise UnigenError(
                f"{ENV_ALLOW} names {', '.join(missing)} but no such plugin is installed; "
                f"installed: {', '.join(sorted(names)) or 'none'}"
            )
    for ep in sorted(eps, key=lambda e: e.name):
        if allow is not None and ep.name not in allow:
            continue
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"
        host.dists[ep.name] = dist
        if host.pm.is_blocked(ep.name) or host.pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # ImportError and anything the module raises at import
            host._fail(ep.name, exc)
            continue
        try:
            host.pm.register(plugin, name=ep.name)
        except Exception as exc:  # e.g. a hook implementation with an unknown argument
            host._fail(ep.name, exc)


def get_plugin_manager(
    *,
    autoload: bool | None = None,
    plugins: Iterable[Any] = (),
    env: dict[str, str] | None = None,
) -> Host:
    """Build a fresh :class:`Host`.

    Order (pluggy's recommendation): add the specs, apply blocks, load entry points, register the
    core's own defaults (the same way as any plugin), register ``plugins`` given here (tests), then
    ``check_pending()`` so a misspelt hook name fails loudly.
    """
    from . import defaults

    env = os.environ if env is None else env
    pm = pluggy.PluginManager("unigen")
    pm.add_hookspecs(hookspecs)
    host = Host(pm)
    for name in _split(env.get(ENV_BLOCK, "")):
        pm.set_blocked(name)
        host.blocked.append(name)
    if autoload is None:
        autoload = not env.get(ENV_NO_AUTOLOAD)
    if autoload:
        allow = _split(env[ENV_ALLOW]) if ENV_ALLOW in env else None
        _load_entry_points(host, allow)
    pm.register(defaults, name="unigen.defaults")
    host.dists["unigen.defaults"] = "unigen-core (built in)"
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=getattr(plugin, "__name__", None) or f"plugin-{i}")
    pm.check_pending()
    host.fill_registries()
    return host


@functools.lru_cache(maxsize=1)
def default_host() -> Host:
    """The process-wide host used by the CLI and by :mod:`unigen.ops` when none is given."""
    return get_plugin_manager()


def reset_default_host() -> None:
    """Forget the cached host (after installing a plugin, or in tests)."""
    default_host.cache_clear()
