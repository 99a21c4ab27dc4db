"""Starts and stops real Cairn nodes for the tests: child processes of this test run only.

Each node's stdout/stderr go to <tmp>/node<i>.log; the temp dir is removed on stop. Only the
PIDs of the children started here are ever signalled."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

SDK_DIR = Path(__file__).resolve().parent.parent  # sdk/python
REPO_ROOT = SDK_DIR.parent.parent


def cairn_bin() -> str:
    """CAIRN_BIN, else <repo root>/target/debug/cairn; a clear failure if neither exists."""
    env = os.environ.get("CAIRN_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / "cairn"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"the cairn server binary was not found at {path}. Build it with `cargo build` at the "
            f"repository root ({REPO_ROOT}), or set CAIRN_BIN to the binary's path."
        )
    return str(path)


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(
    method: str,
    url: str,
    *,
    token: Optional[str] = None,
    namespace: Optional[str] = None,
    body: Any = None,
    timeout: float = 5.0,
    context: Optional[ssl.SSLContext] = None,
) -> Tuple[int, Any]:
    """A plain request for the harness itself, independent of the SDK under test."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if namespace:
        req.add_header("X-Cairn-Namespace", namespace)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class Cluster:
    """`size` nodes on loopback, each its own process, with an admin token and cluster secret."""

    def __init__(self, size: int = 3, extra_args: Sequence[str] = (), name: str = "cluster", tls: bool = False) -> None:
        self.size = size
        self.tls = tls
        self.ssl_context: Optional[ssl.SSLContext] = None
        self.extra_args = list(extra_args)
        self.name = name
        self.binary = cairn_bin()
        self.admin_token = secrets.token_hex(16)
        self.cluster_secret = secrets.token_hex(16)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"cairn-sdk-py-{name}-"))
        self.ports: List[int] = []
        self.procs: Dict[int, subprocess.Popen] = {}
        self._logs: List[Any] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, ready_deadline: float = 30.0) -> "Cluster":
        if self.tls and self.ssl_context is None:
            self._make_certificate()
        # A port picked free may be taken by someone else before the node binds it (another
        # suite runs beside this one); a node that exits at once is started again on new ports.
        for attempt in range(3):
            self._spawn()
            try:
                self.wait_ready(ready_deadline)
                return self
            except _EarlyExit as e:
                self._stop_procs()
                if attempt == 2:
                    raise RuntimeError(str(e)) from None
        return self

    def _make_certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1, made with the openssl command, trusted by
        `ssl_context`."""
        cert, key = self.tmp / "cert.pem", self.tmp / "key.pem"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        self.extra_args += ["--tls-cert", str(cert), "--tls-key", str(key)]
        self.ssl_context = ssl.create_default_context(cafile=str(cert))

    def _spawn(self) -> None:
        self.ports = [free_port() for _ in range(self.size)]
        peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(self.ports))
        for i, port in enumerate(self.ports, start=1):
            self._start_node(i, port, peers)

    def _start_node(self, i: int, port: int, peers: str) -> None:
        args = [
            self.binary,
            "serve",
            "--id",
            str(i),
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(self.tmp / f"node{i}"),
            "--admin-token",
            self.admin_token,
            "--cluster-secret",
            self.cluster_secret,
        ]
        if self.size > 1:
            args += ["--peers", peers]
        args += self.extra_args
        log = open(self.tmp / f"node{i}.log", "ab")
        self._logs.append(log)
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, deadline_s: float = 30.0) -> None:
        """Until GET /ready answers 200 on every live node (polled every 100 ms)."""
        deadline = time.monotonic() + deadline_s
        pending = set(i for i, p in self.procs.items() if p.poll() is None)
        while pending:
            for i in sorted(pending):
                proc = self.procs[i]
                if proc.poll() is not None:
                    raise _EarlyExit(f"node {i} exited with {proc.returncode}: {self.log_tail(i)}")
                try:
                    status, _ = http_json("GET", self.url(i) + "/ready", timeout=1.0, context=self.ssl_context)
                except OSError:
                    status = 0
                if status == 200:
                    pending.discard(i)
            if not pending:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- node {i}\n{self.log_tail(i)}" for i in sorted(pending))
                raise RuntimeError(f"nodes {sorted(pending)} not ready within {deadline_s} s\n{tails}")
            time.sleep(0.1)

    def kill(self, i: int) -> None:
        """SIGKILL node i (a child of this process)."""
        proc = self.procs[i]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def _stop_procs(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for proc in self.procs.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def stop(self) -> None:
        try:
            self._stop_procs()
        finally:
            if os.environ.get("CAIRN_KEEP_TMP"):
                print(f"kept {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    # -- views -------------------------------------------------------------------------------

    def url(self, i: int) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.ports[i - 1]}"

    def urls(self) -> List[str]:
        return [self.url(i) for i in range(1, self.size + 1)]

    def log_tail(self, i: int, lines: int = 20) -> str:
        try:
            text = (self.tmp / f"node{i}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def leader(self, deadline_s: float = 30.0) -> int:
        """The leader's id, as `data.leader` of GET /cluster/status on a live node."""
        deadline = time.monotonic() + deadline_s
        while True:
            for i, proc in sorted(self.procs.items()):
                if proc.poll() is not None:
                    continue
                try:
                    status, body = http_json(
                        "GET", self.url(i) + "/cluster/status", token=self.admin_token, context=self.ssl_context
                    )
                except OSError:
                    continue
                if status == 200 and body["data"].get("leader"):
                    leader = int(body["data"]["leader"])
                    if leader in self.procs and self.procs[leader].poll() is None:
                        return leader
            if time.monotonic() > deadline:
                raise RuntimeError(f"no leader within {deadline_s} s")
            time.sleep(0.1)

    def create_token(self, namespace: str, permissions: List[str]) -> str:
        leader = self.leader()
        status, body = http_json(
            "POST",
            self.url(leader) + "/admin/tokens",
            token=self.admin_token,
            body={"namespace": namespace, "permissions": permissions},
            context=self.ssl_context,
        )
        if status != 201:
            raise RuntimeError(f"POST /admin/tokens: {status} {body}")
        return str(body["data"]["token"])

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _EarlyExit(Exception):
    pass
