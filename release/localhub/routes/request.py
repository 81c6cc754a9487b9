"""What every route shares: reading the request, answering it in the Hub's shape, and who is asking.

Things the client relies on: errors as {"error": ...} with X-Error-Code so it raises its typed errors;
keep-alive connections, so every request body is read to the end (or the connection closed) and every
answer has a Content-Length. Bodies are bounded and streamed (wire.py), idle sockets time out, and tokens
write only their namespaces.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from release.localhub.errors import HubError
from release.localhub.access import may_read
from release.localhub.blobs import CHUNK
from release.localhub.repo import Repo
from release.localhub.tokens import Account
from release.localhub.wire import Body

log = logging.getLogger("release.localhub")

LINGER_S = 1.0  # after refusing a body mid-stream: time for the client to read the answer before the close


def path_segments(path: str) -> list[str]:
    try:
        return [unquote(seg, errors="strict") for seg in path.strip("/").split("/")]
    except UnicodeDecodeError:
        raise HubError(400, "The request path is not valid percent-encoded UTF-8") from None


class Request(BaseHTTPRequestHandler):
    """One connection's requests. Subclasses answer `route(segments)` with (status, payload[, headers]),
    or None once they have answered themselves (a streamed download)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects
    server_version = "darwin-localhub"

    def do_GET(self):
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    @property
    def hub(self):  # the LocalHub serving this request
        return self.server.hub

    def route(self, segments: list[str]):
        raise NotImplementedError

    # ---- reading and answering ----

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.hub.idle_timeout)  # idle or stalled clients are let go
        # Headers and body go out as two writes: without this, Nagle holds the body for the client's
        # delayed ACK (40 ms per small answer).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.accepted_at, self.deadline = self.server.clock(self.connection)  # the server cuts it then

    def _handle(self) -> None:
        self.body, self._answered = None, False
        try:
            self.body = Body(self.rfile, self.headers)
            url = urlsplit(self.path)
            self.query = parse_qs(url.query, max_num_fields=50)
            answer = self.route(path_segments(url.path))
            if answer is not None:
                self.send(*answer)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            if self._answered:  # failed mid-answer: the client sees a short body; nothing more can be said
                log.exception("answer to %s %s broke off", self.command, urlsplit(self.path).path)
                self.close_connection = True
            else:
                self._handle_failure()

    def _handle_failure(self) -> None:
        """Answer the exception being handled: a HubError as itself, anything else as a short 4xx/500."""
        try:
            raise
        except HubError as e:
            self._error(e)
        except (KeyError, TypeError, ValueError, AttributeError):  # a field missing or of the wrong type
            log.debug("malformed %s %s", self.command, urlsplit(self.path).path, exc_info=True)
            self._error(HubError(400, "Malformed request: a field is missing or has the wrong type"))
        except Exception:  # a bug here must still answer, or the client waits forever
            log.exception("internal error on %s %s", self.command, urlsplit(self.path).path)
            self._error(HubError(500, "Internal error in the local hub (its log has the details)"))

    def json_body(self) -> dict:
        try:
            data = json.loads(self.body.read() or b"{}")
        except ValueError:
            raise HubError(400, "Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HubError(400, "Request body must be a JSON object")
        return data

    def start_answer(self, status: int, headers: dict, length: int, content_type: str = "application/json") -> None:
        """Status line and headers. The request body must be consumed first: drained if small, else the
        connection closes after this answer (a kept-alive connection must never resume mid-body)."""
        keep = self.body is not None and self.body.finish()
        self._answered = True
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        if time.monotonic() > self.accepted_at + (self.deadline - self.accepted_at) / 2:
            keep = False  # past half its deadline: the client should move to a fresh connection now
        if not keep:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def send(self, status: int, payload=None, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload if payload is not None else {}).encode()
        self.start_answer(status, headers or {}, len(data))
        if self.command != "HEAD":
            self.wfile.write(data)
        if self.close_connection and self.body is not None and not self.body.done:
            self._linger()

    def _linger(self) -> None:
        """Let a client that is still sending read our answer: stop writing, discard its bytes briefly."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            deadline = time.monotonic() + LINGER_S
            while time.monotonic() < deadline and self.connection.recv(CHUNK):
                pass
        except OSError:
            pass

    def _error(self, e: HubError) -> None:
        short = e.message if len(e.message) <= 500 else e.message[:497] + "..."  # it may echo what the client sent
        message = " ".join(short.split()).encode("ascii", "backslashreplace").decode()  # headers are latin-1
        headers = {"X-Error-Message": message, **e.headers}
        if e.code:
            headers["X-Error-Code"] = e.code
        try:
            self.send(e.status, {"error": short}, headers)
        except OSError:
            self.close_connection = True

    def log_request(self, code="-", size="-"):
        log.info("%s %s %s", self.command, urlsplit(self.path).path, code)  # no query: it may hold a ticket

    def log_message(self, format, *args):
        (log.info if format.startswith("Request timed out") else log.warning)(re.sub(r"ticket=[^&\s\"]+", "ticket=***", format % args))  # an idle keep-alive close is routine

    def base_url(self) -> str:
        return f"http://{self.headers.get('Host') or '%s:%s' % self.server.server_address[:2]}"

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.base_url()}/{prefix}{repo_id}"

    # ---- who is asking ----

    def account(self) -> Account | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            return None
        account = self.hub.account(auth.removeprefix("Bearer ").strip())
        if account is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return account

    def writer(self) -> Account:
        account = self.account()
        if account is None:
            raise HubError(401, "You must be authenticated to do this: send a write token (Authorization: Bearer ...)")
        return account

    def check_write(self, account: Account, repo_type: str, repo_id: str) -> None:
        namespace = repo_id.split("/")[0]
        if not account.may_write(namespace):
            raise HubError(403, f"You don't have the rights to write to the {repo_type} {repo_id}: this token may "
                                f"write only {', '.join(sorted(account.namespaces))}")

    def repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        account = self.writer() if write else self.account()
        repo = self.hub.store.repo(repo_type, repo_id)
        # Like the Hub: a private repo is invisible (404) to tokens that may not write its namespace.
        if repo is None or not may_read(account, repo):
            raise HubError(404 if account else 401, f"Repository not found: {repo_id}", "RepoNotFound")
        if write:
            self.check_write(account, repo_type, repo_id)
        return repo
