"""Content-addressed file contents under `<root>/blobs/ab/<sha256>`, written through `<root>/tmp/`.

Every write goes to a temp file first and is moved into place whole (same filesystem, so os.replace is
atomic); a blob is kept only if its bytes hash to its name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from release.localhub.errors import HubError

log = logging.getLogger("release.localhub")

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


class Blobs:
    def __init__(self, root: Path):
        self.root = root
        self._verified: dict[str, tuple] = {}  # sha256 -> stat signature of the blob last hashed whole

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def blob_size(self, sha256: str) -> int | None:
        if not SHA256_RE.match(sha256):  # it comes from clients and becomes a path
            return None
        try:
            return self.blob_path(sha256).stat().st_size
        except OSError:
            return None

    def blob_ok(self, sha256: str, size: int | None = None) -> bool:
        """Whether a blob is stored whole: its bytes hash to its name. A damaged blob counts as absent,
        so the client uploads it again. Hashed once per change of the file (size, mtime, inode)."""
        if not SHA256_RE.match(sha256):
            return False
        path = self.blob_path(sha256)
        try:
            st = path.stat()
        except OSError:
            return False
        if size is not None and st.st_size != size:
            return False
        signature = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._verified.get(sha256) == signature:
            return True
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        if h.hexdigest() != sha256:
            log.warning("stored blob %s is damaged (its bytes hash to %s): treated as absent", sha256, h.hexdigest())
            return False
        self._verified[sha256] = signature
        return True

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.blob_ok(sha, len(data)):
            self._put_file(self.write_temp([data]), sha)
        return sha

    def put_stream(self, chunks: Iterable[bytes], sha256: str, size: int) -> None:
        """Stream an upload to disk, hashing as it goes; keep it only if sha256 and size match."""
        h, n = hashlib.sha256(), 0

        def hashed():
            nonlocal n
            for c in chunks:
                h.update(c)
                n += len(c)
                yield c

        tmp = self.write_temp(hashed())
        if n != size or h.hexdigest() != sha256:
            tmp.unlink(missing_ok=True)
            raise HubError(400, f"Uploaded content does not match its announced oid/size: expected sha256 "
                                f"{sha256} and {size} bytes, received sha256 {h.hexdigest()} and {n} bytes")
        self._put_file(tmp, sha256)

    def save_file(self, chunks: Iterable[bytes], dest: Path, check=None) -> None:
        """Stream to a temp file, let `check(path)` refuse it (by raising), then move it to `dest` whole."""
        tmp = self.write_temp(chunks)
        try:
            if check is not None:
                check(tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def write_temp(self, chunks: Iterable[bytes]) -> Path:
        tmp = self.root / "tmp" / uuid.uuid4().hex
        try:
            with open(tmp, "wb") as f:
                for c in chunks:
                    f.write(c)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _put_file(self, tmp: Path, sha256: str) -> None:
        """Move a fully written and hashed temp file into place (heals a damaged copy too)."""
        dest = self.blob_path(sha256)
        dest.parent.mkdir(exist_ok=True)
        os.replace(tmp, dest)
        st = dest.stat()
        self._verified[sha256] = (st.st_size, st.st_mtime_ns, st.st_ino)
