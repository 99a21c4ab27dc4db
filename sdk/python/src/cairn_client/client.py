"""`Client`: the calls of Cairn's key/value API, with failover and read-your-writes."""

from __future__ import annotations

import json
import ssl
import threading
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote

from .errors import BadRequest, CairnError
from .transport import Kind, Reply, Transport, error_from_reply
from .types import BatchResult, Item, Response, Retry, Timeouts, batch_result_from_json
from .coordination import DEFAULT_OBSERVE_IDLE_TIMEOUT, Election, Leader, Lease, Lock, Observe, acquire_lock, campaign
from .watch import DEFAULT_IDLE_TIMEOUT, Watch

__all__ = ["Client"]


class _Unset:
    """The default of `if_value`: None is a JSON value one may compare with, so "no condition"
    needs its own marker."""

    _instance: Optional["_Unset"] = None

    def __new__(cls) -> "_Unset":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()

# Pythonic and contract spellings of batch op fields, mapped to the server's. The server refuses
# a field it does not know (400 unknown_field), so a misspelling is caught, not dropped.
_OP_FIELD_ALIASES = {
    "ttl": "ttlSeconds",
    "ttl_seconds": "ttlSeconds",
    "if_version": "ifVersion",
    "if_value": "ifValue",
    "if_absent": "ifNotExists",
    "ifAbsent": "ifNotExists",
    "if_not_exists": "ifNotExists",
}

RetryOption = Union[None, bool, int, Retry, Mapping[str, Any]]
TimeoutOption = Union[None, float, int, Timeouts]


class Client:
    """A Cairn client.

    `endpoints`: base URLs (`http://10.0.0.1:7001`; a bare `host:port` means http), tried in
    order. `token`: a token or the bootstrap admin token (sent as `Authorization: Bearer`).
    `namespace`: sent as `X-Cairn-Namespace` (only the admin token may pick one; a token is bound
    to its own). `timeout`: seconds one attempt may wait on the network (a number, or
    `Timeouts(connect=, request=)`). `retry`: a `Retry`, a number of attempts, or False / 0 for
    a single attempt. `read_your_writes`: see the README.

    A client is safe to share between threads. Close it (or use `with`) to drop its idle
    connections.
    """

    def __init__(
        self,
        endpoints: Union[str, Sequence[str]],
        token: Optional[str] = None,
        namespace: Optional[str] = None,
        timeout: TimeoutOption = None,
        retry: RetryOption = None,
        read_your_writes: bool = True,
        *,
        connect_timeout: Optional[float] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self._transport = Transport(
            endpoints,
            token=token,
            namespace=namespace,
            timeouts=_timeouts(timeout, connect_timeout),
            retry=_retry(retry),
            ssl_context=ssl_context,
        )
        self.read_your_writes = read_your_writes
        self._index = 0
        self._index_lock = threading.Lock()

    # -- read your writes --------------------------------------------------------------------

    @property
    def endpoints(self) -> List[str]:
        return [e.url for e in self._transport.endpoints]

    @property
    def last_index(self) -> Optional[str]:
        """The highest log index this client has seen (a write's version, a read's
        `X-Cairn-Index`), as a decimal string, or None before the first call."""
        with self._index_lock:
            return str(self._index) if self._index else None

    def observe_index(self, index: Union[str, int, None]) -> None:
        """Raises the client's index to `index` if it is higher. Use it to carry read-your-writes
        across clients: give one client's `last_index` to another (another process, a later
        web request), and that client's reads will not show an older state."""
        if index is None:
            return
        try:
            value = int(str(index).strip())
        except ValueError:
            return
        with self._index_lock:
            if value > self._index:
                self._index = value

    def _observe_reply(self, reply: Reply, *, write: bool) -> None:
        # A read's X-Cairn-Index is the index its answer reflects exactly; a write's
        # X-Cairn-Applied-Index covers the write itself (a delete returns no version).
        self.observe_index(reply.headers.get("x-cairn-index"))
        if write:
            self.observe_index(reply.headers.get("x-cairn-applied-index"))

    def _min_version(self) -> Optional[str]:
        if not self.read_your_writes:
            return None
        return self.last_index

    # -- items -------------------------------------------------------------------------------

    def get(self, key: str, *, consistency: Optional[str] = None) -> Optional[Item]:
        """The item, or None when the key is absent or expired.

        `consistency` ("strong" or "stale") is passed to the server; by default a leader answers
        strongly and a follower from its own state (with read-your-writes, never older than
        this client's own last write or read)."""
        reply = self._transport.call(
            "GET",
            _item_path(key),
            kind=Kind.READ,
            query={"consistency": consistency, "minVersion": self._min_version()},
            ok_statuses=(404,),
        )
        self._observe_reply(reply, write=False)
        if reply.status == 404:
            if _error_code(reply) == "not_found":
                return None
            raise _unexpected(reply)
        return Item.from_json(_data(reply))

    def put(
        self,
        key: str,
        value: Any,
        ttl: Optional[int] = None,
        if_version: Optional[str] = None,
        if_absent: bool = False,
        if_value: Any = UNSET,
        *,
        lease: Union[None, str, Lease] = None,
        if_fence: Union[None, Lock, Mapping[str, Any], Tuple[str, str]] = None,
    ) -> Item:
        """Creates or replaces the item; returns it with its new version. Give at most one
        condition: `if_version` (compare-and-swap), `if_absent` (create only), `if_value` (the
        stored value equals this JSON value; None compares with a stored null). A failed
        condition raises Conflict. `ttl` is in seconds (1 to 31536000).

        `lease` (a `Lease` or its id) attaches the key to the lease: it is deleted with it.
        `if_fence` (a `Lock`, `{"lock": name, "token": t}` or `(name, token)`) writes only if
        that token holds the lock when the write applies; else Conflict `fenced`."""
        body: Dict[str, Any] = {"value": value}
        if ttl is not None:
            body["ttlSeconds"] = ttl
        if if_absent:
            body["ifNotExists"] = True
        if if_version is not None:
            body["ifVersion"] = str(if_version)
        if if_value is not UNSET:
            body["ifValue"] = if_value
        if lease is not None:
            body["lease"] = lease.id if isinstance(lease, Lease) else str(lease)
        if if_fence is not None:
            body["ifFence"] = _fence(if_fence)
        reply = self._transport.call("PUT", _item_path(key), kind=Kind.IDEMPOTENT, body=_encode(body))
        self._observe_reply(reply, write=True)
        item = Item.from_json(_data(reply))
        self.observe_index(item.version)
        return item

    def delete(self, key: str, if_version: Optional[str] = None) -> bool:
        """Deletes the key: True, or False when it was absent. With `if_version`, only if the key
        is at that version (Conflict otherwise)."""
        query = {"ifVersion": None if if_version is None else str(if_version)}
        reply = self._transport.call(
            "DELETE", _item_path(key), kind=Kind.IDEMPOTENT, query=query, ok_statuses=(404,)
        )
        self._observe_reply(reply, write=True)
        if reply.status == 404:
            if _error_code(reply) == "not_found":
                return False
            raise _unexpected(reply)
        return bool(_data(reply).get("deleted", True))

    def increment(self, key: str, delta: Union[int, float] = 1, *, ttl: Optional[int] = None) -> Item:
        """Adds `delta` (negative or fractional allowed) to the number stored at `key` (an absent
        key starts at 0) and returns the item with the new number. Not idempotent, so it is
        never re-sent unless the request provably did not reach a server that could apply it.
        `ttl` applies only when this increment creates the key."""
        body: Dict[str, Any] = {"delta": delta}
        if ttl is not None:
            body["ttlSeconds"] = ttl
        reply = self._transport.call("POST", _item_path(key) + "/increment", kind=Kind.WRITE, body=_encode(body))
        self._observe_reply(reply, write=True)
        item = Item.from_json(_data(reply))
        self.observe_index(item.version)
        return item

    # -- scans -------------------------------------------------------------------------------

    def scan(
        self, prefix: str = "", limit: int = 100, values: bool = True, *, consistency: Optional[str] = None
    ) -> Iterator[Item]:
        """Every live item whose key starts with `prefix`, in key order, fetched page by page
        (`limit` is the page size, 1 to 1000) as the iterator is consumed. With `values=False`
        the items carry no value (`has_value` is False)."""
        cursor: Optional[str] = None
        while True:
            page, cursor = self._scan_page(prefix, limit, values, cursor, consistency)
            for item in page:
                yield item
            if not cursor:
                return

    def _scan_page(
        self, prefix: str, limit: int, values: bool, cursor: Optional[str], consistency: Optional[str]
    ) -> Tuple[List[Item], Optional[str]]:
        # minVersion on every page: a follower never answers a page older than what this
        # client has already written or read.
        query: Dict[str, Any] = {
            "prefix": prefix,
            "limit": limit,
            "values": values,
            "cursor": cursor,
            "consistency": consistency,
            "minVersion": self._min_version(),
        }
        reply = self._transport.call("GET", "/kv/items", kind=Kind.READ, query=query)
        self._observe_reply(reply, write=False)
        data = _data(reply)
        items = [Item.from_json(i) for i in data.get("items") or []]
        return items, data.get("nextCursor")

    # -- batches -----------------------------------------------------------------------------

    def batch(self, ops: Sequence[Mapping[str, Any]]) -> List[BatchResult]:
        """Applies 1 to 100 ops atomically, in order, as one Raft entry; returns one result per
        op: an `Item` (set, increment, a found get), `Absent` (a get of an absent key) or
        `Deleted`. Ops are in the server's shape (`{"op": "set", "key": k, "value": v,
        "ifVersion": ...}`); `ttl`, `if_version`, `if_value`, `if_absent` are accepted as
        spellings of `ttlSeconds`, `ifVersion`, `ifValue`, `ifNotExists`. A refused op raises
        its error with the op's `index` in `details`, and nothing is applied."""
        wire = [_wire_op(op) for op in ops]
        has_increment = any(op.get("op") == "increment" for op in wire)
        reply = self._transport.call(
            "POST",
            "/kv/batch",
            kind=Kind.WRITE if has_increment else Kind.IDEMPOTENT,
            body=_encode({"ops": wire}),
        )
        self._observe_reply(reply, write=True)
        results = [batch_result_from_json(r) for r in _data(reply).get("results") or []]
        for r in results:
            if isinstance(r, Item):
                self.observe_index(r.version)
        return results

    # -- watch -------------------------------------------------------------------------------

    def watch(
        self,
        prefix: str = "",
        after: Union[str, int, None] = None,
        *,
        values: bool = True,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> Watch:
        """An iterator of change events under `prefix`, each one Raft entry:
        `WatchEvent(index, changes)`. `after`: resume after this index (a listing's
        `X-Cairn-Index`, an event's index); by default the answering node's applied index. It
        reconnects by itself, to the next endpoint, with `Last-Event-ID`. Close it to stop."""
        return Watch(
            self._transport,
            prefix=prefix,
            after=None if after is None else str(after),
            values=values,
            idle_timeout=idle_timeout,
        )

    # -- coordination ------------------------------------------------------------------------

    def grant_lease(self, ttl: int) -> Lease:
        """Grants a lease of `ttl` seconds (1 to 31536000). Keys put with `lease=` are deleted
        with it. Renew it with `keep_alive()` or `start_keep_alive()`; end it with `revoke()`."""
        # Not idempotent: a second attempt could grant a second lease.
        reply = self._transport.call("POST", "/leases", kind=Kind.WRITE, body=_encode({"ttlSeconds": ttl}))
        self._observe_reply(reply, write=True)
        return Lease(self, _data(reply))

    def lease(self, ttl: int) -> Lease:
        """Grants a lease of `ttl` seconds. As a context manager (`with kv.lease(10) as lease:`)
        it is kept alive from a daemon thread at a third of its TTL and revoked on leaving the
        block; `lease.lost` is set if a keepalive finds it gone."""
        return self.grant_lease(ttl)

    def lock(
        self,
        name: str,
        ttl: Optional[int] = None,
        wait: Optional[float] = None,
        *,
        lease: Union[None, str, Lease] = None,
    ) -> Lock:
        """Takes the fair lock `name`, waiting up to `wait` seconds (0 to 60; default: not at
        all) in its queue; Conflict `lock_held` when the wait runs out. Without `lease`, it
        grants its own of `ttl` seconds (default 10), kept alive in the background and revoked
        on `release()`. A context manager: `with kv.lock("job", ttl=10, wait=30) as lock:`."""
        return acquire_lock(self, name, lease, ttl, wait)

    def elect(
        self,
        name: str,
        value: Any,
        ttl: Optional[int] = None,
        wait: Optional[float] = 60.0,
        *,
        lease: Union[None, str, Lease] = None,
    ) -> Election:
        """Campaigns in election `name` with `value`, waiting up to `wait` seconds (0 to 60,
        default 60) to lead; Conflict `not_elected` when the wait runs out. Without `lease`, it
        grants its own of `ttl` seconds (default 10), kept alive in the background and revoked
        on `resign()`. A context manager: it resigns on leaving the block."""
        return campaign(self, name, value, lease, ttl, wait)

    def leader(self, name: str) -> Optional[Leader]:
        """The election's leader, or None when nobody leads."""
        reply = self._transport.call("GET", "/elections/" + quote(name, safe="") + "/leader", kind=Kind.READ, ok_statuses=(404,))
        self._observe_reply(reply, write=False)
        if reply.status == 404:
            if _error_code(reply) == "not_found":
                return None
            raise _unexpected(reply)
        return Leader.from_json(_data(reply))

    def observe(self, name: str, *, idle_timeout: float = DEFAULT_OBSERVE_IDLE_TIMEOUT) -> Observe:
        """An iterator of the election's leader now and at every change (`Leader`, or None
        while nobody leads), from its Server-Sent Events. Close it to stop."""
        return Observe(self._transport, name, idle_timeout=idle_timeout)

    # -- low level ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        body: Any = None,
    ) -> Response:
        """Sends any request through this client's endpoints, credentials and retry rule, and
        returns the answer (`Response(status, headers, body)`, the body parsed from JSON when it
        is JSON). A non-2xx answer raises its typed error. `path` starts with `/` and is sent as
        given (percent-encode keys yourself); `body` is sent as is when it is bytes or str, as
        JSON otherwise. GET and HEAD are retried as reads, PUT and DELETE as idempotent writes,
        anything else as a write that is not idempotent."""
        method = method.upper()
        if method in ("GET", "HEAD", "OPTIONS"):
            kind = Kind.READ
        elif method in ("PUT", "DELETE"):
            kind = Kind.IDEMPOTENT
        else:
            kind = Kind.WRITE
        data: Optional[bytes]
        if body is None:
            data = None
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = _encode(body)
        reply = self._transport.call(method, path, kind=kind, query=query, headers=headers, body=data)
        self._observe_reply(reply, write=kind is not Kind.READ)
        parsed = reply.json()
        return Response(status=reply.status, headers=dict(reply.headers), body=parsed if parsed is not None else reply.text())

    def close(self) -> None:
        """Closes idle connections. The client stays usable (it opens new ones)."""
        self._transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(endpoints={self.endpoints!r})"


# -- helpers -----------------------------------------------------------------------------------


def _item_path(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"a key is a str, not {type(key).__name__}")
    if key == "":
        raise BadRequest("a key must not be empty", code="invalid_key")
    if key in (".", ".."):
        # URL parsers resolve these as dot-segments even percent-encoded, so the request would
        # reach another route instead of naming the key. A batch op can still name them.
        raise BadRequest(f"the key {key!r} cannot be addressed in a URL path (a batch op can name it)", code="invalid_key")
    # safe="" encodes '/', '?', '#', '%' and spaces too: the whole key is one path segment.
    return "/kv/items/" + quote(key, safe="")


def _encode(value: Any) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"the value is not JSON: {exc}", code="invalid_json") from None
    return text.encode("utf-8")


def _fence(fence: Any) -> Dict[str, str]:
    if isinstance(fence, Lock):
        return fence.fence
    if isinstance(fence, Mapping):
        return {"lock": str(fence["lock"]), "token": str(fence["token"])}
    if isinstance(fence, tuple) and len(fence) == 2:
        return {"lock": str(fence[0]), "token": str(fence[1])}
    raise TypeError("if_fence is a Lock, {'lock': name, 'token': t} or (name, token)")


def _wire_op(op: Mapping[str, Any]) -> Dict[str, Any]:
    if not isinstance(op, Mapping):
        raise TypeError("a batch op is a mapping such as {'op': 'set', 'key': 'k', 'value': 1}")
    out: Dict[str, Any] = {}
    for name, value in op.items():
        out[_OP_FIELD_ALIASES.get(name, name)] = value
    if "ifVersion" in out and out["ifVersion"] is not None:
        out["ifVersion"] = str(out["ifVersion"])
    return out


def _data(reply: Reply) -> Dict[str, Any]:
    body = reply.json()
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict):
        return data
    raise _unexpected(reply, "no \"data\" object in a success answer")


def _error_code(reply: Reply) -> Optional[str]:
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return None if code is None else str(code)
    return None


def _unexpected(reply: Reply, why: str = "") -> Exception:
    if 200 <= reply.status < 300:
        return CairnError(
            f"{reply.endpoint}: unexpected answer: {why}",
            status=reply.status,
            code="bad_response",
            request_id=reply.headers.get("x-request-id") or reply.request_id,
        )
    return error_from_reply(reply, write=False)


def _timeouts(timeout: TimeoutOption, connect_timeout: Optional[float]) -> Timeouts:
    if isinstance(timeout, Timeouts):
        base = timeout
    elif timeout is None:
        base = Timeouts()
    else:
        base = Timeouts(connect=min(Timeouts().connect, float(timeout)), request=float(timeout))
    if connect_timeout is not None:
        base = Timeouts(connect=float(connect_timeout), request=base.request)
    return base


def _retry(retry: RetryOption) -> Retry:
    if retry is None or retry is True:
        return Retry()
    if retry is False:
        return Retry(attempts=1)
    if isinstance(retry, Retry):
        return retry
    if isinstance(retry, int):
        return Retry(attempts=max(1, retry))
    if isinstance(retry, Mapping):
        return Retry(**{_snake(k): v for k, v in retry.items()})
    raise TypeError("retry is a Retry, a number of attempts, a mapping of Retry's fields, or False")


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)
