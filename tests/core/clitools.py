"""The command line run in-process for the core's tests: exit code, stdout and stderr of one call."""

from __future__ import annotations

from unigen.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``unigen ARGV`` through ``unigen.cli.main``; argparse's SystemExit becomes the exit code."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
