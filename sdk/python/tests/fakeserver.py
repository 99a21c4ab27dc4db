"""A scripted HTTP server on loopback for the retry-rule tests: it records every request it
reads and answers what the test scripted, including the failures a real server rarely shows on
demand (hanging up after reading a request, never answering)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Sequence, Union
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-encoded unless bytes
    headers: Dict[str, str] = field(default_factory=dict)
    # Close the connection after answering, without saying so (no `Connection: close`), as a
    # server does when a keep-alive connection idles out.
    close: bool = False


@dataclass
class Hangup:
    """Read the whole request, then close the connection without a byte of answer."""


@dataclass
class Reset:
    """Read the whole request, then reset the connection (RST, not FIN): the client sees
    ConnectionResetError."""


@dataclass
class Stall:
    """Read the whole request, then answer nothing until the server stops (the client times out)."""


@dataclass
class Stream:
    """A 200 text/event-stream answer: these SSE lines, then the connection closes."""

    lines: Sequence[str]


Action = Union[Answer, Hangup, Reset, Stall, Stream]
Script = Union[Action, Sequence[Action], Callable[[Recorded], Action]]


def error(status: int, code: str, message: str = "", headers: Optional[Dict[str, str]] = None, **extra: Any) -> Answer:
    return Answer(status, {"error": dict({"code": code, "message": message or code}, **extra)}, headers or {})


def item(key: str, value: Any, version: str, headers: Optional[Dict[str, str]] = None) -> Answer:
    return Answer(200, {"data": {"key": key, "value": value, "version": version, "expiresAt": None}}, headers or {})


class FakeServer:
    """`script`: one action for every request, a list used in order (the last one repeats), or a
    function of the request."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: List[Recorded] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                rec = Recorded(
                    method=self.command,
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                action = server._record(rec)
                if isinstance(action, Hangup):
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if isinstance(action, Reset):
                    self.close_connection = True
                    # SO_LINGER with a zero timeout makes close() send a RST.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                if isinstance(action, Stall):
                    server._release.wait(30)
                    self.close_connection = True
                    return
                if isinstance(action, Stream):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write("".join(line + "\n" for line in action.lines).encode())
                    self.wfile.flush()
                    self.close_connection = True
                    return
                payload = action.body if isinstance(action.body, bytes) else json.dumps(action.body).encode()
                self.send_response(action.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Request-Id", self.headers.get("X-Request-Id", "fake"))
                for k, v in action.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
                if action.close:
                    self.wfile.flush()
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _record(self, rec: Recorded) -> Action:
        with self._lock:
            self.requests.append(rec)
            n = len(self.requests)
        s = self.script
        if callable(s):
            return s(rec)
        if isinstance(s, (list, tuple)):
            return s[min(n, len(s)) - 1]
        return s  # type: ignore[return-value]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> "FakeServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
