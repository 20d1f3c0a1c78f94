"""Domain exceptions. Each message names the offending file or value and what was expected."""
from __future__ import annotations


class HTRError(Exception):
    """Base class of every error this package raises on purpose."""


class ShapeError(HTRError, ValueError):
    """A tensor has the wrong rank, size or layout."""


class UnknownCellError(HTRError, ValueError):
    """A recurrent cell name that the factory does not know."""


class CodecError(HTRError, ValueError):
    """A character or index the codec cannot map."""


class ImageError(HTRError, ValueError):
    """An image that is unreadable, empty, corrupt or of an unsupported size."""


class DatasetError(HTRError, ValueError):
    """A dataset folder or annotation file that does not follow its documented format."""


class CheckpointError(HTRError, ValueError):
    """A checkpoint or shipped model that cannot be loaded."""


class RunLogError(HTRError, ValueError):
    """A training run's log directory without the expected CSV log or column."""


class TimeLimitError(HTRError, TimeoutError):
    """A request (an app call) that ran past its time limit and was stopped."""
