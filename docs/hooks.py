"""mkdocs hook: generate the family pages and the CLI reference before the files are collected."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import gen_families  # noqa: E402


def on_pre_build(config: Any) -> None:
    gen_families.main([config["docs_dir"]])
