"""Exceptions a user can act on. The CLI prints their message as one line and exits 2 (or 1)."""


class UnigenError(Exception):
    """Base class: a message meant for the user, printed as one line by the CLI."""

    exit_code = 2


class UnknownId(UnigenError, KeyError):
    """An id (model, dataset, sampler, metric) that no installed plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(UnigenError, ValueError):
    """A config value that is invalid, or a key the config does not have."""


class DataError(UnigenError):
    """Missing or malformed data."""


class CheckpointError(UnigenError):
    """A run directory or checkpoint that cannot be read."""


class TrainingDiverged(UnigenError):
    """A non-finite loss or gradient stopped training; the last good checkpoint is kept."""

    exit_code = 1


class UnsupportedOperation(UnigenError, NotImplementedError):
    """An operation a model cannot do, e.g. ``logprob`` of a GAN. The message says why."""


class CheckpointWriteError(UnigenError):
    """A checkpoint could not be written (a full disk, say); the previous one is intact."""

    exit_code = 1


class Interrupted(UnigenError):
    """Training was stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) after saving a checkpoint."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # what a shell reports for a process ended by that signal
