"""Typed failures of a generator call, raised after the last retry (never a hang).

Each carries how many attempts were made and the last HTTP status seen (None when no response
came back), so a caller can log or map them without parsing the message.
"""

from __future__ import annotations

from hydralm.errors import GeneratorError

__all__ = [
    "GeneratorBadResponse",
    "GeneratorCallError",
    "GeneratorCircuitOpen",
    "GeneratorRequestRejected",
    "GeneratorTimeout",
    "GeneratorUnavailable",
]


class GeneratorCallError(GeneratorError):
    """A call to the generator's HTTP API failed; base of the specific failures below."""

    def __init__(self, message: str, *, attempts: int, last_status: int | None = None,
                 url: str = "") -> None:
        super().__init__(f"{message} (after {attempts} attempt(s), last status "
                         f"{last_status if last_status is not None else 'none'}, url {url!r})")
        self.attempts = attempts
        self.last_status = last_status
        self.url = url


class GeneratorTimeout(GeneratorCallError):
    """Every attempt ran past `timeout_s`."""


class GeneratorUnavailable(GeneratorCallError):
    """The server kept answering 429/5xx or dropping the connection."""


class GeneratorCircuitOpen(GeneratorUnavailable):
    """Refused without calling the server: the circuit breaker is open after consecutive
    failures. `retry_after_s` is how long until the breaker lets a probe through."""

    def __init__(self, message: str, *, attempts: int, retry_after_s: float,
                 last_status: int | None = None, url: str = "") -> None:
        super().__init__(message, attempts=attempts, last_status=last_status, url=url)
        self.retry_after_s = retry_after_s


class GeneratorBadResponse(GeneratorCallError):
    """The server kept answering with a body that is not the OpenAI response shape."""


class GeneratorRequestRejected(GeneratorCallError):
    """A 4xx other than 429: the request itself is wrong (model name, key, params); not retried."""
