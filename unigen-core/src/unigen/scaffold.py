"""``unigen new-plugin NAME``: write a ready plugin distribution, the way cookiecutter templates start
pytest and llm plugins.

The distribution ``unigen-NAME`` holds a working model (a diagonal Gaussian written as a one-layer affine
flow, so every check of the contract applies to it), the plugin module that registers it under the id
NAME, tests that run the contract kit (``unigen.plugin.testing``) and one property of the model, a noxfile
and a README. It passes its own tests unchanged: ``pip install -e './NAME[test]' && pytest``.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import __version__
from .errors import UnigenError

NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "unigen-{name}"
version = "0.1.0"
description = "A unigen plugin: the {name} model"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["unigen-core>={core_minor},<{core_next}"]

[project.optional-dependencies]
# The contract kit (pytest plugin `unigen`) and hypothesis, for this distribution's own tests.
test = ["unigen-core[testing]>={core_minor},<{core_next}"]

# The one line that makes unigen find the plugin: a module of hook implementations in group "unigen".
[project.entry-points.unigen]
{name} = "{package}.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

MODEL = '''\
"""{title}: a diagonal Gaussian written as a one-layer affine flow (replace it with your model).

    z = (x - mu) * exp(-log_sigma),    log p(x) = log N(z; 0, I) - sum_d log_sigma_d

``forward`` maps data to N(0, I) noise one-to-one (``bijective``), ``reverse`` inverts it, ``logprob`` is
exact, so the contract kit checks the change of variables, the inverse and that the density integrates
to 1.
"""

from __future__ import annotations

import math

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn

from unigen.plugin import Batch, DataInfo, GenerativeModel


@attrs.frozen(kw_only=True)
class {cls}Config:
    # The initial log standard deviation of every dimension (0: unit variance).
    init_log_sigma: float = attrs.field(default=0.0, validator=[v.instance_of(float), v.ge(-5.0), v.le(5.0)])


class {cls}(GenerativeModel):
    family = "{name}"
    paradigm = "flow"
    logprob_kind = "exact"
    bijective = True
    data_kinds = ("vector", "image")
    Config = {cls}Config
    trainer_defaults = {{"lr": 5e-2}}

    def __init__(self, config: {cls}Config, data: DataInfo) -> None:
        super().__init__(config, data)
        self.mu = nn.Parameter(torch.zeros(data.shape))
        self.log_sigma = nn.Parameter(torch.full(data.shape, config.init_log_sigma))

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Data (B, *D) -> noise z (B, *D). ``t`` is unused: the map has no time."""
        return (x - self.mu) * torch.exp(-self.log_sigma)

    def reverse(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Noise z (B, *D) -> data (B, *D), the exact inverse of ``forward``."""
        return z * torch.exp(self.log_sigma) + self.mu

    def loss(self, batch: Batch, group: str | None = None) -> Tensor:
        """Negative log-likelihood in nats per dimension."""
        return -self.logprob(batch.x).mean() / self.data.dim

    def sample(self, num_samples: int, steps: int | None = None) -> Tensor:
        z = torch.randn(num_samples, *self.data.shape, device=self.device, dtype=self.mu.dtype)
        x = self.reverse(z)
        return x.clamp(-1, 1) if self.data.is_image else x  # images live in [-1, 1]

    def logprob(self, x: Tensor) -> Tensor:
        """log p(x) in nats, shape (B,)."""
        z = self.forward(x).flatten(1)
        log_normal = -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
        return log_normal - self.log_sigma.sum()
'''

PLUGIN = '''\
"""Hook implementations: this module is the entry point named in pyproject.toml."""

from unigen.plugin import ModelSpec, hookimpl

from .model import {cls}


@hookimpl
def unigen_register_models(register):
    register(ModelSpec(id="{name}", model_cls={cls}, description="{title} (a unigen plugin)"))
'''

TEST_CONTRACT = '''\
"""The whole unigen model contract on this plugin's ids (the kit ships with unigen-core)."""

from unigen.plugin import testing

Test{cls}Contract = testing.contract_tests("{name}")
'''

TEST_MODEL = '''\
"""Properties of this model beyond the shared contract."""

import torch
from hypothesis import given
from hypothesis import strategies as st

import unigen
from unigen.plugin import testing


@given(seed=st.integers(0, 1000), log_sigma=st.floats(-2.0, 2.0))
def test_logprob_is_the_diagonal_normal_density(seed, log_sigma):
    torch.manual_seed(seed)
    info = unigen.DataInfo(name="toy", shape=(3,), kind="vector")
    model = unigen.build_model("{name}", info, {{"init_log_sigma": log_sigma}})
    x = torch.randn(8, 3)
    normal = torch.distributions.Normal(model.mu, model.log_sigma.exp())
    assert torch.allclose(model.logprob(x), normal.log_prob(x).sum(1), atol=1e-4)


def test_it_learns_the_mean_of_the_data():
    data = unigen.load_dataset("moons")
    model = testing.quick_train("{name}", data, steps=150, batch_size=256)
    assert torch.allclose(model.mu, data.x.mean(0), atol=0.15)
'''

NOXFILE = '''\
"""`nox`: this plugin's tests, with the plugin and the contract kit installed like a user would."""

import nox


@nox.session
def tests(session: nox.Session) -> None:
    session.install(".[test]")
    session.run("pytest", *session.posargs)
'''

README = '''\
# unigen-{name}

A [unigen](https://pypi.org/project/unigen-core/) plugin providing the model `{name}`.

```bash
pip install -e '.[test]'      # the plugin, unigen-core and the contract kit
pytest                        # the unigen contract (tests/test_contract.py) and the model's own tests
unigen models                 # lists {name}
unigen train {name} --data moons --steps 300 --out runs/{name}
```

`pytest --unigen-contract={name}` runs the contract without a test file. Edit
`src/{package}/model.py`: the contract checks what the model declares (`logprob_kind`, `bijective`,
`data_kinds`, `logprob_variants`).
'''


def files(name: str) -> dict[str, str]:
    """Relative path -> content of the distribution for plugin ``name``."""
    package = "unigen_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-"))
    major, minor = (int(v) for v in __version__.split(".")[:2])  # the plugin needs this core's minor series
    fmt = {"name": name, "package": package, "cls": cls, "title": cls,
           "core_minor": f"{major}.{minor}", "core_next": f"{major}.{minor + 1}"}
    return {
        "pyproject.toml": PYPROJECT.format(**fmt),
        "README.md": README.format(**fmt),
        "noxfile.py": NOXFILE,
        f"src/{package}/__init__.py": f'"""The unigen plugin {name}."""\n',
        f"src/{package}/model.py": MODEL.format(**fmt),
        f"src/{package}/plugin.py": PLUGIN.format(**fmt),
        "tests/test_contract.py": TEST_CONTRACT.format(**fmt),
        f"tests/test_{package.removeprefix('unigen_')}.py": TEST_MODEL.format(**fmt),
    }


def new_plugin(name: str, parent: Path) -> Path:
    """Write the distribution into ``parent / name``; nothing is written when the name or place is wrong."""
    if not NAME.match(name):
        raise UnigenError(f"plugin name {name!r} must be lowercase letters and digits, words joined by '-' "
                          "(e.g. 'maf' or 'neural-spline')")
    root = parent / name
    if root.exists():
        raise UnigenError(f"{root} already exists; choose another name or --dir")
    if not parent.is_dir():
        raise UnigenError(f"--dir {parent} is not a directory")
    for rel, text in files(name).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
