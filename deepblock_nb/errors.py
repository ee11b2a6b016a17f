"""The one error hierarchy of deepblock_nb.

Every error a user can cause derives from :class:`DeepBlockError`. Messages name
the file or record concerned, the problem, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AnnotationError",
    "ArgumentError",
    "ArgumentTypeError",
    "CategoryError",
    "DecompressionBombError",
    "DeepBlockError",
    "DependencyError",
    "DeviceMemoryError",
    "FormatDependencyError",
    "FormatError",
    "ImageFailures",
    "ImageReadError",
    "JobError",
    "ModelError",
    "ModelNotPicklableError",
    "PathError",
    "ProjectError",
    "ProjectExistsError",
    "ProjectNotFoundError",
    "RecordNotFoundError",
    "UnsupportedFormatError",
]


class DeepBlockError(Exception):
    """Base class of every error deepblock_nb raises on purpose."""


class ProjectError(DeepBlockError):
    """The project directory or its database is missing, corrupt or in use."""


class ProjectExistsError(ProjectError, FileExistsError):
    """``Project.create`` was given a path that already holds something."""


class ProjectNotFoundError(ProjectError, FileNotFoundError):
    """``Project.open`` was given a path that holds no project."""


class ImageReadError(DeepBlockError):
    """An image file could not be read: missing, truncated, corrupt or not an image."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class UnsupportedFormatError(ImageReadError):
    """The file is an image, but in a format or compression we cannot decode."""


class DecompressionBombError(ImageReadError):
    """The image claims more pixels than the configured limit allows."""


class FormatError(DeepBlockError):
    """An annotation or results file does not follow its format."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class AnnotationError(DeepBlockError):
    """A box is invalid: inverted, empty, outside its image, or of no category."""


class CategoryError(DeepBlockError):
    """A category name is unknown, duplicated, or still in use."""


class RecordNotFoundError(DeepBlockError, KeyError):
    """An image, box, category or run id does not exist in the project."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PathError(DeepBlockError):
    """A path is unsafe (escapes the project directory) or clashes with another."""


class JobError(DeepBlockError):
    """A background job cannot start, or failed; ``__cause__`` holds the reason."""


class ImageFailures(JobError):
    """Some images of a job failed; the others' results are kept.

    Attributes:
        failures: image name -> the error it raised.
        done: ids of the images that were processed.
    """

    def __init__(self, message: str, failures: dict[str, BaseException], done: list[int]) -> None:
        super().__init__(message)
        self.failures = failures
        self.done = done


class ModelError(DeepBlockError):
    """A model preset is unknown, or a checkpoint or weights file cannot be used."""


class ModelNotPicklableError(ModelError):
    """The module given as ``model=`` cannot be pickled, so it cannot be sent to cluster workers."""


class WindowError(DeepBlockError, ValueError):
    """A ``read_region`` window is empty or not fully inside the image level."""


class EvaluationError(DeepBlockError, ValueError):
    """The inputs of an evaluation are inconsistent (lengths, missing scores, bad boxes)."""


class ArgumentError(DeepBlockError, ValueError):
    """An argument of a call has a value that cannot be used (out of range, unknown
    name, mismatched lengths). Also a ``ValueError``, for callers that catch that."""


class DisplayError(ArgumentError):
    """A display setting does not fit its image: a band it lacks, a window with
    ``lo >= hi`` or not finite, or the wrong number of windows for the bands shown."""


class ArgumentTypeError(DeepBlockError, TypeError):
    """An argument of a call has the wrong type, or an unknown keyword was given.
    Also a ``TypeError``, for callers that catch that."""


class DeviceMemoryError(DeepBlockError):
    """The accelerator ran out of memory (a CUDA or MPS out-of-memory error): the
    message says which batch size to lower."""


class DependencyError(DeepBlockError, ImportError):
    """An optional dependency that a feature needs is not installed: the message names
    the extra to install (``pip install deepblock-nb[geo]``). Also an ``ImportError``."""


class FormatDependencyError(UnsupportedFormatError, DependencyError):  # type: ignore[misc]  # .path: the file
    """An image format that only an optional extra can read, and the extra is not
    installed (a MIRAX slide without ``deepblock-nb[slides]``): the message names the
    file and the ``pip install``. Both an ``ImageReadError`` (it concerns one image
    file) and a ``DependencyError`` (an ``ImportError``)."""
