"""The local hub's server: a threaded HTTP server over one Store, its tokens and its upload credentials.

Routes live in routes/; request bodies and their limits in wire.py; storage in store.py.

Connections are bounded three ways: a socket that sends nothing for `idle_timeout` seconds is closed
(each read waits at most that long); every connection has a total deadline, `connection_deadline`
seconds after it was accepted, when the server shuts it down whatever it is doing, so a client that
drips one byte at a time cannot hold a thread (a kept-alive connection past half its deadline is told
`Connection: close` after its next answer, so well-behaved clients move on before the cut); and at most
`max_connections` are served at once: the next ones get a 503 and are closed, without a thread.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from release.localhub.grants import Grants
from release.localhub.routes.handler import Handler
from release.localhub.store import Store
from release.localhub.tokens import USER, Account, Tokens
from release.localhub.xet import REBUILD_MAX, XetCas

log = logging.getLogger("release.localhub")

IDLE_TIMEOUT_S = 120  # a connection that sends nothing for this long is closed
CONNECTION_DEADLINE_S = 3600  # no connection lives longer: pushing one 50 GB file needs ~15 MB/s
MAX_CONNECTIONS = 64  # the client opens a few at once for parallel uploads; a thread each
POLL_S = 0.1  # how often the serving loop looks for connections past their deadline
REFUSED_LINGER_S = 1.0  # a refused connection stays half-open this long, so its client reads the 503


class LocalHub:
    """A Hub-compatible endpoint over a Store. `with serve(root, tokens=[...]) as hub: hub.url`."""

    def __init__(self, root: str | Path, port: int = 0, tokens=(), host: str = "127.0.0.1", user: str = USER,
                 idle_timeout: float = IDLE_TIMEOUT_S, connection_deadline: float = CONNECTION_DEADLINE_S,
                 max_connections: int = MAX_CONNECTIONS, xet_rebuild_max: int = REBUILD_MAX):
        """`tokens`: plain tokens (write every namespace), `TOKEN:ns1,ns2` strings, or {token: [namespaces]}."""
        self.accounts = Tokens(tokens, user)
        self.tokens = self.accounts.values
        self.user = user
        self.idle_timeout = idle_timeout
        self.connection_deadline = connection_deadline
        self.max_connections = max_connections
        self.grants = Grants()
        self.store = Store(root)  # StoreLocked when another server holds the root
        self.xet = XetCas(self.store, rebuild_max=xet_rebuild_max)
        try:
            self.httpd = _Server((host, port), Handler)
        except BaseException:
            self.store.close()
            raise
        self.httpd.hub = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalHub:
        """Serve from a background thread (tests, the embedded default of `make release`)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": POLL_S},
                                        name="localhub", daemon=True)
        self._thread.start()
        log.info("local hub serving %s at %s", self.store.root, self.url)
        return self

    def serve_forever(self) -> None:
        """Serve from this thread until interrupted (`python -m release.localhub`)."""
        self.httpd.serve_forever(poll_interval=POLL_S)

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.close_connections()  # kept-alive client connections must not reach a stopped hub
        self.httpd.server_close()
        self.store.close()

    def __enter__(self) -> LocalHub:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def account(self, token: str) -> Account | None:
        return self.accounts.account(token)


def serve(root: str | Path, port: int = 0, tokens=(), host: str = "127.0.0.1", **limits) -> LocalHub:
    """Start a local hub in a background thread; use it as a context manager or call .stop().
    `limits`: idle_timeout, connection_deadline, max_connections, xet_rebuild_max (see LocalHub)."""
    return LocalHub(root, port=port, tokens=tokens, host=host, **limits).start()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the client opens several connections at once for parallel LFS uploads

    def __init__(self, *args):
        super().__init__(*args)
        self._open: dict[socket.socket, tuple[float, float]] = {}  # socket -> (accepted at, deadline)
        self._refused: list[tuple[socket.socket, float]] = []  # (socket, when to close it)
        self._open_lock = threading.Lock()

    def process_request(self, request, client_address):
        """In the serving loop: count the connection (or refuse it) before it gets a thread."""
        now = time.monotonic()
        with self._open_lock:
            full = len(self._open) >= self.hub.max_connections
            if not full:
                self._open[request] = (now, now + self.hub.connection_deadline)
        if full:
            self._refuse(request, client_address)
        else:
            super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.pop(request, None)

    def clock(self, request) -> tuple[float, float]:
        """(accepted at, deadline) of a connection, in time.monotonic()."""
        with self._open_lock:
            return self._open.get(request) or (time.monotonic(), time.monotonic())

    def _refuse(self, request, client_address) -> None:
        log.warning("refused a connection from %s: %d connections already open", client_address[0],
                    self.hub.max_connections)
        body = b'{"error": "Too many connections to the local hub: retry in a moment"}'
        try:
            request.setblocking(False)  # a fresh socket's buffer takes this at once; never wait for it
            request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if len(self._refused) < 4 * self.hub.max_connections:
            self._refused.append((request, time.monotonic() + REFUSED_LINGER_S))
        else:
            self.shutdown_request(request)

    def service_actions(self) -> None:
        """In the serving loop, every POLL_S: cut connections past their deadline, close refused ones."""
        now = time.monotonic()
        with self._open_lock:
            late = [s for s, (_, deadline) in self._open.items() if deadline <= now]
        for s in late:
            log.warning("closing a connection that outlived its %ss deadline", self.hub.connection_deadline)
            _shutdown(s)  # its thread's next read or write fails, and the thread ends
        keep = []
        for s, close_at in self._refused:
            try:
                while s.recv(65536):  # discard what it sent, so the close is not a reset
                    pass
            except (BlockingIOError, OSError):
                pass
            if close_at <= now:
                s.close()
            else:
                keep.append((s, close_at))
        self._refused = keep

    def close_connections(self) -> None:
        with self._open_lock:
            for s in self._open:
                _shutdown(s)
        for s, _ in self._refused:
            s.close()
        self._refused = []

    def handle_error(self, request, client_address):
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def _shutdown(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
