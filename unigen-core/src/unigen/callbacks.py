"""The trainer's callback interface (a logger is a callback found by name: :mod:`unigen.loggers`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Callback:
    """Hooks into the loop; override what you need. ``trainer`` is the running :class:`Trainer`."""

    def on_train_start(self, trainer: Any) -> None: ...
    def on_step_end(self, trainer: Any, step: int) -> None: ...
    def on_log(self, trainer: Any, record: dict[str, Any]) -> None: ...
    def on_checkpoint(self, trainer: Any, path: Path) -> None: ...
    def on_image(self, trainer: Any, name: str, image: Any) -> None: ...  # uint8 (H, W[, 3])
    def on_train_end(self, trainer: Any) -> None: ...
