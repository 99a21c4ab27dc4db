"""`Client.watch`: an iterator over `GET /kv/watch` (Server-Sent Events) that resumes by itself.

Every event the server sends carries its log index as the SSE id, progress events included. The
watch remembers the last id of a *completed* event, and when a stream breaks, times out, ends (a
node draining) or reports `event: error`, it reconnects to the next endpoint with
`Last-Event-ID` set to it. Every node streams the same entries under the same ids, so the
resumed stream continues exactly after the last event delivered: nothing skipped, nothing twice.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
from typing import Any, Dict, Iterator, List, Optional

from .errors import Compacted, Unauthorized, Unavailable
from .sse import SSEEvent, SSEParser
from .transport import Reply, Transport, _describe, _NotSent, error_from_reply
from .types import WatchEvent

__all__ = ["Watch"]

# Cairn sends a comment every 15 s and a progress event after 5 s without events; a stream
# silent for three keep-alive periods is dead (a node that vanished without closing it).
DEFAULT_IDLE_TIMEOUT = 45.0


class Watch(Iterator[WatchEvent]):
    """Iterate to get change events (`WatchEvent`: `{index, changes}`); progress events are
    consumed silently but move the resume point. `close()` (from any thread, or by leaving a
    `with` block) ends the iteration. `last_id` is the resume point: pass it as `after` to a
    later watch to continue where this one stopped."""

    def __init__(
        self,
        transport: Transport,
        prefix: str = "",
        after: Optional[str] = None,
        values: bool = True,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self._transport = transport
        self._prefix = prefix
        self._values = values
        self._idle_timeout = idle_timeout
        self.last_id: Optional[str] = None if after is None else str(after)
        # Streams opened after the first: how often the watch resumed (for logs and metrics).
        self.reconnects = 0
        self._opened = 0
        self._lock = threading.Lock()
        self._closed = False
        self._conn: Optional[http.client.HTTPConnection] = None
        self._resp: Optional[http.client.HTTPResponse] = None
        self._parser = SSEParser()
        self._endpoint = transport.current()
        # Streams opened (or tried) in a row that delivered no event: bounded by the retry
        # attempts, so a cluster that is down ends the watch with Unavailable instead of
        # spinning forever.
        self._fruitless = 0
        self._failures: List[str] = []

    # -- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> WatchEvent:
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
            out = self._handle(ev)
            if out is not None:
                return out

    def _handle(self, ev: SSEEvent) -> Optional[WatchEvent]:
        if ev.event in ("change", "progress"):
            data: Any = None
            if ev.event == "change":
                try:
                    data = json.loads(ev.data)
                except ValueError:
                    pass
                if not isinstance(data, dict):
                    # Not taken as delivered: the resume point stays before it, and another
                    # node is asked for it.
                    self._drop(f"a change event that is not a JSON object: {ev.data[:100]!r}")
                    return None
            if ev.id is not None:
                self.last_id = ev.id
            self._fruitless = 0
            self._failures = []
            return None if data is None else WatchEvent.from_json(data)
        if ev.event == "compacted":
            details = _json_object(ev.data)
            self.close()
            raise Compacted(
                f"the history no longer reaches back to index {self.last_id}",
                status=None,
                code="compacted",
                details=details,
            )
        if ev.event == "revoked":
            self.close()
            raise Unauthorized("the watch's token was revoked or expired", code="revoked", details=_json_object(ev.data))
        if ev.event == "error":
            # The node could not read its history; another node may.
            self._drop(f"event: error: {ev.data[:200]}")
        return None

    # -- connections -------------------------------------------------------------------------

    def _open(self) -> None:
        t = self._transport
        n = len(t.endpoints)
        while not self._closed:
            if self._fruitless >= t.attempts:
                self.close()
                raise Unavailable(
                    f"the watch could not be served by any endpoint after {self._fruitless} attempt(s)",
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
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id
            target = t.target(endpoint, "/kv/watch", {"prefix": self._prefix, "values": self._values})
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
                self._opened += 1
                self.reconnects = max(0, self._opened - 1)
                return
            try:
                body = resp.read()
            except (OSError, http.client.HTTPException):
                body = b""
            self._release()
            reply = Reply(
                status=resp.status,
                headers={k.lower(): v for k, v in resp.getheaders()},
                body=body,
                endpoint=endpoint.url,
                request_id=request_id,
            )
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
            # AttributeError/ValueError: the response was closed under us by close().
            return None
        if not raw:
            return None
        if not raw.endswith(b"\n"):
            # The stream ended in the middle of a line: that line is incomplete.
            return None
        return raw[:-1].decode("utf-8", errors="replace")

    def _drop(self, why: str) -> None:
        """Ends the current stream; the next `__next__` reconnects at the next endpoint."""
        if self._closed:
            return
        # A stream that delivered nothing still counts against the attempts (_fruitless was
        # raised when it was opened); one that delivered an event reset them in _handle, so a
        # long watch survives any number of node restarts.
        self._failures.append(f"{self._transport.endpoints[self._endpoint % len(self._transport.endpoints)].url}: {why}")
        self._release()
        self._endpoint += 1

    def _release(self) -> None:
        with self._lock:
            conn, self._conn, self._resp = self._conn, None, None
        if conn is not None:
            _hard_close(conn)

    def close(self) -> None:
        """Stops the watch. Safe from another thread: a blocked `next()` returns (StopIteration)."""
        with self._lock:
            self._closed = True
            conn, self._conn, self._resp = self._conn, None, None
        if conn is not None:
            _hard_close(conn)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _hard_close(conn: http.client.HTTPConnection) -> None:
    # shutdown() wakes a thread blocked reading this socket; close() alone may not.
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    conn.close()


def _json_object(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _new_id() -> str:
    return os.urandom(8).hex()
