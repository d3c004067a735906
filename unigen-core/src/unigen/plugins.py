"""The plugin manager: entry points in group ``unigen``, blocking, failures, registries.

Environment variables (the semantics of pytest's and llm's):

``UNIGEN_PLUGINS``
    Allow-list of entry-point names, comma-separated. Unset: load every installed plugin. ``""``:
    load none. A name that matches no installed entry point is an error.
``UNIGEN_BLOCK_PLUGINS``
    Block-list of entry-point names, comma-separated; blocked plugins are never imported.
``UNIGEN_DISABLE_PLUGIN_AUTOLOAD``
    Any non-empty value: load no entry points (only the core's built-ins).

A plugin that fails to import (any exception, ``SystemExit`` included), implements a hook that does
not exist (a misspelt name), or whose registration fails (an id twice, a ``Config`` that is not an
attrs class) is skipped with one warning naming it, its distribution and the variable that disables
it; the others load. An id registered by two plugins is refused from both, with one warning naming
both distributions and ``UNIGEN_BLOCK_PLUGINS`` (the core's own ids stay theirs). A hook that raises
when called is one error naming its plugin (:meth:`Host.call`).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pluggy
from importlib_metadata import entry_points

from . import builtin, hookspecs
from .errors import ConfigError, UnigenError
from .registry import DatasetSpec, LoggerSpec, MetricSpec, ModelSpec, Registry, SamplerSpec

GROUP = "unigen"
ENV_ALLOW = "UNIGEN_PLUGINS"
ENV_BLOCK = "UNIGEN_BLOCK_PLUGINS"
ENV_NO_AUTOLOAD = "UNIGEN_DISABLE_PLUGIN_AUTOLOAD"


class PluginWarning(UserWarning):
    """A plugin was skipped because it failed to import or register, or an id of it was refused."""


class PluginError(UnigenError):
    """A plugin's hook raised when called; the message names the plugin and how to disable it."""

    exit_code = 1

CORE = "unigen.builtin"


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
        self.loggers: Registry[LoggerSpec] = Registry("logger")
        self.failures: list[PluginFailure] = []
        self.dists: dict[str, str] = {}  # plugin name -> "dist version"
        self.blocked: list[str] = []

    # -- registration -------------------------------------------------------------------------
    def fill_registries(self) -> None:
        hooks: list[tuple[str, Registry[Any]]] = [
            ("unigen_register_models", self.models),
            ("unigen_register_datasets", self.datasets),
            ("unigen_register_samplers", self.samplers),
            ("unigen_register_metrics", self.metrics),
            ("unigen_register_loggers", self.loggers),
        ]
        staged: dict[str, list[tuple[Registry, Any]]] = {}
        for name in self.plugin_names():
            plugin = self.pm.get_plugin(name)
            try:
                # Register into a scratch list first, so a failing plugin adds nothing.
                mine: list[tuple[Registry, Any]] = []
                for hook_name, registry in hooks:
                    for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                        if impl.plugin is plugin:
                            cb = functools.partial(_stage, mine, registry)
                            impl.function(*([cb] if impl.argnames else []))
                seen: set[tuple[str, str]] = set()
                for registry, spec in mine:
                    if (registry.what, spec.id) in seen:
                        raise UnigenError(f"{registry.what} id {spec.id!r} registered twice by the same plugin")
                    seen.add((registry.what, spec.id))
                staged[name] = mine
            except (Exception, SystemExit) as exc:  # a broken plugin must not take the others down
                self._fail(name, exc)
                self.pm.unregister(name=name)
        claims: dict[tuple[str, str], list[str]] = {}
        for name, mine in staged.items():
            for registry, spec in mine:
                claims.setdefault((registry.what, spec.id), []).append(name)
        for name, mine in staged.items():
            for registry, spec in mine:
                owners = claims[(registry.what, spec.id)]
                if len(owners) == 1 or (name == CORE and CORE in owners):
                    registry.callback(name)(spec)
                elif CORE in owners:
                    _warn(f"unigen plugin {name!r} ({self.dists.get(name, '?')}): {registry.what} id {spec.id!r} "
                          f"is already registered by the core; the plugin's is ignored (disable it with "
                          f"{ENV_BLOCK}={name})")
                elif name == owners[0]:  # refused from all of them, said once
                    named = " and ".join(f"plugin {o!r} ({self.dists.get(o, '?')})" for o in owners)
                    blocks = " or ".join(f"{ENV_BLOCK}={o}" for o in owners)
                    msg = (f"{registry.what} id {spec.id!r} is registered by both {named}; refused from both "
                           f"until one is blocked: {blocks}")
                    registry.refused[spec.id] = msg
                    _warn(f"unigen: {msg}")

    def _fail(self, name: str, exc: BaseException) -> None:
        dist = self.dists.get(name, "unknown distribution")
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        self.failures.append(PluginFailure(name, dist, error))
        _warn(f"unigen plugin {name!r} ({dist}) skipped: {error} (disable it with {ENV_BLOCK}={name})")

    def call(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a hook; an exception raised inside a plugin's implementation (not the core's, not a
        model's own method called by the core) becomes one :class:`PluginError` naming the plugin."""
        hook = getattr(self.pm.hook, hook_name)
        try:
            return hook(**kwargs)
        except UnigenError:
            raise
        except Exception as exc:
            name = _raising_plugin(exc, hook)
            if name is None:
                raise
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            raise PluginError(f"plugin {name!r} ({self.dists.get(name, 'unknown distribution')}) failed in "
                              f"{hook_name}: {error} (disable it with {ENV_BLOCK}={name})") from exc

    # -- queries ------------------------------------------------------------------------------
    def plugin_names(self) -> list[str]:
        # list_name_plugin() also lists blocked names with plugin None: filter them.
        return [n for n, p in self.pm.list_name_plugin() if p is not None]

    def ids_of(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for reg in (self.models, self.datasets, self.samplers, self.metrics, self.loggers):
            ids = [s.id for s in reg.values() if s.plugin == plugin]
            if ids:
                out[reg.what + "s"] = ids
        return out

    def hooks_of(self, plugin: str) -> list[str]:
        obj = self.pm.get_plugin(plugin)
        return sorted(h.name for h in (self.pm.get_hookcallers(obj) or []))


def _warn(message: str) -> None:
    warnings.warn(message, PluginWarning, stacklevel=2)


def _raising_plugin(exc: BaseException, hook: Any) -> str | None:
    """The plugin whose implementation of ``hook`` is on the traceback of ``exc`` (innermost first)."""
    codes = {impl.function.__code__: impl.plugin_name for impl in hook.get_hookimpls()
             if impl.plugin_name != CORE and hasattr(impl.function, "__code__")}
    tb, found = exc.__traceback__, None
    while tb is not None:
        found = codes.get(tb.tb_frame.f_code, found)
        tb = tb.tb_next
    return found


def _unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """Hook implementations of ``plugin`` that match no spec (what ``check_pending`` refuses)."""
    return sorted(h.name for h in (pm.get_hookcallers(plugin) or []) if not h.has_spec()
                  and any(i.plugin is plugin and not i.optionalhook for i in h.get_hookimpls()))


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
        except (Exception, SystemExit) as exc:  # ImportError and anything the module raises at import
            host._fail(ep.name, exc)
            continue
        try:
            host.pm.register(plugin, name=ep.name)
            unknown = _unknown_hooks(host.pm, plugin)
            if unknown:
                raise UnigenError(f"unknown hook {unknown[0]!r} (misspelt? see unigen.hookspecs)")
        except Exception as exc:  # e.g. a hook implementation with an unknown argument
            host._fail(ep.name, exc)
            if host.pm.is_registered(plugin):
                host.pm.unregister(plugin)


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
    environ: Mapping[str, str] = os.environ if env is None else env
    pm = pluggy.PluginManager("unigen")
    pm.add_hookspecs(hookspecs)
    host = Host(pm)
    for name in _split(environ.get(ENV_BLOCK, "")):
        pm.set_blocked(name)
        host.blocked.append(name)
    if autoload is None:
        autoload = not environ.get(ENV_NO_AUTOLOAD)
    if autoload:
        allow = _split(environ[ENV_ALLOW]) if ENV_ALLOW in environ else None
        _load_entry_points(host, allow)
    pm.register(builtin, name=CORE)
    host.dists[CORE] = "unigen-core (built in)"
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


def get_sampler(name: str, kind: str | None = None, *, host: Host | None = None) -> SamplerSpec:
    """A registered sampler of ``host`` (a model passes the host it was built with, ``self.host``;
    None: the default host), checking its kind (``ode`` or ``sde``)."""
    spec = (host or default_host()).samplers[name]
    if kind is not None and spec.kind != kind:
        raise ConfigError(f"sampler {name!r} is an {spec.kind.upper()} solver; this model needs an {kind.upper()} solver")
    return spec
