"""A third-party training logger, registered through ``unigen_register_loggers``:
``unigen train ... --logger example`` appends every scalar and every picture it receives to
``RUN/example-logger.jsonl``."""

from __future__ import annotations

import json

from unigen.plugin import Logger, LoggerSpec, hookimpl


class ExampleLogger(Logger):
    def log_scalars(self, step, scalars):
        self._write({"step": step, "scalars": scalars})

    def log_image(self, step, name, image):
        self._write({"step": step, "image": name, "shape": list(image.shape)})

    def _write(self, entry):
        with open(self.run_dir / "example-logger.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")


@hookimpl
def unigen_register_loggers(register):
    register(LoggerSpec(id="example", create=ExampleLogger, description="every scalar as a JSON line"))
