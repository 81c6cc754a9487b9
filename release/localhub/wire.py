"""Reading one request's body safely: bounded, streamed, and never leaving a keep-alive connection mid-body.

Every route says how much it will take (`JSON_MAX` for ordinary bodies, a line limit for streamed commits,
the announced size for LFS uploads). A body over the limit is refused before it is read when its length is
announced; what a failed request left unread is drained if small, otherwise the connection is closed.
"""

from __future__ import annotations

import re

from release.localhub.errors import HubError

CHUNK = 1 << 20
JSON_MAX = 4 << 20  # preupload, paths-info, create, settings...: kilobytes in practice
COMMIT_LINE_MAX = 16 << 20  # one NDJSON line: a regular (< 10 MB) file, base64-encoded
DRAIN_MAX = 1 << 20  # after an error, read at most this much of a body to keep the connection
_LENGTH_RE = re.compile(r"\d{1,15}")


def too_large(limit: int) -> HubError:
    return HubError(413, f"Request body too large: this route takes at most {limit} bytes")


class Body:
    """The body of one request. `broken` once it cannot be read to its end (then close the connection)."""

    def __init__(self, rfile, headers):
        self._rfile = rfile
        self.broken = False
        length = headers.get("Content-Length")
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        if self.chunked and length is not None or (headers.get("Transfer-Encoding") and not self.chunked):
            self.broken = True  # ambiguous framing: where this body ends cannot be trusted
            raise HubError(400, "Send either Content-Length or Transfer-Encoding: chunked, not both")
        if length is not None and not _LENGTH_RE.fullmatch(length.strip()):
            self.broken = True
            raise HubError(400, f"Invalid Content-Length: {length[:40]!r}")
        self.length = None if self.chunked else int(length or 0)
        self.received = 0
        self.done = self.length == 0
        self._chunk_left = 0  # chunked encoding: bytes left in the current chunk

    def chunks(self, limit: int | None = None):
        """The body in pieces of at most CHUNK bytes; 413 once it exceeds `limit`."""
        if limit is not None and self.length is not None and self.length > limit:
            raise too_large(limit)
        while not self.done:
            piece = self._read(CHUNK)
            if limit is not None and self.received > limit:
                self.broken = not self.done
                raise too_large(limit)
            yield piece

    def read(self, limit: int = JSON_MAX) -> bytes:
        return b"".join(self.chunks(limit))

    def lines(self, line_limit: int):
        """The body as lines (NDJSON), each at most `line_limit` bytes; the body as a whole is unbounded."""
        line = bytearray()
        while not self.done:
            piece = self._read(CHUNK, until_newline=True)
            line += piece
            if piece.endswith(b"\n") or self.done:
                yield bytes(line)
                line.clear()
            elif len(line) > line_limit:
                self.broken = True
                raise HubError(413, f"A line of the commit body is longer than {line_limit} bytes: upload large "
                                    "files through LFS")

    def finish(self, drain_max: int = DRAIN_MAX) -> bool:
        """Read what is left (if at most `drain_max`); False when the connection must be closed instead."""
        if self.broken:
            return False
        if self.length is not None and self.length - self.received > drain_max:
            return False
        start = self.received
        try:
            for _ in self.chunks():
                if self.received - start > drain_max:
                    return False
        except (HubError, OSError):
            return False
        return True

    def _read(self, n: int, until_newline: bool = False) -> bytes:
        if self.chunked:
            if self._chunk_left == 0:
                self._chunk_left = self._chunk_size()
                if self._chunk_left == 0:
                    self.done = True
                    return b""
            n = min(n, self._chunk_left)
        else:
            n = min(n, self.length - self.received)
        piece = self._rfile.readline(n) if until_newline else self._rfile.read(n)
        if not piece:
            self.broken = True
            raise ConnectionError("client closed the connection mid-body")
        self.received += len(piece)
        if self.chunked:
            self._chunk_left -= len(piece)
            if self._chunk_left == 0 and self._rfile.readline(3) not in (b"\r\n", b"\n"):
                self.broken = True
                raise HubError(400, "Malformed chunked body")
        else:
            self.done = self.received == self.length
        return piece

    def _chunk_size(self) -> int:
        line = self._rfile.readline(100)
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            self.broken = True
            raise HubError(400, "Malformed chunked body") from None
        if size < 0:
            self.broken = True
            raise HubError(400, "Malformed chunked body")
        if size == 0:
            for _ in range(100):  # trailers, up to the empty line
                if self._rfile.readline(8192) in (b"\r\n", b"\n", b""):
                    break
        return size
