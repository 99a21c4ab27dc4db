"""Result types. Each is a dataclass with snake_case fields for Python code, and `to_dict()`
giving the server's camelCase JSON shape, so results can be logged, compared with the API's
documents, or sent on as JSON unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

__all__ = [
    "Item",
    "Absent",
    "Deleted",
    "BatchResult",
    "Change",
    "WatchEvent",
    "Response",
    "Retry",
    "Timeouts",
]


@dataclass(frozen=True)
class Item:
    """A stored item. `version` is a decimal string (keep it a string: it can pass 2**53);
    `expires_at` is RFC 3339 text or None.

    `has_value` is False only for scan items read with `values=False`, whose `value` is then
    None without the item being null; `to_dict()` leaves `value` out for those, as the server
    does."""

    key: str
    value: Any
    version: str
    expires_at: Optional[str]
    has_value: bool = field(default=True, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Item":
        return cls(
            key=str(data.get("key", "")),
            value=data.get("value"),
            version=str(data.get("version", "")),
            expires_at=data.get("expiresAt"),
            has_value="value" in data,
        )

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"key": self.key}
        if self.has_value:
            out["value"] = self.value
        out["version"] = self.version
        out["expiresAt"] = self.expires_at
        return out


@dataclass(frozen=True)
class Absent:
    """A batch `get` of a key that is absent or expired: `{"key": k, "found": false}`."""

    key: str
    found: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return {"key": self.key, "found": False}


@dataclass(frozen=True)
class Deleted:
    """A batch `delete`: `{"key": k, "deleted": true|false}` (false when the key was absent)."""

    key: str
    deleted: bool

    def to_dict(self) -> Dict[str, Any]:
        return {"key": self.key, "deleted": self.deleted}


BatchResult = Union[Item, Absent, Deleted]


def batch_result_from_json(data: Mapping[str, Any]) -> BatchResult:
    """One element of a batch's `results`, typed by its shape (the server gives no op name)."""
    if "deleted" in data:
        return Deleted(key=str(data.get("key", "")), deleted=bool(data["deleted"]))
    if data.get("found") is False:
        return Absent(key=str(data.get("key", "")))
    return Item.from_json(data)


@dataclass(frozen=True)
class Change:
    """One key's change in a watch event. `op` is `set`, `increment`, `delete` or `expire`.
    `has_value` is False when the server sent no `value` (a delete, or a watch with
    `values=False`)."""

    op: str
    key: str
    version: str
    value: Any = None
    expires_at: Optional[str] = None
    has_value: bool = field(default=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Change":
        return cls(
            op=str(data.get("op", "")),
            key=str(data.get("key", "")),
            version=str(data.get("version", "")),
            value=data.get("value"),
            expires_at=data.get("expiresAt"),
            has_value="value" in data,
        )

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"op": self.op, "key": self.key, "version": self.version}
        if self.has_value:
            out["value"] = self.value
        out["expiresAt"] = self.expires_at
        return out


@dataclass(frozen=True)
class WatchEvent:
    """One Raft entry's changes under the watched prefix (a batch arrives whole, in one event).
    `index` is the entry's log index, a decimal string, and the event's SSE id."""

    index: str
    changes: List[Change]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "WatchEvent":
        return cls(
            index=str(data.get("index", "")),
            changes=[Change.from_json(c) for c in data.get("changes") or []],
        )

    def to_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "changes": [c.to_dict() for c in self.changes]}


@dataclass(frozen=True)
class Response:
    """The answer to `Client.request`: the status, the headers (names lower-cased) and the body,
    parsed from JSON when it is JSON (the whole envelope, `data` included), else text."""

    status: int
    headers: Dict[str, str]
    body: Any

    def to_dict(self) -> Dict[str, Any]:
        return {"status": self.status, "body": self.body}


@dataclass(frozen=True)
class Retry:
    """How hard a call tries.

    `attempts`: tries in all, across the endpoints in turn; None means twice the number of
    endpoints, so every endpoint gets two chances (a node that was electing on the first pass
    usually has a leader on the second). 1 turns retries off.
    `backoff`: the pause before the second try, in seconds, doubled before each further one
    (with jitter, so many clients do not come back in step), capped at `max_backoff`.
    """

    attempts: Optional[int] = None
    backoff: float = 0.1
    max_backoff: float = 1.0


@dataclass(frozen=True)
class Timeouts:
    """`connect`: seconds to open a connection (TCP and TLS). Kept short, because a connection
    that was never opened is always safe to retry elsewhere, so the sooner the better.
    `request`: seconds any one read or write on an open connection may wait. The default is
    above the server's own write timeout (10 s), so a slow commit is reported by the server as
    a 504 with a message rather than by a bare client timeout."""

    connect: float = 2.0
    request: float = 15.0
