"""The seviz error family: every error seviz raises on purpose is a :class:`SevizError`.

The CLI prints a ``SevizError`` as a message (exit 2) and anything else as a bug,
with its traceback. Each error says what was wrong and how to fix it. The
classes also derive from the built-in exception they refine (``ValueError``,
``RuntimeError``), so code that caught those before keeps working.
"""

from __future__ import annotations


class SevizError(Exception):
    """Base of every error seviz raises on purpose; its message names the bad value and the fix.

    A library message names parameters in backticks (```batch_size```,
    ```overwrite=True```); ``param`` is the one that was wrong, when one was. The
    CLI shows each backticked parameter as the flag that sets it
    (``--batch-size``, ``--overwrite``).
    """

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class StoreError(SevizError, ValueError):
    """A file is not a seviz store, or does not hold what was asked of it."""


class StoreLockedError(StoreError):
    """Another run is writing the store (one writer per store)."""


class DiskFullError(SevizError, OSError):
    """No space is left on the device a file is written to; what was committed is kept."""


class OutputError(SevizError, FileExistsError):
    """An output would replace an existing file without ``overwrite``, or one of the command's inputs."""


class ModelLoadError(SevizError, ValueError):
    """A model or its weights could not be loaded; the message says how to fix it."""


class ClassResolutionError(SevizError, ValueError):
    """A requested class is unknown or ambiguous; the message lists the choices."""


class DataError(SevizError, ValueError):
    """The data folder cannot provide the requested images."""


class DataConfigError(SevizError, ValueError):
    """A preprocessing value (flag, ``--data-config`` file, argument or model config) is unusable."""


class NoSEBlocksError(SevizError, ValueError):
    """The model has no Squeeze-and-Excitation gate seviz can find."""


class PruningError(SevizError, ValueError):
    """An edit cannot be made as asked; the message names the bad value and the way out."""


class RecommendationError(SevizError, ValueError):
    """A file is not a valid seviz recommendation, or not one for this model."""


class EvaluationError(SevizError, ValueError):
    """The evaluation cannot run as asked; the message says why and what to do."""


class AppPathError(SevizError, ValueError):
    """A store path the app may not open (outside the root, or missing)."""


class GateErrorTooLarge(SevizError, RuntimeError):
    """The fast mode's gates differ from exact fp32 gates by more than allowed."""


class DeviceError(SevizError, ValueError):
    """The device asked for is unknown or unavailable."""


class RecordError(SevizError, ValueError):
    """A recording cannot run as configured; the message names the parameter and the fix."""


class UsageError(SevizError, ValueError):
    """A parameter has a value seviz cannot use; the message names it and the values it takes."""


class AnalysisError(SevizError, ValueError):
    """Statistics cannot be computed with these settings."""
