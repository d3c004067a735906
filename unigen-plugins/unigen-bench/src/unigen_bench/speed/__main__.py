"""``python -m unigen_bench.speed --probe MODE MODEL CONV``: one malloc probe, run in a fresh process
by the ``malloc`` section."""

from __future__ import annotations

import json
import sys

from .memory import probe


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 4 and argv[0] == "--probe":
        print(json.dumps(probe(argv[1], argv[2], argv[3])))
        return 0
    print("usage: python -m unigen_bench.speed --probe MODE MODEL CONV", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
