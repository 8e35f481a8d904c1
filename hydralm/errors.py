"""Exceptions of the library. Each names the bad value; the serving edge maps them to HTTP."""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataValidationError",
    "GeneratorError",
    "HistoryConflictError",
    "HistoryUnavailableError",
    "HydraError",
    "NotFoundError",
    "StaleHeadError",
    "UnknownTaskError",
    "UnsupportedTaskError",
]


class HydraError(Exception):
    """Base class for every error hydralm raises on purpose."""


class ConfigError(HydraError, ValueError):
    """A configuration file or value is invalid; the message says which and how to fix it."""


class DataValidationError(HydraError, ValueError):
    """A data file or record is malformed.

    Carries where: the file, the record index and the field, so a user can find it.
    """

    def __init__(self, message: str, *, path: str | None = None, record: int | None = None,
                 field: str | None = None) -> None:
        where = []
        if path is not None:
            where.append(f"file {path}")
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path = path
        self.record = record
        self.field = field


class UnknownTaskError(HydraError, ValueError):
    """A task name that is not in the registry."""


class UnsupportedTaskError(HydraError, ValueError):
    """An operation the task cannot do, e.g. a pseudo-query from a LaMP-1 item (no item label)."""


class NotFoundError(HydraError, LookupError):
    """A user, head, artifact or item that does not exist."""


class GeneratorError(HydraError, RuntimeError):
    """The black-box generator failed after every retry (see hydralm.generator for subclasses)."""


class HistoryConflictError(HydraError, ValueError):
    """An appended item reuses an id the user's history already has, with other content (a
    re-sent identical item is not an error: appends are idempotent by item id)."""

    def __init__(self, message: str, *, index: int, item_id: str) -> None:
        super().__init__(message)
        self.index = index
        self.item_id = item_id


class HistoryUnavailableError(HydraError, ConnectionError):
    """The history database cannot be reached (down, restarting, pool exhausted); retry later."""

    retry_after_s = 1.0  # the API's Retry-After: the pool reconnects by itself


class ArtifactError(HydraError, RuntimeError):
    """An artifact is missing, torn, fails its checksum or belongs to another base version."""


class StaleHeadError(ArtifactError, NotFoundError):
    """A user's head fitted on an older base than the registry's current one. For the current
    base the user has no head yet (a NotFoundError: serving falls back to the global head) until
    the fit stage refits it."""
