"""Typed errors. Every failure of a call is one of these, so callers branch on the class (or on
`code`, the server's machine code) rather than on message text, which the server may change."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Type

__all__ = [
    "CairnError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PreconditionFailed",
    "Compacted",
    "RateLimited",
    "Unavailable",
    "UnknownOutcome",
    "error_for_status",
]


class CairnError(Exception):
    """Base of every error this client raises.

    `status` is the HTTP status, or None when no answer came (a refused connection, a timeout).
    `code` is the server's error code (`version_mismatch`, `no_leader`, ...), or a client-side
    code such as `connection_failed` when there was no answer. `request_id` is the id the
    request carried (`X-Request-Id`); the client sends the same id on every attempt of one call,
    so the nodes' logs of all its attempts share it.

    `prior_unknown` is True when an earlier attempt of this same call may have been applied
    (its connection broke after the request was sent) before the attempt that produced this
    error. A `Conflict` on a conditional put with `prior_unknown` may be that earlier attempt's
    own write, not someone else's.
    """

    status: Optional[int]
    code: str
    message: str
    request_id: Optional[str]
    details: Dict[str, Any]
    prior_unknown: bool
    attempts: List[str]

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: str = "",
        request_id: Optional[str] = None,
        details: Optional[Mapping[str, Any]] = None,
        prior_unknown: bool = False,
        attempts: Optional[List[str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        # The server's whole error object (code and message included), for fields a class does
        # not lift out, such as a batch op's `index`.
        self.details = dict(details or {})
        self.prior_unknown = prior_unknown
        # One line per failed attempt ("http://10.0.0.1:7001: 503 no_leader: ..."), so an
        # Unavailable says what every endpoint answered, not only the last one.
        self.attempts = list(attempts or [])

    @property
    def requestId(self) -> Optional[str]:  # noqa: N802 - the contract's spelling, for parity
        return self.request_id

    def __str__(self) -> str:
        head = f"{self.status} {self.code}" if self.status is not None else self.code
        text = f"{head}: {self.message}" if head else self.message
        if self.attempts and len(self.attempts) > 1:
            text += " (attempts: " + "; ".join(self.attempts) + ")"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class BadRequest(CairnError):
    """400, 408, 413: the request is malformed; fix it before trying again. Also raised before
    any request for a key no URL can name ("", ".", "..")."""


class Unauthorized(CairnError):
    """401: no credential, or one that matches no live token (unknown, revoked, expired)."""


class Forbidden(CairnError):
    """403: the token lacks the permission or the namespace; `quota_exceeded` included."""


class NotFound(CairnError):
    """404. `get` answers None and `delete` answers False instead of raising this."""


class Conflict(CairnError):
    """409: a condition did not hold (`key_exists`, `version_mismatch`, `value_mismatch`) or an
    increment cannot apply (`not_a_number`, `overflow`, `out_of_range`). Nothing was written."""

    @property
    def current_version(self) -> Optional[str]:
        value = self.details.get("currentVersion")
        return None if value is None else str(value)

    @property
    def currentVersion(self) -> Optional[str]:  # noqa: N802 - the contract's spelling
        return self.current_version


class PreconditionFailed(CairnError):
    """412: an `If-Match` / `If-None-Match` header did not hold."""


class Compacted(CairnError):
    """410 on a watch (or `event: compacted` during one): the node's history no longer reaches
    back to the resume point. List again, then watch from the listing's index."""

    @property
    def compacted_index(self) -> Optional[str]:
        value = self.details.get("compactedIndex")
        return None if value is None else str(value)

    @property
    def current_index(self) -> Optional[str]:
        value = self.details.get("currentIndex")
        return None if value is None else str(value)


class RateLimited(CairnError):
    """429: over the node's `--rate-limit` (or its watcher cap). Nothing was done.
    `retry_after` is the server's `Retry-After`, in seconds."""

    retry_after: Optional[float]

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    @property
    def retryAfter(self) -> Optional[float]:  # noqa: N802 - the contract's spelling
        return self.retry_after


class Unavailable(CairnError):
    """No endpoint could serve the call: 502, 503, 507, connections that failed before any
    answer, or reads that timed out, after every allowed attempt. A write that raises this was
    not applied (an attempt whose outcome is unknown raises UnknownOutcome instead)."""


class UnknownOutcome(CairnError):
    """504, a 500 on a write, or a write whose connection broke or timed out after the request
    was sent. The write may or may not have been applied: re-read, or make the write
    conditional, before doing it again."""


# HTTP status -> class, for the statuses whose meaning does not depend on the kind of call.
_BY_STATUS: Dict[int, Type[CairnError]] = {
    400: BadRequest,
    408: BadRequest,
    413: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Compacted,
    412: PreconditionFailed,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    507: Unavailable,
    504: UnknownOutcome,
}


def error_for_status(status: int, *, write: bool) -> Type[CairnError]:
    """The class for an answer with this status. A 500 on a write is an unknown outcome (the
    server may have failed after applying it); anything the contract does not name is the base
    class, with its status and code."""
    if status == 500 and write:
        return UnknownOutcome
    return _BY_STATUS.get(status, CairnError)
