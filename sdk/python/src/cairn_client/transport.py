"""Sending one call: endpoint rotation, the retry rule, timeouts, connection reuse.

The retry rule is etcd's: a request is retried only when retrying cannot apply it twice.

- An attempt whose connection could not be opened never left: any call may go on to the next
  endpoint.
- An attempt that was sent and then broke (reset, closed, timed out) before a whole answer came
  may have been applied. Reads and idempotent writes go on to the next endpoint; a write that is
  not idempotent (an increment, a batch holding one) stops with UnknownOutcome.
- 503 and 502 are "not served here": reads and idempotent writes go on. A write that is not
  idempotent goes on only for the codes the server sends when nothing was applied (503
  `no_leader`, `too_many_connections`, `starting`, `not_caught_up`; 502 `leader_unreachable`);
  any other 502/503 (a proxy's, say) proves nothing, so it is UnknownOutcome.
- 504 is never retried (UnknownOutcome), and neither is any 4xx: the same request would fail
  the same way.
"""

from __future__ import annotations

import enum
import http.client
import json
import os
import random
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlencode, urlsplit

from .errors import CairnError, RateLimited, Unavailable, UnknownOutcome, error_for_status
from .types import Retry, Timeouts

__all__ = ["Kind", "Endpoint", "Reply", "Transport", "parse_endpoint"]

USER_AGENT = "cairn-client-python/0.1.0"

# Codes with which a 503 / 502 proves the request was not applied (docs/api.md, Errors).
NEVER_APPLIED_503 = frozenset({"no_leader", "too_many_connections", "starting", "not_caught_up"})
NEVER_APPLIED_502 = frozenset({"leader_unreachable"})


class Kind(enum.Enum):
    """What re-sending a request could do, which decides when it may be retried."""

    READ = "read"
    # A put (conditional or not), a delete, a batch without an increment: applying it twice
    # leaves the same state as applying it once.
    IDEMPOTENT = "idempotent"
    # An increment, or a batch holding one: applying it twice adds twice.
    WRITE = "write"


@dataclass(frozen=True)
class Endpoint:
    url: str
    scheme: str
    host: str
    port: int
    base_path: str


def parse_endpoint(text: str) -> Endpoint:
    """`http://10.0.0.1:7001`, `https://cairn.example/prefix`, or a bare `host:port` (http)."""
    raw = text.strip()
    if not raw:
        raise ValueError("an endpoint must not be empty")
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"endpoint {text!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"endpoint {text!r} has no host")
    if parts.query or parts.fragment:
        raise ValueError(f"endpoint {text!r} must not have a query or fragment")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    base = parts.path.rstrip("/")
    host = parts.hostname
    shown_host = f"[{host}]" if ":" in host else host
    return Endpoint(
        url=f"{parts.scheme}://{shown_host}:{port}{base}",
        scheme=parts.scheme,
        host=host,
        port=port,
        base_path=base,
    )


@dataclass
class Reply:
    """A whole HTTP answer. Header names are lower-cased."""

    status: int
    headers: Dict[str, str]
    body: bytes
    endpoint: str
    request_id: str

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _NotSent(Exception):
    """The connection could not be opened: no byte of the request left this process."""


class _Broken(Exception):
    """The request was (or may have been) sent, and no whole answer came back."""

    def __init__(self, reason: str, timed_out: bool) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def error_from_reply(reply: Reply, *, write: bool, prior_unknown: bool = False, attempts: Optional[List[str]] = None) -> CairnError:
    """The typed error for a non-2xx answer, from Cairn's envelope
    `{"error": {"code", "message", ...}}` (or the bare status when the body is something else,
    a proxy's page say)."""
    body = reply.json()
    err_obj: Mapping[str, Any] = {}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err_obj = body["error"]
    code = str(err_obj.get("code") or f"http_{reply.status}")
    message = str(err_obj.get("message") or _snippet(reply.text()) or f"HTTP {reply.status}")
    cls = error_for_status(reply.status, write=write)
    kwargs: Dict[str, Any] = dict(
        status=reply.status,
        code=code,
        request_id=reply.headers.get("x-request-id") or reply.request_id,
        details=err_obj,
        prior_unknown=prior_unknown,
        attempts=attempts,
    )
    if cls is RateLimited:
        return RateLimited(message, retry_after=_retry_after(reply.headers.get("retry-after")), **kwargs)
    return cls(message, **kwargs)


def _retry_after(value: Optional[str]) -> Optional[float]:
    # Cairn sends whole seconds; an HTTP date (allowed by RFC 9110) is not worth parsing here.
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _snippet(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _retryable(status: int, code: str, kind: Kind) -> bool:
    if status not in (502, 503):
        return False
    if kind is not Kind.WRITE:
        return True
    allowed = NEVER_APPLIED_503 if status == 503 else NEVER_APPLIED_502
    return code in allowed


class _Pool:
    """Idle keep-alive connections, per endpoint. Thread-safe; a connection is used by one
    request at a time."""

    def __init__(self, max_idle: int = 8) -> None:
        self._idle: Dict[str, List[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._max_idle = max_idle

    def take(self, endpoint: Endpoint) -> Optional[http.client.HTTPConnection]:
        while True:
            with self._lock:
                conns = self._idle.get(endpoint.url)
                conn = conns.pop() if conns else None
            if conn is None or not _dropped(conn):
                return conn
            conn.close()

    def give(self, endpoint: Endpoint, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            conns = self._idle.setdefault(endpoint.url, [])
            if len(conns) < self._max_idle:
                conns.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for cs in self._idle.values() for c in cs]
            self._idle.clear()
        for c in conns:
            c.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle keep-alive connection is unusable. An idle connection has nothing to
    read; if it is readable, the server closed it (the node's idle timeout, a restart) or sent
    something unasked. Checking first avoids most failures of a reused connection, which would
    otherwise cost an ambiguous attempt."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        # ValueError: a descriptor select() cannot watch; take a new connection instead.
        return True
    return bool(readable)


class Transport:
    """Endpoints, credentials, timeouts and the retry rule; knows nothing of the API's routes."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        token: Optional[str] = None,
        namespace: Optional[str] = None,
        timeouts: Timeouts = Timeouts(),
        retry: Retry = Retry(),
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.endpoints: List[Endpoint] = [parse_endpoint(e) for e in endpoints]
        self.timeouts = timeouts
        self.retry = retry
        self.attempts = retry.attempts if retry.attempts is not None else 2 * len(self.endpoints)
        if self.attempts < 1:
            raise ValueError("retry attempts must be at least 1")
        self._ssl_context = ssl_context
        self._base_headers: Dict[str, str] = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            self._base_headers["Authorization"] = f"Bearer {token}"
        if namespace:
            self._base_headers["X-Cairn-Namespace"] = namespace
        self._pool = _Pool()
        self._lock = threading.Lock()
        # The endpoint calls start at. It moves on when an attempt there fails in a way that
        # allows a retry, and stays where it lands: the next call goes where the last one
        # succeeded, not back to a node that is down.
        self._current = 0

    # -- endpoint rotation -------------------------------------------------------------------

    def current(self) -> int:
        with self._lock:
            return self._current

    def advance(self, failed: int) -> None:
        """Move past endpoint `failed`, unless another thread already moved on from it."""
        with self._lock:
            if self._current == failed:
                self._current = (failed + 1) % len(self.endpoints)

    def _pause(self, retry_number: int) -> None:
        """Backoff before retry number `retry_number` (1 for the second attempt)."""
        delay = min(self.retry.max_backoff, self.retry.backoff * (2 ** (retry_number - 1)))
        if delay > 0:
            # Jitter, so that clients that failed together do not come back together.
            time.sleep(delay * random.uniform(0.5, 1.0))

    # -- connections -------------------------------------------------------------------------

    def connect(self, endpoint: Endpoint, read_timeout: Optional[float]) -> http.client.HTTPConnection:
        """A new open connection. Raises _NotSent when it cannot be opened: refused, unreachable,
        connect timeout, TLS handshake refused: in every case nothing of the request was sent."""
        conn: http.client.HTTPConnection
        if endpoint.scheme == "https":
            if self._ssl_context is None:
                # Built once: loading the system's trust roots is slow.
                self._ssl_context = ssl.create_default_context()
            ctx = self._ssl_context
            conn = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=self.timeouts.connect, context=ctx)
        else:
            conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=self.timeouts.connect)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _NotSent(_describe(exc)) from exc
        assert conn.sock is not None
        # The connect timeout is short; from here on the request timeout applies to every read
        # and write on the socket.
        conn.sock.settimeout(read_timeout)
        try:
            # Small requests should not wait on Nagle's algorithm and delayed ACKs.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return conn

    def headers(self, request_id: str, extra: Optional[Mapping[str, str]] = None, has_body: bool = False) -> Dict[str, str]:
        h = dict(self._base_headers)
        if has_body:
            h["Content-Type"] = "application/json"
        h["X-Request-Id"] = request_id
        if extra:
            for name, value in extra.items():
                # A caller's header replaces ours of the same name, whatever its case.
                for existing in [k for k in h if k.lower() == name.lower()]:
                    del h[existing]
                h[name] = value
        return h

    @staticmethod
    def target(endpoint: Endpoint, path: str, query: Optional[Mapping[str, Any]]) -> str:
        t = endpoint.base_path + path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            if pairs:
                t += ("&" if "?" in t else "?") + urlencode(pairs)
        return t

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        endpoint: Endpoint,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Optional[bytes],
        request_id: str,
    ) -> Reply:
        """Sends the request on an open connection and reads the whole answer. Raises _Broken if
        anything fails from the first byte sent to the last byte read."""
        try:
            conn.request(method, target, body=body, headers=dict(headers))
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _Broken(_describe(exc), isinstance(exc, socket.timeout)) from exc
        reply = Reply(
            status=resp.status,
            headers=_header_dict(resp.getheaders()),
            body=data,
            endpoint=endpoint.url,
            request_id=request_id,
        )
        if resp.will_close:
            conn.close()
        else:
            self._pool.give(endpoint, conn)
        return reply

    def _attempt(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Optional[bytes],
        kind: Kind,
        request_id: str,
        read_timeout: Optional[float] = None,
    ) -> Tuple[Reply, bool]:
        """One attempt at one endpoint. Returns the reply and whether the request may have been
        applied by an earlier, broken exchange inside this attempt."""
        # A write that is not idempotent always gets a new connection. On a reused one, a
        # failure could be the server having closed it while idle (harmless) or having read the
        # request and died (maybe applied), and nothing tells the two apart; on a new one, a
        # failure to connect proves the request never left.
        if read_timeout is None:
            read_timeout = self.timeouts.request
        if kind is not Kind.WRITE:
            idle = self._pool.take(endpoint)
            if idle is not None:
                if idle.sock is not None:
                    # A pooled connection keeps the timeout of the call that opened it.
                    idle.sock.settimeout(read_timeout)
                try:
                    return self._exchange(idle, endpoint, method, target, headers, body, request_id), False
                except _Broken as exc:
                    if exc.timed_out:
                        raise
                    # Most likely the server closed the idle connection; this kind of request
                    # may be sent again, so try once more on a new connection to the same node.
                    try:
                        conn = self.connect(endpoint, read_timeout)
                    except _NotSent:
                        # The first exchange may still have been read: report it as broken,
                        # not as never sent.
                        raise exc from None
                    reply = self._exchange(conn, endpoint, method, target, headers, body, request_id)
                    return reply, kind is Kind.IDEMPOTENT
        conn = self.connect(endpoint, read_timeout)
        return self._exchange(conn, endpoint, method, target, headers, body, request_id), False

    # -- the call ----------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        kind: Kind,
        query: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        body: Optional[bytes] = None,
        ok_statuses: Tuple[int, ...] = (),
        timeout: Optional[float] = None,
    ) -> Reply:
        """Sends the request under the retry rule. Returns a 2xx reply (or one whose status is in
        `ok_statuses`); raises the typed error otherwise. `timeout` replaces the client's request
        timeout for this call (a lock's wait must fit in it)."""
        hdrs = self.headers(os.urandom(8).hex(), headers, has_body=body is not None)
        # The caller's own X-Request-Id, if it gave one, else ours.
        request_id = next(v for k, v in hdrs.items() if k.lower() == "x-request-id")
        n = len(self.endpoints)
        failures: List[str] = []
        # True once an attempt of this call may have been applied (an idempotent write whose
        # connection broke after sending): the call cannot then end as Unavailable, which
        # promises that nothing was applied.
        maybe_applied = False
        last_status: Optional[int] = None
        last_code = "connection_failed"
        last_message = "no endpoint could be reached"
        write = kind is not Kind.READ
        for attempt in range(self.attempts):
            if attempt:
                self._pause(attempt)
            idx = self.current() % n
            endpoint = self.endpoints[idx]
            target = self.target(endpoint, path, query)
            try:
                reply, broke_before = self._attempt(endpoint, method, target, hdrs, body, kind, request_id, timeout)
                maybe_applied = maybe_applied or broke_before
            except _NotSent as exc:
                failures.append(f"{endpoint.url}: connection failed: {exc}")
                last_status, last_code, last_message = None, "connection_failed", str(exc)
                self.advance(idx)
                continue
            except _Broken as exc:
                what = "timed out" if exc.timed_out else "connection broke"
                if kind is Kind.WRITE:
                    raise UnknownOutcome(
                        f"{endpoint.url}: {what} after the request was sent ({exc}); it may or may not have been applied",
                        code="timeout" if exc.timed_out else "connection_broken",
                        request_id=request_id,
                        prior_unknown=maybe_applied,
                        attempts=failures + [f"{endpoint.url}: {what}: {exc}"],
                    ) from None
                if kind is Kind.IDEMPOTENT:
                    maybe_applied = True
                failures.append(f"{endpoint.url}: {what}: {exc}")
                last_status, last_code, last_message = None, "timeout" if exc.timed_out else "connection_broken", str(exc)
                self.advance(idx)
                continue
            if 200 <= reply.status < 300 or reply.status in ok_statuses:
                return reply
            err = error_from_reply(reply, write=write, prior_unknown=maybe_applied, attempts=failures + [f"{endpoint.url}: {reply.status}"])
            if _retryable(reply.status, err.code, kind):
                failures.append(f"{endpoint.url}: {reply.status} {err.code}: {err.message}")
                last_status, last_code, last_message = reply.status, err.code, err.message
                self.advance(idx)
                continue
            # A 502/503 that does not prove nothing was applied (the others moved on above), or
            # any refusal after an attempt that may have been applied (a compare-and-swap
            # conflicting with itself): the outcome is unknown.
            not_proof = kind is Kind.WRITE and reply.status in (502, 503)
            if not_proof or maybe_applied:
                why = (
                    "does not prove the write was not applied"
                    if not_proof
                    else "came after an earlier attempt that may have been applied"
                )
                raise UnknownOutcome(
                    f"{endpoint.url}: {reply.status} {err.code} {why}: {err.message}",
                    status=reply.status,
                    code=err.code,
                    request_id=err.request_id,
                    details=err.details,
                    prior_unknown=maybe_applied,
                    attempts=err.attempts,
                ) from err
            raise err
        if maybe_applied:
            raise UnknownOutcome(
                f"every attempt failed, and an earlier one may have been applied: {last_message}",
                status=last_status,
                code=last_code,
                request_id=request_id,
                prior_unknown=True,
                attempts=failures,
            )
        raise Unavailable(
            f"no endpoint could serve the request after {len(failures)} attempt(s): {last_message}",
            status=last_status,
            code=last_code,
            request_id=request_id,
            attempts=failures,
        )

    def close(self) -> None:
        self._pool.close()


def _query_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _header_dict(pairs: List[Tuple[str, str]]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out
