"""The plugin manager: entry points, allow/block lists, broken plugins, duplicates, hook dispatch."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest
import torch

import unigen
from unigen import hookimpl, ops
from unigen.errors import UnigenError, UnknownId
from unigen.plugins import PluginWarning, get_plugin_manager


def _fake_dist(tmp_path, monkeypatch, name: str, module_source: str, ep_name: str | None = None):
    """A dist-info directory with an entry point in group 'unigen', and its module, on sys.path."""
    ep_name = ep_name or name
    dist = tmp_path / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[unigen]\n{ep_name} = {name}_mod\n")
    (tmp_path / f"{name}_mod.py").write_text(textwrap.dedent(module_source))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(f"{name}_mod", None)


GOOD = """
from unigen import ModelSpec, hookimpl, GenerativeModel

class Tiny(GenerativeModel):
    family = "tiny"

@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="tiny", model_cls=Tiny))
"""


def test_entry_point_plugin_is_discovered_with_its_distribution(tmp_path, monkeypatch):
    _fake_dist(tmp_path, monkeypatch, "fakeplug", GOOD)
    host = get_plugin_manager(env={})
    assert "tiny" in host.models and host.models["tiny"].plugin == "fakeplug"
    assert host.dists["fakeplug"] == "fakeplug 1.0"
    assert "unigen_register_models" in host.hooks_of("fakeplug")


def test_block_list_and_autoload_switch(tmp_path, monkeypatch):
    _fake_dist(tmp_path, monkeypatch, "fakeplug", GOOD)
    assert "tiny" not in get_plugin_manager(env={"UNIGEN_BLOCK_PLUGINS": "fakeplug"}).models
    assert "tiny" not in get_plugin_manager(env={"UNIGEN_DISABLE_PLUGIN_AUTOLOAD": "1"}).models
    host = get_plugin_manager(env={"UNIGEN_PLUGINS": ""})
    assert "tiny" not in host.models and "digits" in host.datasets  # built-ins always load


def test_allow_list_loads_only_named_plugins_and_refuses_unknown_names(tmp_path, monkeypatch):
    _fake_dist(tmp_path, monkeypatch, "fakeplug", GOOD)
    host = get_plugin_manager(env={"UNIGEN_PLUGINS": "fakeplug"})
    assert list(host.models) == ["tiny"]
    with pytest.raises(UnigenError, match="no_such_plugin"):
        get_plugin_manager(env={"UNIGEN_PLUGINS": "fakeplug,no_such_plugin"})


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_load(tmp_path, monkeypatch):
    _fake_dist(tmp_path / "a", monkeypatch, "brokenplug", "raise RuntimeError('boom at import')") if (
        (tmp_path / "a").mkdir() or True) else None
    _fake_dist(tmp_path / "b", monkeypatch, "fakeplug", GOOD) if ((tmp_path / "b").mkdir() or True) else None
    with pytest.warns(PluginWarning, match="brokenplug.*boom at import.*UNIGEN_BLOCK_PLUGINS=brokenplug"):
        host = get_plugin_manager(env={})
    assert "tiny" in host.models
    assert [f.name for f in host.failures] == ["brokenplug"]


def test_a_duplicate_id_is_refused_naming_the_plugin_and_the_first_one_stays():
    class Dup:
        @hookimpl
        def unigen_register_datasets(self, register):
            register(unigen.DatasetSpec(id="digits", load=lambda split, data_dir: None))

    with pytest.warns(PluginWarning, match="'digits' is already registered"):
        host = get_plugin_manager(autoload=False, plugins=[Dup()])
    assert host.datasets["digits"].plugin == "unigen.builtin"


def test_unknown_ids_list_the_known_ones_and_say_what_to_install():
    host = get_plugin_manager(env={"UNIGEN_PLUGINS": ""})
    with pytest.raises(UnknownId, match=r"unknown model 'ddpm'; known: none .*pip install unigen-diffusion"):
        host.models["ddpm"]
    with pytest.raises(UnknownId, match="did you mean 'digits'"):
        host.datasets["digitz"]


def test_misspelt_hook_implementation_fails_loudly():
    class Misspelt:
        @hookimpl
        def unigen_register_modles(self, register):
            """Misspelt on purpose: the plugin manager must refuse the name, whatever the body."""

    with pytest.raises(Exception, match="unigen_register_modles"):
        get_plugin_manager(autoload=False, plugins=[Misspelt()])


class _Const(unigen.GenerativeModel):
    family = "test"

    def sample(self, num_samples, steps=None):
        return torch.zeros(num_samples, 2)


def test_a_plugin_can_override_one_operation_for_its_model_type_only():
    class Override:
        @hookimpl
        def unigen_sample(self, model, num_samples, steps):
            return torch.ones(num_samples, 2) if isinstance(model, _Const) else None

    host = get_plugin_manager(autoload=False, plugins=[Override()])
    info = unigen.DataInfo(name="t", shape=(2,), kind="vector")
    assert ops.sample(_Const(None, info), 3, host=host).sum() == 6


def test_a_wrapper_sees_every_operation_of_every_model():
    seen = []

    class Wrap:
        @hookimpl(wrapper=True)
        def unigen_sample(self, model, num_samples, steps):
            seen.append(num_samples)
            result = yield
            return result * 2 + 1

    host = get_plugin_manager(autoload=False, plugins=[Wrap()])
    info = unigen.DataInfo(name="t", shape=(2,), kind="vector")
    out = ops.sample(_Const(None, info), 4, host=host)
    assert seen == [4] and torch.equal(out, torch.ones(4, 2))


def test_registration_hooks_may_take_no_arguments():
    mod = types.SimpleNamespace(unigen_register_models=hookimpl(lambda: None))
    get_plugin_manager(autoload=False, plugins=[mod])


def _two_dists(tmp_path, monkeypatch, first: str, second: str) -> None:
    for name, extra in ((first, "tiny-a"), (second, "tiny-b")):
        (tmp_path / name).mkdir()
        _fake_dist(tmp_path / name, monkeypatch, name, GOOD + f"""
@hookimpl
def unigen_register_datasets(register):
    from unigen import DatasetSpec
    register(DatasetSpec(id="{extra}", load=lambda split, data_dir: None))
""")


def test_an_id_registered_by_two_distributions_is_refused_from_both_until_one_is_blocked(tmp_path, monkeypatch):
    _two_dists(tmp_path, monkeypatch, "aaplug", "zzplug")  # aaplug sorts first: it used to win 'tiny'
    with pytest.warns(PluginWarning) as record:
        host = get_plugin_manager(env={})
    lines = [str(w.message) for w in record if "tiny" in str(w.message)]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    for part in ("'tiny'", "aaplug 1.0", "zzplug 1.0", "UNIGEN_BLOCK_PLUGINS"):
        assert part in lines[0], lines[0]
    assert "tiny" not in host.models
    assert "tiny-a" in host.datasets and "tiny-b" in host.datasets  # the rest of each plugin stays
    assert not host.failures
    with pytest.raises(UnknownId, match="aaplug.*zzplug.*UNIGEN_BLOCK_PLUGINS"):
        host.models["tiny"]
    host = get_plugin_manager(env={"UNIGEN_BLOCK_PLUGINS": "aaplug"})
    assert host.models["tiny"].plugin == "zzplug"


BROKEN = {
    "misspelt": GOOD + "\n@hookimpl\ndef unigen_register_modles(register):\n    pass\n",
    "exits": "import sys\nsys.exit(3)\n",
    "notattrs": """
from unigen import ModelSpec, hookimpl, GenerativeModel

class Plain(GenerativeModel):
    family = "plain"

    class Config:
        'Not an attrs class, on purpose: the broken plugin under test.'

@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="plain", model_cls=Plain))
""",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_plugin_is_skipped_naming_it_and_the_others_load(tmp_path, monkeypatch, kind):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _fake_dist(tmp_path / "a", monkeypatch, "brokenplug", BROKEN[kind])
    _fake_dist(tmp_path / "b", monkeypatch, "otherplug", GOOD.replace('"tiny"', '"tiny2"'))
    with pytest.warns(PluginWarning, match="brokenplug.*UNIGEN_BLOCK_PLUGINS=brokenplug"):
        host = get_plugin_manager(env={})
    assert "tiny2" in host.models and "plain" not in host.models and "tiny" not in host.models
    assert [f.name for f in host.failures] == ["brokenplug"]


def test_a_hook_that_raises_when_called_is_one_error_naming_its_plugin(tmp_path, monkeypatch):
    _fake_dist(tmp_path, monkeypatch, "boomplug", """
from unigen import hookimpl

@hookimpl
def unigen_sample(model, num_samples, steps):
    raise RuntimeError("boom in sample")
""")
    host = get_plugin_manager(env={})
    info = unigen.DataInfo(name="t", shape=(2,), kind="vector")
    with pytest.raises(UnigenError, match="plugin 'boomplug'.*unigen_sample.*boom in sample.*UNIGEN_BLOCK_PLUGINS=boomplug"):
        ops.sample(_Const(None, info), 3, host=host)


def test_the_cli_shows_a_plugin_warning_as_one_line(tmp_path):
    import os
    import subprocess

    dist = tmp_path / "brokenplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[unigen]\nbrokenplug = brokenplug_mod\n")
    (tmp_path / "brokenplug_mod.py").write_text("raise RuntimeError('boom at import')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("UNIGEN_SHOW_PLUGIN_WARNINGS", None)
    out = subprocess.run([sys.executable, "-m", "unigen", "datasets"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "brokenplug" in lines[0] and "boom at import" in lines[0], out.stderr


# -- commands from plugins -------------------------------------------------------------------------
class _Hello:
    @hookimpl
    def unigen_register_commands(self, subparsers):
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        p.set_defaults(run=lambda args: len(args.name))


class _BrokenCommands:
    @hookimpl
    def unigen_register_commands(self, subparsers):
        raise RuntimeError("boom")


def test_a_plugin_adds_a_command_and_a_broken_one_is_skipped_with_a_warning():
    from unigen.cli import build_parser

    host = get_plugin_manager(autoload=False, plugins=[_Hello(), _BrokenCommands()])
    with pytest.warns(PluginWarning, match="its commands were skipped: RuntimeError: boom"):
        parser = build_parser(host)
    args = parser.parse_args(["hello", "--name", "abc"])
    assert args.run(args) == 3
    assert parser.parse_args(["models"]).run is not None  # the core's own commands are there too


def test_the_catalogue_names_only_what_each_distribution_registers():
    """Every id the core's catalogue attributes to an installed distribution of this repository is
    registered by that distribution (so a hint to install it is never wrong)."""
    from unigen.registry import _catalogue

    host = unigen.default_host()
    registries = {"models": host.models, "metrics": host.metrics, "datasets": host.datasets}
    installed = {d.split()[0]: name for name, d in host.dists.items()}
    checked = 0
    for dist, provides in _catalogue().items():
        if dist not in installed:
            continue
        for what, ids in provides.items():
            if what == "commands":
                continue
            for key in ids:
                assert key in registries[what] and registries[what][key].plugin == installed[dist], (dist, key)
                checked += 1
    assert checked > 0
