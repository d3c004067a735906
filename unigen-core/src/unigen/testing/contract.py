"""The contract every model passes, as a pytest test class: interface, reproducibility, and the
mathematics its declared capabilities promise.

``TestMine = contract_tests("maf")`` in a test module (or ``pytest --unigen-contract=maf``) runs every
check below on each id. A model declares what it supports (``logprob_kind``, ``logprob_variants``,
``bijective``, ``data_kinds``, ``example_config``); the checks never ask which model they test.

By declared capability (the checks are in :mod:`unigen.testing.checks`):

- ``exact``: the density integrates to 1 on a grid over 2-D vector data (a pmf sums to 1 over every
  image of 2x2 pixels with 3 levels);
- ``bijective``: ``reverse(forward(x)) == x`` and ``logprob(x) = log N(forward(x); 0, I) + log|det J|``
  with J the autograd Jacobian of ``forward``;
- ``bound``: never above the model's own ``exact``/``estimate`` variant on the same weights;
- ``estimate`` declared beside ``exact``: unbiased (the mean over repeats matches the exact value);
- every model: samples of the right shape, dtype and range, the same for the same seed and different
  for another; float64 as well as float32; ``data_kinds`` accepted and others refused; configs fuzzed
  over what their validators allow (:mod:`unigen.testing.strategies`) and bad values refused by name;
  a checkpoint loads back equal.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from typing import Any, ClassVar

import attrs
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .. import config as cfg
from .. import ops
from ..api import build_model, load_dataset, load_run
from ..checkpoint import write_run
from ..data import Batch, Dataset
from ..errors import ConfigError, DataError, UnigenError, UnsupportedOperation
from ..model import DATA_KINDS, DataInfo, GenerativeModel
from ..plugins import Host, default_host, get_plugin_manager
from ..trainer import Trainer, TrainerConfig
from . import checks
from .runs import example_config
from .strategies import configs, invalid_values

# The core's data set for each kind of data; the contract runs on the model's first declared kind.
DATA_FOR_KIND = {"image": "digits", "vector": "moons", "text-image": "digits-captions"}
# The checks are methods of one base class that every contract_tests() subclass shares, so hypothesis
# sees them called from several executors by design (differing_executors).
FUZZ = settings(max_examples=4, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.differing_executors])


@attrs.frozen(repr=False)
class Case:
    """One model id under test: its spec, the host that registered it, its data and small config."""

    model_id: str
    host: Host
    data: Dataset
    config: Any

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"Case({self.model_id!r}, data={self.data.info.name!r})"

    @property
    def model_cls(self) -> type[GenerativeModel]:
        return self.host.models[self.model_id].model_cls

    def build(self, *, seed: int = 0, config: Any = None, data: DataInfo | None = None,
              dtype: torch.dtype = torch.float32) -> GenerativeModel:
        torch.manual_seed(seed)
        model = build_model(self.model_id, data or self.data.info, config or self.config, host=self.host)
        return model.to(dtype).eval()

    def variant(self, kind: str) -> Any:
        """The config with the values the model declares for logprob kind ``kind``."""
        return cfg.from_dict(type(self.config), {**cfg.to_dict(self.config), **self.model_cls.logprob_variants[kind]})

    def dataset(self, kind: str) -> Dataset:
        return load_dataset(DATA_FOR_KIND[kind], host=self.host)


_HOSTS: dict[tuple[Any, ...], Host] = {}
_CASES: dict[tuple[int, str, str], Case] = {}


def host_for(plugins: tuple[Any, ...]) -> Host:
    """The default host, or one with these plugin objects registered as well (the kit's own tests)."""
    if not plugins:
        return default_host()
    if plugins not in _HOSTS:
        _HOSTS[plugins] = get_plugin_manager(plugins=plugins)
    return _HOSTS[plugins]


def case_for(host: Host, model_id: str, kind: str | None = None) -> Case:
    """The model on data of ``kind`` (its first declared kind by default) with its example config."""
    model_cls = host.models[model_id].model_cls
    kind = kind or model_cls.data_kinds[0]
    key = (id(host), model_id, kind)
    if key not in _CASES:
        data = load_dataset(DATA_FOR_KIND[kind], host=host)
        workdir = tempfile.mkdtemp(prefix=f"unigen-contract-{model_id}-")
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)  # the helper runs live for the session
        # the runs the model builds on (needs_runs) are trained first; one no installed plugin provides is
        # a UnigenError naming what to install, and the model's checks are skipped with it
        _CASES[key] = Case(model_id, host, data, example_config(model_cls, data.info, workdir, host=host))
    return _CASES[key]


def call(op: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an operation; ``None`` when unsupported, whose message must name the model and say why."""
    try:
        return op(*args, **kwargs)
    except UnsupportedOperation as exc:
        assert "does not support" in str(exc) and len(str(exc)) > 30, f"unhelpful UnsupportedOperation: {exc}"
        return None


def as_dtype(batch: Batch, dtype: torch.dtype) -> Batch:
    return Batch(batch.x.to(dtype), batch.y, batch.text)


def contract_tests(*model_ids: str, plugins: tuple[Any, ...] = (),
                   known_failures: dict[tuple[str, str], str] | None = None) -> type:
    """A test class running the contract on ``model_ids`` (none: every installed id).

    Assign it to a name starting with ``Test`` in a test module: ``TestMAF = contract_tests("maf")``.
    ``plugins``: plugin objects (modules) registered besides the installed ones.
    ``known_failures``: (test id, model id) -> reason, run as expected failures (non-strict), e.g.
    ``{("test_operations_keep_the_dtype[float64", "maf"): "float64 not supported yet"}``.
    """
    ids = list(model_ids) or list(host_for(tuple(plugins)).models)
    return type("TestContract", (Contract,), {
        "plugins": tuple(plugins), "known_failures": dict(known_failures or {}),
        "pytestmark": [pytest.mark.parametrize("model_id", ids)],
    })


class Contract:
    """The checks, one test method each; ``model_id`` is parametrized by :func:`contract_tests`."""

    plugins: ClassVar[tuple[Any, ...]] = ()
    known_failures: ClassVar[dict[tuple[str, str], str]] = {}

    @pytest.fixture
    def case(self, model_id: str, request: pytest.FixtureRequest) -> Case:
        for (test, mid), reason in self.known_failures.items():
            if mid == model_id and request.node.name.startswith(test):
                request.applymarker(pytest.mark.xfail(reason=reason, strict=False))
        try:
            return case_for(host_for(self.plugins), model_id)
        except UnigenError as exc:  # e.g. ldm without the vae family installed
            pytest.skip(str(exc))

    # -- the interface ---------------------------------------------------------------------------
    def test_config_round_trips_through_json_and_toml(self, case: Case) -> None:
        values = cfg.to_dict(case.config)
        cls = type(case.config)
        assert cfg.from_dict(cls, json.loads(json.dumps(values))) == case.config
        assert cfg.from_toml(cls, cfg.to_toml({k: v for k, v in values.items() if v is not None})) == case.config

    def test_unknown_and_invalid_config_values_are_refused_by_name(self, case: Case) -> None:
        cls = case.model_cls.Config
        with pytest.raises(ConfigError, match="no_such_key"):
            cfg.from_dict(cls, {"no_such_key": 1})
        base = cfg.to_dict(case.config)
        for name, bad in invalid_values(cls):
            with pytest.raises(ConfigError) as info:
                cfg.from_dict(cls, {**base, name: bad})
            assert name in str(info.value), f"{name}={bad!r} refused without naming the field: {info.value}"

    @FUZZ
    @given(data=st.data())
    def test_every_config_its_validators_allow_builds_or_is_refused_in_one_line(self, case: Case, data: st.DataObject) -> None:
        config = data.draw(configs(case.model_cls.Config, base=case.config), label="config")
        try:
            case.build(config=config)
        except UnigenError as exc:  # a config that does not fit the data may be refused, in one line
            assert "\n" not in str(exc), f"a refusal of more than one line: {exc}"

    def test_capabilities_are_declared_and_held_by_the_instance(self, case: Case) -> None:
        model = case.build()
        kinds = case.model_cls.logprob_kinds()
        assert model.logprob_kind in kinds, f"instance reports {model.logprob_kind!r}; the class declares {kinds}"
        for kind in case.model_cls.logprob_variants:
            assert case.build(config=case.variant(kind)).logprob_kind == kind, f"the {kind!r} variant"
        lp = call(ops.logprob, model, case.data.batch(slice(0, 2)).x, host=case.host)
        assert (lp is None) == (model.logprob_kind == "none"), "logprob support and logprob_kind disagree"

    def test_five_operations_have_the_right_shapes(self, case: Case) -> None:
        model = case.build()
        batch = case.data.batch(slice(0, 4))
        shape = tuple(case.data.info.shape)
        with torch.no_grad():
            x = call(ops.sample, model, 3, None, host=case.host)
            assert x is None or (tuple(x.shape) == (3, *shape) and bool(torch.isfinite(x).all()))
            lp = call(ops.logprob, model, batch.x, host=case.host)
            assert lp is None or (lp.shape == (4,) and bool(torch.isfinite(lp).all()))
            call(ops.forward, model, batch.x, torch.full((4,), 0.5), host=case.host)
        loss = ops.loss(model.train(), batch, host=case.host)
        values = loss.values() if isinstance(loss, dict) else [loss]
        assert all(v.dim() == 0 and torch.isfinite(v) for v in values)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
    def test_operations_keep_the_dtype(self, case: Case, dtype: torch.dtype) -> None:
        model = case.build(dtype=dtype)
        batch = as_dtype(case.data.batch(slice(0, 4)), dtype)
        with torch.no_grad():
            x = call(ops.sample, model, 2, None, host=case.host)
            assert x is None or (x.dtype == dtype and bool(torch.isfinite(x).all())), "samples"
            lp = call(ops.logprob, model, batch.x, host=case.host)
            assert lp is None or (lp.dtype == dtype and bool(torch.isfinite(lp).all())), "logprob"
        loss = ops.loss(model.train(), batch, host=case.host)
        for v in (loss.values() if isinstance(loss, dict) else [loss]):
            assert v.dtype == dtype and torch.isfinite(v), "loss"

    def test_declared_data_kinds_are_taken_and_others_refused(self, case: Case) -> None:
        for kind in DATA_KINDS:
            data = case.dataset(kind)
            if not set(data.info.kinds) & set(case.model_cls.data_kinds):
                with pytest.raises(DataError, match="does not take"):
                    case.build(data=data.info)
                continue
            case_for(case.host, case.model_id, kind).build()  # with its example config for that data

    # -- samples -----------------------------------------------------------------------------------
    def test_samples_are_in_range_and_follow_the_seed(self, case: Case) -> None:
        model, seed = case.build(), 1234
        draw = lambda s: (torch.manual_seed(s), call(ops.sample, model, 4, None, host=case.host))[1]  # noqa: E731
        with torch.no_grad():
            a, b, c = draw(seed), draw(seed), draw(seed + 1)
        if a is None:
            pytest.skip(f"{case.model_id} does not sample")
        checks.samples_in_range(a, case.data.info)
        assert torch.equal(a, b), "the same seed gave different samples (the sampler ignores torch.manual_seed)"
        assert not torch.equal(a, c), "another seed gave the same samples (the sampler ignores the seed)"

    # -- the mathematics of the declared capability -------------------------------------------------
    def test_exact_density_integrates_to_one(self, case: Case) -> None:
        model = case.build()
        if model.logprob_kind != "exact":
            pytest.skip(f"logprob is {model.logprob_kind!r}, not exact")
        if model.logprob_discrete:
            if "image" not in case.model_cls.data_kinds:
                pytest.skip("a pmf is summed over small images; the model takes none")
            info = DataInfo(name="2x2", shape=(1, 2, 2), kind="image", levels=3)
            checks.pmf_sums_to_one(case.build(data=info), case.host)
        else:
            if "vector" not in case.model_cls.data_kinds:
                pytest.skip("a density is integrated over 2-D vectors; the model takes none")
            info = DataInfo(name="plane", shape=(2,), kind="vector")
            checks.density_integrates_to_one(case.build(data=info), case.host)

    @FUZZ
    @given(seed=st.integers(0, 2**31 - 1))
    def test_bijection_inverts_and_logprob_is_the_change_of_variables(self, case: Case, seed: int) -> None:
        if not case.model_cls.bijective:
            pytest.skip("not declared bijective")
        data = case.dataset("vector") if "vector" in case.model_cls.data_kinds else case.data
        model = case.build(data=data.info)
        g = torch.Generator().manual_seed(seed)
        x = data.x[torch.randint(0, len(data), (3,), generator=g)]
        x = x + 0.01 * torch.randn(x.shape, generator=g, dtype=x.dtype)  # off the data grid
        checks.change_of_variables(model, x, case.host)

    def test_a_bound_is_below_its_reference(self, case: Case) -> None:
        model = case.build()
        refs = [k for k in ("exact", "estimate") if k in case.model_cls.logprob_variants]
        if model.logprob_kind != "bound" or not refs:
            pytest.skip("not a bound with a declared exact/estimate variant")
        reference = case.build(config=case.variant(refs[0]))
        reference.load_state_dict(model.state_dict())
        checks.bound_below(model, reference, case.data.batch(slice(0, 64)).x, case.host)

    def test_an_estimate_is_unbiased_for_the_exact_value(self, case: Case) -> None:
        variants = case.model_cls.logprob_variants
        if not {"estimate", "exact"} <= set(variants):
            pytest.skip("declares no estimate beside an exact value")
        data = case.dataset("vector") if "vector" in case.model_cls.data_kinds else case.data
        estimate = case.build(config=case.variant("estimate"), data=data.info)
        exact = case.build(config=case.variant("exact"), data=data.info)
        exact.load_state_dict(estimate.state_dict())
        checks.unbiased(estimate, exact, data.batch(slice(0, 4)).x, case.host)

    # -- reproducibility and persistence ------------------------------------------------------------
    def test_seeded_builds_and_losses_are_reproducible(self, case: Case) -> None:
        a, b = case.build(seed=3).train(), case.build(seed=3).train()
        for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert na == nb and torch.equal(pa, pb), na
        batch = case.data.batch(slice(0, 8))
        losses = []
        for model in (a, b):
            torch.manual_seed(5)
            loss = ops.loss(model, batch, host=case.host)
            losses.append({k: v.item() for k, v in (loss if isinstance(loss, dict) else {"main": loss}).items()})
        assert losses[0] == losses[1]

    def test_training_steps_then_the_checkpoint_loads_back_equal(self, case: Case, tmp_path: Any) -> None:
        model = case.build().train()
        wanted = {k: tuple(v) if isinstance(v, list) else v for k, v in model.trainer_defaults.items()
                  if k in ("lr", "betas", "optimizer")}
        config = TrainerConfig(steps=2, batch_size=16, log_every=1, **wanted)
        run = tmp_path / "run"
        write_run(run, {"format": 1, "model": case.model_id, "model_config": cfg.to_dict(model.config),
                        "dataset": case.data.info.name, "data": cfg.to_dict(case.data.info),
                        "trainer": cfg.to_dict(config)})
        last = Trainer(model, case.data, config, run_dir=run, quiet=True).fit()
        assert all(torch.isfinite(torch.tensor(v)) for k, v in last.items() if k.startswith("loss/"))
        loaded = load_run(run, ema=False, host=case.host).model
        for (n1, t1), (n2, t2) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert n1 == n2 and torch.equal(t1.cpu(), t2.cpu()), n1
        batch = case.data.batch(slice(0, 8))
        outs = []
        for m in (model.eval(), loaded):
            torch.manual_seed(7)
            loss = ops.loss(m, batch, host=case.host)
            outs.append({k: v.item() for k, v in (loss if isinstance(loss, dict) else {"main": loss}).items()})
        assert outs[0] == outs[1], "the loaded model computes another loss"
