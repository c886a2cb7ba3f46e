"""A loopback TCP proxy between the wallet and a mint, for failure tests.

It can refuse websocket upgrades (``/v1/ws``), cut the websocket connections it
carries, and counts what it saw. 127.0.0.1 only; every thread it starts ends
with :meth:`FaultProxy.stop`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.refuse_ws = False
        self.ws_attempts = 0
        self.ws_accepted = 0
        self.ws_attempted = threading.Event()   # set on every upgrade attempt
        self._lock = threading.Lock()
        self._ws_socks: list[socket.socket] = []
        self._all_socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._spawn(self._accept_loop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True, name="fault-proxy")
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._all_socks.append(client)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            try:
                chunk = client.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                client.close()
                return
            head += chunk
        is_ws = head.startswith(b"GET /v1/ws")
        if is_ws:
            with self._lock:
                self.ws_attempts += 1
            self.ws_attempted.set()
            if self.refuse_ws:
                with contextlib.suppress(OSError):
                    client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                                   b"Connection: close\r\n\r\n")
                client.close()
                return
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self._all_socks.append(upstream)
            if is_ws:
                self.ws_accepted += 1
                self._ws_socks.extend([client, upstream])
        upstream.sendall(head)
        self._spawn(self._pump, upstream, client)
        self._pump(client, upstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut_websockets(self) -> None:
        """Reset every websocket connection now open (as a network failure would)."""
        with self._lock:
            socks, self._ws_socks = self._ws_socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            socks = list(self._all_socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self._threads:
            t.join(timeout=5)
