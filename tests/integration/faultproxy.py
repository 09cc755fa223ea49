"""A small HTTP reverse proxy that injects faults between a client and a real server.

Put it in front of a real ``mlflow server`` and give the client the proxy's URI::

    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        greenml.track(tracking_uri=proxy.uri, ...)
        proxy.set_mode("delay", delay_s=3.0)   # from here on, answers come 3 s late
        proxy.set_mode("pass")                 # healthy again

Modes (switchable at any time; a request gets the mode in force when it arrives):

``pass``
    forward the request, relay the answer.
``delay``
    forward the request (the server does the work), then hold the answer ``delay_s`` seconds
    before relaying it: past the client's timeout, the client never learns that its request
    was carried out (a *lost answer*).
``error``
    answer ``status`` (default 500) with a small JSON body at once, without forwarding: the
    server never sees the request.
``drop``
    close the connection without an answer, without forwarding.
``drop_after_forward``
    forward the request, then close the connection without relaying the answer (another
    lost answer, noticed at once rather than at the client's timeout).

``set_mode(..., paths=("runs/create",))`` limits the fault to requests whose path contains
one of the strings; the others pass.

The upstream can be switched too (``proxy.upstream = (host, port)``). If the upstream does
not accept the connection, the proxy answers 502, as a real reverse proxy would.

Every request is counted by outcome in :attr:`FaultProxy.stats` (``passed``, ``delayed``,
``error``, ``dropped``, ``upstream_down``) and kept in :attr:`FaultProxy.log` (the latest
500: time, method, path, outcome) for assertion messages. HTTP/1.0 answers: one request per
connection, so a switch of mode is never hidden behind a kept-alive connection.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("pass", "delay", "error", "drop", "drop_after_forward")
UPSTREAM_TIMEOUT_S = 60.0

# headers that belong to one hop (RFC 9110 section 7.6.1), never forwarded either way
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of ``upstream`` (``(host, port)``).

    ``port=None`` takes a free port; a given port is bound as it is (a test can hand a
    client the URI of a port nothing listens on yet, then start the proxy there).
    """

    def __init__(self, upstream: tuple[str, int], port: int | None = None) -> None:
        self.upstream = upstream
        self._port = port
        self._lock = threading.Lock()
        self._mode = "pass"
        self._delay_s = 0.0
        self._status = 500
        self._paths: tuple[str, ...] | None = None
        self.stats: collections.Counter[str] = collections.Counter()
        self.log: collections.deque[tuple[float, str, str, str]] = collections.deque(maxlen=500)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is not None:
            return int(self._server.server_address[1])
        if self._port is None:
            raise RuntimeError("the proxy has no port until it is started")
        return self._port

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        if self._server is not None:
            raise RuntimeError(f"the proxy at {self.uri} is already running")
        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self._port or 0), _Handler)
        server.daemon_threads = True
        server.proxy = self  # type: ignore[attr-defined]
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"faultproxy-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; answers held back by ``delay`` are cut short (dropped)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------

    def set_mode(
        self,
        mode: str,
        *,
        delay_s: float | None = None,
        status: int = 500,
        paths: tuple[str, ...] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: use one of {MODES}")
        if mode == "delay" and (delay_s is None or delay_s <= 0):
            raise ValueError("mode='delay' needs delay_s > 0")
        with self._lock:
            self._mode = mode
            self._delay_s = float(delay_s or 0.0)
            self._status = status
            self._paths = tuple(paths) if paths is not None else None

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    @contextlib.contextmanager
    def fault(self, mode: str, **kwargs: Any) -> Iterator[FaultProxy]:
        """``mode`` for the duration of a with-block, then ``pass`` again."""
        self.set_mode(mode, **kwargs)
        try:
            yield self
        finally:
            self.set_mode("pass")

    def _policy(self, path: str) -> tuple[str, float, int, tuple[str, int]]:
        with self._lock:
            mode = self._mode
            if self._paths is not None and not any(p in path for p in self._paths):
                mode = "pass"
            return mode, self._delay_s, self._status, self.upstream

    def _note(self, method: str, path: str, outcome: str) -> None:
        with self._lock:
            self.stats[outcome] += 1
            self.log.append((time.time(), method, path, outcome))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's output stays clean; FaultProxy.log has every request

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy
        mode, delay_s, status, upstream = proxy._policy(self.path)
        body = self._read_body()
        if mode == "error":
            proxy._note(self.command, self.path, "error")
            payload = json.dumps(
                {"error_code": "INTERNAL_ERROR", "message": "injected by faultproxy"}
            ).encode()
            self._answer(status, [("Content-Type", "application/json")], payload)
            return
        if mode == "drop":
            proxy._note(self.command, self.path, "dropped")
            self.close_connection = True
            return
        try:
            answer = self._forward(upstream, body)
        except OSError:
            proxy._note(self.command, self.path, "upstream_down")
            self._answer(502, [("Content-Type", "text/plain")], b"upstream unreachable\n")
            return
        if mode == "drop_after_forward":
            proxy._note(self.command, self.path, "dropped")
            self.close_connection = True
            return
        if mode == "delay":
            proxy._note(self.command, self.path, "delayed")
            if proxy._stopping.wait(delay_s):
                return  # the proxy is stopping: drop what was held back
        else:
            proxy._note(self.command, self.path, "passed")
        self._answer(*answer)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(
        self, upstream: tuple[str, int], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = upstream
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in _HOP_BY_HOP and k.lower() not in ("host", "content-length")
        }
        headers["Host"] = f"{host}:{port}"
        if body is not None:
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT_S)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in _HOP_BY_HOP
                and k.lower() not in ("content-length", "date", "server")
            ]
            return response.status, kept, data
        finally:
            conn.close()

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (its timeout): what a late answer meets
        self.close_connection = True
