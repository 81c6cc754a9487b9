"""The local hub's server: a threaded HTTP server over one Store, its tokens and its upload credentials.

Routes live in routes/; request bodies and their limits in wire.py; storage in store.py.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from release.localhub.routes.handler import Handler
from release.localhub.store import Store
from release.localhub.tokens import USER, Account, Tokens
from release.localhub.xet import XetCas

log = logging.getLogger("release.localhub")

TICKET_TTL_S = 3600
IDLE_TIMEOUT_S = 120  # a connection that sends nothing for this long is closed


class LocalHub:
    """A Hub-compatible endpoint over a Store. `with serve(root, tokens=[...]) as hub: hub.url`."""

    def __init__(self, root: str | Path, port: int = 0, tokens=(), host: str = "127.0.0.1", user: str = USER,
                 idle_timeout: float = IDLE_TIMEOUT_S):
        """`tokens`: plain tokens (write every namespace), `TOKEN:ns1,ns2` strings, or {token: [namespaces]}."""
        self.accounts = Tokens(tokens, user)
        self.tokens = self.accounts.values
        self.user = user
        self.idle_timeout = idle_timeout
        self._tickets: dict[str, tuple[str, int, float]] = {}  # one-time LFS upload credentials
        self._tickets_lock = threading.Lock()
        self.store = Store(root)  # StoreLocked when another server holds the root
        self.xet = XetCas(self.store)
        self._xet_tokens: dict[str, tuple[bool, float]] = {}  # CAS access token -> (may write, expiry)
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
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="localhub", daemon=True)
        self._thread.start()
        log.info("local hub serving %s at %s", self.store.root, self.url)
        return self

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

    def new_ticket(self, oid: str, size: int) -> str:
        ticket = secrets.token_urlsafe(24)
        with self._tickets_lock:
            self._tickets[ticket] = (oid, size, time.time() + TICKET_TTL_S)
        return ticket

    def ticket_ok(self, ticket: str, oid: str, size: int) -> bool:
        with self._tickets_lock:
            t = self._tickets.get(ticket)
        return t is not None and t[:2] == (oid, size) and t[2] > time.time()

    def spend_ticket(self, ticket: str) -> None:
        with self._tickets_lock:
            self._tickets.pop(ticket, None)

    def new_xet_token(self, write: bool) -> tuple[str, int]:
        token, expiry = "xet_" + secrets.token_urlsafe(24), int(time.time() + TICKET_TTL_S)
        with self._tickets_lock:
            self._xet_tokens = {t: v for t, v in self._xet_tokens.items() if v[1] > time.time()}
            self._xet_tokens[token] = (write, expiry)
        return token, expiry

    def xet_token_ok(self, token: str, write: bool) -> bool:
        with self._tickets_lock:
            t = self._xet_tokens.get(token)
        return t is not None and t[1] > time.time() and (t[0] or not write)


def serve(root: str | Path, port: int = 0, tokens=(), host: str = "127.0.0.1") -> LocalHub:
    """Start a local hub in a background thread; use it as a context manager or call .stop()."""
    return LocalHub(root, port=port, tokens=tokens, host=host).start()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the client opens several connections at once for parallel LFS uploads

    def __init__(self, *args):
        super().__init__(*args)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request_thread(self, request, client_address):
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def close_connections(self) -> None:
        with self._open_lock:
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request, client_address):
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


