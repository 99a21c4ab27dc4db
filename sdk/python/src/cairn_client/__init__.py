"""Cairn's Python client: standard library only, typed, blocking; watches are iterators.

    from cairn_client import Client
    with Client(["http://127.0.0.1:7001", "http://127.0.0.1:7002"], token="...") as kv:
        kv.put("user:1", {"name": "Ada"})
        item = kv.get("user:1")          # Item(key, value, version, expires_at) or None
"""

from .client import UNSET, Client
from .coordination import Election, Leader, Lease, Lock, Observe
from .errors import (
    BadRequest,
    CairnError,
    Compacted,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnknownOutcome,
)
from .types import Absent, BatchResult, Change, Deleted, Item, Response, Retry, Timeouts, WatchEvent
from .watch import Watch

__version__ = "0.1.0"

__all__ = [
    "Client",
    "UNSET",
    "Item",
    "Absent",
    "Deleted",
    "BatchResult",
    "Change",
    "WatchEvent",
    "Watch",
    "Lease",
    "Lock",
    "Election",
    "Leader",
    "Observe",
    "Response",
    "Retry",
    "Timeouts",
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
]
