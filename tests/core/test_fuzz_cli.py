"""Fuzz the command line: train, sample and eval flags against damaged run directories and odd paths
(files where folders are expected, folders where files are, unreadable bytes, symlinks). Whatever
happens, no traceback: exit 0, 1 (a run that stopped) or 2 (a user's mistake, one line)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unigen.cli import main

TINY = ["--quiet", "--set", "z_dim=2", "--set", "width=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    assert main(["train", "vae", "--data", "digits", "--batch-size", "32", "--steps", "2", "--checkpoint-every", "1",
                 "--out", str(out), *TINY]) == 0
    return out


# -- file-system situations, applied to a fresh copy of a trained run ----------------------------------------
def _replace(path: Path, content: bytes | None) -> None:
    """Put bytes (or, with None, an empty folder) where ``path`` was."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)


def _targets(run: Path) -> dict[str, Path]:
    ck = run / "checkpoints"
    return {"run.json": run / "run.json", "latest": ck / "latest", "checkpoints": ck, "metrics": run / "metrics.jsonl",
            "weights": ck / "step_00000002" / "model.safetensors", "state": ck / "step_00000002" / "state.pt",
            "step": ck / "step_00000002", "lock": run / ".lock"}


_damage = st.one_of(
    st.just(None), st.just(None), st.just(None),  # mostly left as it is
    st.tuples(st.sampled_from(sorted(_targets(Path(".")))),
              st.one_of(st.none(), st.binary(max_size=48),
                        st.sampled_from([b"{}", b"[]", b'{"model": 3}', b"step_00000001", b"../../x",
                                         b"step_00000002/../../..", b"12345@host"]))),
    st.tuples(st.sampled_from(["latest", "run.json", "step"]), st.sampled_from(["link-outside", "link-dangling"])),
)


def _apply(run: Path, outside: Path, damage) -> None:
    if damage is None:
        return
    target, how = damage
    path = _targets(run)[target]
    if how in ("link-outside", "link-dangling"):
        _replace(path, b"")
        path.unlink()
        path.symlink_to(outside if how == "link-outside" else run / "no-such-thing")
    else:
        _replace(path, how)


# -- flags: each mostly valid, so that the runs also get far (training, sampling, evaluating) -----------------
def _mostly(valid: list[str], invalid: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(valid * max(4, 4 * len(invalid)) + invalid)  # about 4 in 5 valid


_BAD_INTS = ["-1", "0", "abc", "1e3", str(2**70), "-" + str(2**70)]
_count = _mostly(["1", "2"], _BAD_INTS)
_seed = _mostly(["0", "7", "-1"], ["abc", str(2**70), "-" + str(2**70)])
_paths = _mostly(["RUN"], ["NEW", "FILE", "UNDER_FILE", "DIR", "MISSING/x", "/dev/null", "LINK_FILE"])


def _path(token: str, run: Path, tmp: Path, suffix: str = "") -> str:
    (tmp / "FILE").write_bytes(b"\x00\xffnot a run")
    (tmp / "DIR").mkdir(exist_ok=True)
    if not (tmp / "LINK_FILE").is_symlink():
        (tmp / "LINK_FILE").symlink_to(tmp / "FILE")
    table = {"RUN": run, "NEW": tmp / f"new{suffix}", "FILE": tmp / "FILE", "UNDER_FILE": tmp / "FILE" / f"x{suffix}",
             "DIR": tmp / "DIR", "MISSING/x": tmp / "missing" / f"x{suffix}", "/dev/null": Path("/dev/null"),
             "LINK_FILE": tmp / "LINK_FILE"}
    return str(table[token])


@st.composite
def _argv(draw, run: Path, tmp: Path) -> list[str]:
    command = draw(st.sampled_from(["train", "sample", "eval"]))

    def opt(flag: str, values: st.SearchStrategy[str]) -> list[str]:
        return [flag, draw(values)] if draw(st.integers(0, 2)) == 0 else []

    def where(values: st.SearchStrategy[str], suffix: str = "") -> st.SearchStrategy[str]:
        return values.map(lambda t: _path(t, run, tmp, suffix))

    if command == "train":
        out = draw(where(_mostly(["NEW", "RUN"], ["FILE", "UNDER_FILE", "DIR", "MISSING/x", "/dev/null", "LINK_FILE"])))
        data = draw(_mostly(["digits"], ["moons", "nodata", "FILE", "DIR", "folder:DIR"]))
        data = _path(data, run, tmp) if data in ("FILE", "DIR") else data.replace("DIR", str(tmp / "DIR"))
        model = draw(_mostly(["vae"], ["fsq", "nosuch", ""]))
        argv = ["train", model, "--data", data, *(TINY if model == "vae" else ["--quiet"]), "--batch-size", "32",
                "--steps", draw(_mostly(["0", "1", "2"], ["-1", "x"])), "--out", out]
        argv += opt("--batch-size", _mostly(["1", "16"], ["0", "-3", "100000"]))
        argv += opt("--seed", _seed) + opt("--lr", _mostly(["0.001"], ["inf", "nan", "0", "-1"]))
        argv += opt("--checkpoint-every", _count) + opt("--keep-checkpoints", _count)
        argv += opt("--device", _mostly(["cpu"], ["cuda", "tpu"]))
        argv += opt("--set", _mostly(["log_every=1", "checkpoint_minutes=0", "beta=0.5"],
                                     ["nokey=1", "beta=-1", "log_every=0", "checkpoint_minutes=-1", "weight_decay=inf",
                                      "levels=[1]", "z_dim=abc", "optimizer=sgd"]))
        if draw(st.integers(0, 5)) == 0:
            argv += ["--config", draw(where(st.sampled_from(["FILE", "DIR", "MISSING/x", "LINK_FILE"])))]
        argv += ["--resume"] if draw(st.integers(0, 2)) else []
    elif command == "sample":
        argv = ["sample", draw(where(_paths)), "--n", draw(_count)]
        argv += opt("--batch-size", _count) + opt("--steps", _count) + opt("--seed", _seed)
        suffix = draw(_mostly([".npy", ".png"], [".txt", ""]))
        argv += opt("--out", where(_mostly(["NEW"], ["FILE", "DIR", "MISSING/x", "UNDER_FILE", "LINK_FILE"]), suffix))
        argv += opt("--set", _mostly(["beta=2"], ["nokey=1", "prompt=x", "sampler=nosuch", "z_dim=3"]))
        argv += ["--no-ema"] if draw(st.booleans()) else []
        argv += opt("--device", _mostly(["cpu"], ["cuda"]))
    else:
        argv = ["eval", draw(where(_paths)), "--n", draw(_mostly(["3"], ["-1", "0", "abc"]))]
        argv += opt("--metrics", _mostly(["nll"], ["nosuch", "", ",", "nll,nll"]))
        argv += opt("--seed", _seed) + opt("--sample-steps", _count) + opt("--device", _mostly(["cpu"], ["cuda"]))
        argv += opt("--data-dir", where(st.sampled_from(["FILE", "DIR", "MISSING/x"])))
        argv += ["--json"] if draw(st.booleans()) else []
    return argv


def _one(trained: Path, data, capsys) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="unigen-fuzz-"))
    try:
        run = Path(shutil.copytree(trained, tmp / "run", symlinks=True))
        outside = tmp / "outside.txt"
        outside.write_text("secret contents\n")
        _apply(run, outside, data.draw(_damage, label="damage"))
        argv = data.draw(_argv(run, tmp), label="argv")
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: exit 2 with its usage line
            code = exc.code
        _, err = capsys.readouterr()
        assert "Traceback" not in err, err
        assert code in (0, 1, 2), (code, err)
        if code == 2:
            lines = [line for line in err.splitlines() if line.strip() and "warning" not in line]
            assert lines and all("error" in line for line in lines), err
        assert "secret contents" not in err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_settings = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=60, **_settings)
@given(data=st.data())
def test_fuzzed_commands_and_damaged_runs_never_give_a_traceback(trained, data, capsys):
    _one(trained, data, capsys)


@pytest.mark.slow
@settings(max_examples=500, **_settings)
@given(data=st.data())
def test_fuzzed_commands_and_damaged_runs_never_give_a_traceback_500(trained, data, capsys):
    _one(trained, data, capsys)
