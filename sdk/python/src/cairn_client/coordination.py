"""Leases, locks and elections (docs/api.md, "Leases", "Locks", "Elections").

Handles over the server's calls, with the background keepalive a holder needs and the retry
rules of docs/coordination.md: a lock or campaign is re-sent with the same lease after an
unknown outcome (the server keeps the lease's first place and token), and a revoke, release or
resign whose earlier attempt may have landed counts a later 404 as done."""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote

from .errors import CairnError, Conflict, NotFound, Unavailable, UnknownOutcome
from .sse import SSEParser
from .transport import Kind, Reply, Transport, _describe, _NotSent, error_from_reply
from .watch import _hard_close, _new_id

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["Lease", "Lock", "Election", "Leader", "Observe", "MAX_WAIT"]

# The longest `wait` the server takes, in seconds.
MAX_WAIT = 60.0
# Silence after which an observe stream counts as broken (the server comments every 15 s).
DEFAULT_OBSERVE_IDLE_TIMEOUT = 45.0


@dataclass(frozen=True)
class Leader:
    """An election's leader: its `token` (fencing), `lease` and `value`."""

    name: str
    token: str
    lease: str
    value: Any

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Leader":
        return cls(name=str(data.get("name")), token=str(data.get("token")), lease=str(data.get("lease")), value=data.get("value"))


def _seg(text: str) -> str:
    return "/" + quote(str(text), safe="")


def _data(reply: Reply) -> Dict[str, Any]:
    body = reply.json()
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict):
        return data
    raise CairnError(f"{reply.endpoint}: no \"data\" object in a success answer", status=reply.status, code="bad_response")


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _gone(exc: CairnError, *codes: str) -> bool:
    """A 404 with one of `codes`: also when it came after an attempt whose outcome was unknown
    (then it is our own earlier attempt that took the thing away)."""
    return exc.status == 404 and exc.code in codes and isinstance(exc, (NotFound, UnknownOutcome))


def _wait_text(wait: Optional[float]) -> Optional[str]:
    if wait is None or wait == 0:
        return None
    if not 0 <= wait <= MAX_WAIT:
        raise ValueError(f"wait must be 0 to {MAX_WAIT:g} seconds")
    return f"{int(round(wait * 1000))}ms"


class Lease:
    """A granted lease. Keys put with `lease=` are deleted with it.

    `keep_alive()` renews it once; `start_keep_alive()` renews it from a daemon thread (at a third
    of the TTL by default) until `stop_keep_alive()`; `revoke()` ends it and deletes its keys. As
    a context manager it keeps itself alive inside the block and is revoked on leaving it.
    `lost` is set once a keepalive found the lease gone (404 `lease_not_found`: it expired or was
    revoked elsewhere), and the background keepalive stops then."""

    def __init__(self, client: "Client", data: Mapping[str, Any]) -> None:
        self._client = client
        self.id = str(data["id"])
        self.ttl = int(data.get("ttlSeconds") or 0)
        self.expires_at: Optional[str] = data.get("expiresAt")
        self.lost = threading.Event()
        # The last error a background keepalive got (cleared by a success), for logs.
        self.last_keep_alive_error: Optional[CairnError] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def keep_alive(self) -> "Lease":
        """Restarts the TTL from now. Raises NotFound `lease_not_found` (and sets `lost`) when
        the lease is gone."""
        try:
            # Renewing twice is renewing: safe to retry on another node.
            reply = self._client._transport.call("POST", "/leases" + _seg(self.id) + "/keepalive", kind=Kind.IDEMPOTENT, body=b"{}")
        except CairnError as exc:
            if _gone(exc, "lease_not_found"):
                self.lost.set()
                self._stop.set()
            raise
        self._client._observe_reply(reply, write=True)
        self.expires_at = _data(reply).get("expiresAt")
        return self

    def start_keep_alive(self, interval: Optional[float] = None) -> "Lease":
        """Renews the lease every `interval` seconds (default: a third of the TTL) from a daemon
        thread until `stop_keep_alive()`, `revoke()` or the lease is lost. Failures other than
        "gone" are tried again at the next tick."""
        if self._thread is not None and self._thread.is_alive():
            return self
        every = interval if interval is not None else max(self.ttl / 3.0, 0.1)
        if every <= 0:
            raise ValueError("the keepalive interval must be above 0")
        self._stop = threading.Event()
        stop = self._stop

        def run() -> None:
            while not stop.wait(every):
                try:
                    self.keep_alive()
                    self.last_keep_alive_error = None
                except CairnError as exc:
                    self.last_keep_alive_error = exc
                    if self.lost.is_set():
                        return

        self._thread = threading.Thread(target=run, name=f"cairn-lease-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop_keep_alive(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # Bounded: a keepalive in flight ends within the client's request timeout.
            thread.join(timeout=self._client._transport.timeouts.request + 1)
        self._thread = None

    def info(self) -> Optional[Dict[str, Any]]:
        """`{id, ttlSeconds, expiresAt, remainingMs, keys}` as the server sees it now, or None
        when the lease is gone."""
        reply = self._client._transport.call("GET", "/leases" + _seg(self.id), kind=Kind.READ, ok_statuses=(404,))
        if reply.status == 404:
            return None
        return _data(reply)

    def revoke(self) -> int:
        """Revokes the lease and deletes its keys; returns how many keys went (0 when it was
        already gone). Stops the background keepalive."""
        self.stop_keep_alive()
        keys = 0
        try:
            reply = self._client._transport.call("DELETE", "/leases" + _seg(self.id), kind=Kind.IDEMPOTENT)
            self._client._observe_reply(reply, write=True)
            keys = int(_data(reply).get("keys") or 0)
        except CairnError as exc:
            if not _gone(exc, "lease_not_found"):
                raise
        self.lost.set()
        return keys

    def __enter__(self) -> "Lease":
        return self.start_keep_alive()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            self.revoke()
        except CairnError:
            # Leaving on an error of the block's own: that error is the one to see.
            if exc_type is None:
                raise

    def __repr__(self) -> str:
        return f"Lease(id={self.id!r}, ttl={self.ttl!r}, lost={self.lost.is_set()!r})"


def _lease_for(client: "Client", lease: Union[None, str, Lease], ttl: Optional[int]) -> Tuple[Lease, bool]:
    """The caller's lease, or a new one of `ttl` seconds (default 10) kept alive in the
    background (owned: revoked when the lock or campaign ends)."""
    if isinstance(lease, Lease):
        return lease, False
    if lease is not None:
        return Lease(client, {"id": str(lease), "ttlSeconds": ttl or 0}), False
    granted = client.grant_lease(ttl if ttl is not None else 10)
    granted.start_keep_alive()
    return granted, True


def _queue(client: "Client", path: str, body: Dict[str, Any], wait: Optional[float], refusal: str) -> Dict[str, Any]:
    """POSTs a lock or campaign, re-sending it with the same lease after an unknown outcome (the
    server keeps the lease's first place), at most as many times as a call has attempts. A 409
    `refusal` (the wait ran out) is raised as Conflict even after an ambiguous attempt."""
    t = client._transport
    last: Optional[CairnError] = None
    timeout = (wait or 0) + t.timeouts.request
    for attempt in range(t.attempts):
        if attempt:
            t._pause(attempt)
        try:
            reply = t.call("POST", path, kind=Kind.IDEMPOTENT, body=_encode(body), timeout=timeout)
        except UnknownOutcome as exc:
            if exc.status == 409 and exc.code == refusal:
                raise Conflict(exc.message, status=409, code=refusal, request_id=exc.request_id, details=exc.details, prior_unknown=True) from exc
            last = exc
            continue
        client._observe_reply(reply, write=True)
        return _data(reply)
    assert last is not None
    raise last


class Lock:
    """A held lock. `token` is its fencing token (a later holder's is larger): fence writes with
    `put(..., if_fence=lock)`. `release()` lets the next waiter in; as a context manager it is
    released on leaving the block."""

    def __init__(self, client: "Client", name: str, token: str, lease: Lease, owns_lease: bool) -> None:
        self._client = client
        self.name = name
        self.token = token
        self.lease = lease
        self._owns_lease = owns_lease

    @property
    def fence(self) -> Dict[str, str]:
        """`{"lock": name, "token": token}`, the wire form of `ifFence`."""
        return {"lock": self.name, "token": self.token}

    def release(self) -> None:
        """Releases the lock (already released counts as done); revokes the lease the lock
        granted itself."""
        try:
            reply = self._client._transport.call("DELETE", "/locks" + _seg(self.name) + _seg(self.token), kind=Kind.IDEMPOTENT)
            self._client._observe_reply(reply, write=True)
        except CairnError as exc:
            if not _gone(exc, "not_found"):
                raise
        finally:
            if self._owns_lease:
                try:
                    self.lease.revoke()
                except CairnError:
                    pass

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            self.release()
        except CairnError:
            # Leaving on an error of the block's own: that error is the one to see.
            if exc_type is None:
                raise

    def __repr__(self) -> str:
        return f"Lock(name={self.name!r}, token={self.token!r}, lease={self.lease.id!r})"


def acquire_lock(client: "Client", name: str, lease: Union[None, str, Lease], ttl: Optional[int], wait: Optional[float]) -> Lock:
    held_lease, owned = _lease_for(client, lease, ttl)
    try:
        body: Dict[str, Any] = {"lease": held_lease.id}
        text = _wait_text(wait)
        if text is not None:
            body["wait"] = text
        data = _queue(client, "/locks" + _seg(name), body, wait, "lock_held")
        return Lock(client, str(data.get("name") or name), str(data["token"]), held_lease, owned)
    except BaseException:
        if owned:
            # Revoking the lease also leaves any queue it may still be in.
            try:
                held_lease.revoke()
            except CairnError:
                pass
        raise


class Election:
    """A campaign that leads. `proclaim(value)` changes the value (Conflict `fenced` once it no
    longer leads); `resign()` steps down; as a context manager it resigns on leaving the block."""

    def __init__(self, client: "Client", name: str, token: str, lease: Lease, value: Any, owns_lease: bool) -> None:
        self._client = client
        self.name = name
        self.token = token
        self.lease = lease
        self.value = value
        self._owns_lease = owns_lease

    def proclaim(self, value: Any) -> Leader:
        reply = self._client._transport.call(
            "PUT",
            "/elections" + _seg(self.name) + "/proclaim",
            kind=Kind.IDEMPOTENT,
            body=_encode({"token": self.token, "value": value}),
        )
        self._client._observe_reply(reply, write=True)
        self.value = value
        return Leader.from_json(_data(reply))

    def leader(self) -> Optional[Leader]:
        """The current leader (not necessarily this one), or None."""
        return self._client.leader(self.name)

    def resign(self) -> None:
        """Steps down (already gone counts as done); the next candidate leads. Revokes the lease
        the campaign granted itself."""
        try:
            reply = self._client._transport.call(
                "DELETE", "/elections" + _seg(self.name) + "/resign", kind=Kind.IDEMPOTENT, query={"token": self.token}
            )
            self._client._observe_reply(reply, write=True)
        except CairnError as exc:
            if not _gone(exc, "not_found"):
                raise
        finally:
            if self._owns_lease:
                try:
                    self.lease.revoke()
                except CairnError:
                    pass

    def __enter__(self) -> "Election":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            self.resign()
        except CairnError:
            # Leaving on an error of the block's own: that error is the one to see.
            if exc_type is None:
                raise

    def __repr__(self) -> str:
        return f"Election(name={self.name!r}, token={self.token!r}, value={self.value!r})"


def campaign(client: "Client", name: str, value: Any, lease: Union[None, str, Lease], ttl: Optional[int], wait: Optional[float]) -> Election:
    held_lease, owned = _lease_for(client, lease, ttl)
    try:
        body: Dict[str, Any] = {"lease": held_lease.id, "value": value}
        text = _wait_text(wait)
        if text is not None:
            body["wait"] = text
        data = _queue(client, "/elections" + _seg(name) + "/campaign", body, wait, "not_elected")
        return Election(client, str(data.get("name") or name), str(data["token"]), held_lease, data.get("value"), owned)
    except BaseException:
        if owned:
            try:
                held_lease.revoke()
            except CairnError:
                pass
        raise


class Observe(Iterator[Optional[Leader]]):
    """Iterate to get the election's leader now and at every change: a `Leader`, or None while
    nobody leads. A broken stream reconnects to the next endpoint (a new stream starts with the
    state then). After as many fruitless connections in a row as a call has attempts it raises
    Unavailable. `close()` (from any thread, or by leaving a `with` block) ends it."""

    def __init__(self, transport: Transport, name: str, idle_timeout: float = DEFAULT_OBSERVE_IDLE_TIMEOUT) -> None:
        self._transport = transport
        self._name = name
        self._idle_timeout = idle_timeout
        self._endpoint = transport.current()
        self._lock = threading.Lock()
        self._closed = False
        self._conn: Optional[http.client.HTTPConnection] = None
        self._resp: Optional[http.client.HTTPResponse] = None
        self._parser = SSEParser()
        self._fruitless = 0
        self._failures: List[str] = []

    def __iter__(self) -> "Observe":
        return self

    def __next__(self) -> Optional[Leader]:
        while True:
            if self._closed:
                raise StopIteration
            if self._resp is None:
                self._open()
                continue
            line = self._readline()
            if line is None:
                self._drop("the stream ended")
                continue
            ev = self._parser.feed(line)
            if ev is None:
                continue
            if ev.event == "leader":
                try:
                    data = json.loads(ev.data)
                except ValueError:
                    data = None
                if isinstance(data, dict):
                    self._fruitless, self._failures = 0, []
                    return Leader.from_json(data)
                self._drop(f"a leader event that is not a JSON object: {ev.data[:100]!r}")
            elif ev.event == "none":
                self._fruitless, self._failures = 0, []
                return None

    def _open(self) -> None:
        t = self._transport
        n = len(t.endpoints)
        while not self._closed:
            if self._fruitless >= t.attempts:
                self.close()
                raise Unavailable(
                    f"the observe stream could not be served by any endpoint after {self._fruitless} attempt(s)",
                    code="connection_failed",
                    attempts=self._failures,
                )
            if self._fruitless:
                t._pause(self._fruitless)
            self._fruitless += 1
            idx = self._endpoint % n
            endpoint = t.endpoints[idx]
            request_id = _new_id()
            headers = t.headers(request_id, {"Accept": "text/event-stream", "Cache-Control": "no-cache"})
            target = t.target(endpoint, "/elections" + _seg(self._name) + "/observe", None)
            try:
                conn = t.connect(endpoint, self._idle_timeout)
            except _NotSent as exc:
                self._failures.append(f"{endpoint.url}: connection failed: {exc}")
                self._endpoint = idx + 1
                continue
            with self._lock:
                if self._closed:
                    conn.close()
                    break
                self._conn = conn
            try:
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self._failures.append(f"{endpoint.url}: {_describe(exc)}")
                self._release()
                self._endpoint = idx + 1
                continue
            if resp.status == 200:
                with self._lock:
                    if self._closed:
                        break
                    self._resp = resp
                self._parser = SSEParser()
                return
            try:
                body = resp.read()
            except (OSError, http.client.HTTPException):
                body = b""
            self._release()
            reply = Reply(status=resp.status, headers={k.lower(): v for k, v in resp.getheaders()}, body=body, endpoint=endpoint.url, request_id=request_id)
            err = error_from_reply(reply, write=False)
            if resp.status in (502, 503):
                self._failures.append(f"{endpoint.url}: {resp.status} {err.code}: {err.message}")
                self._endpoint = idx + 1
                continue
            self.close()
            raise err
        raise StopIteration

    def _readline(self) -> Optional[str]:
        resp = self._resp
        if resp is None:
            return None
        try:
            raw = resp.readline()
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            return None
        if not raw or not raw.endswith(b"\n"):
            return None
        return raw[:-1].decode("utf-8", errors="replace")

    def _drop(self, why: str) -> None:
        if self._closed:
            return
        self._failures.append(f"{self._transport.endpoints[self._endpoint % len(self._transport.endpoints)].url}: {why}")
        self._release()
        self._endpoint += 1

    def _release(self) -> None:
        with self._lock:
            conn, self._conn, self._resp = self._conn, None, None
        if conn is not None:
            _hard_close(conn)

    def close(self) -> None:
        """Stops observing. Safe from another thread: a blocked `next()` returns (StopIteration)."""
        with self._lock:
            self._closed = True
            conn, self._conn, self._resp = self._conn, None, None
        if conn is not None:
            _hard_close(conn)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Observe":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
