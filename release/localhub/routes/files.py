"""Downloads: resolve a file at a revision, with the ETag/X-Repo-Commit headers and byte ranges the client uses."""

from __future__ import annotations

import logging
import os
import re

from release.localhub.errors import HubError
from release.localhub.names import check_path
from release.localhub.routes.request import Request
from release.localhub.repo import Repo

log = logging.getLogger("release.localhub")


def resolve(req: Request, repo: Repo, revision: str, path: str):
    check_path(path)
    oid, tree = repo.tree(revision)
    e = tree.get(path)
    if e is None:
        raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": oid})
    etag = f'"{e["sha256"] if e["lfs"] else e["git_sha1"]}"'
    headers = {"X-Repo-Commit": oid, "ETag": etag, "Accept-Ranges": "bytes"}
    if e["lfs"]:
        headers.update({"X-Linked-Etag": etag, "X-Linked-Size": e["size"]})
    size, start, end, status = e["size"], 0, e["size"] - 1, 200
    rng = req.headers.get("Range")
    if rng and size:
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        if not m or not (m.group(1) or m.group(2)):
            raise HubError(416, f"Invalid range: {rng}", headers={"Content-Range": f"bytes */{size}"})
        if m.group(1):
            start, end = int(m.group(1)), min(int(m.group(2) or size - 1), size - 1)
        else:
            start = max(0, size - int(m.group(2)))
        if start > end:
            raise HubError(416, f"Range not satisfiable: {rng}", headers={"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    try:
        f = open(req.hub.store.blob_path(e["sha256"]), "rb")  # before the status line: it may be gone
    except OSError:
        log.error("stored blob %s of %s:%s is missing", e["sha256"], repo.id, path)
        raise HubError(500, f"The stored content of {path} is missing: push the file again") from None
    with f:
        if os.fstat(f.fileno()).st_size != size:  # truncated: the answer could not match its Content-Length
            log.error("stored blob %s of %s:%s is damaged (wrong size)", e["sha256"], repo.id, path)
            raise HubError(500, f"The stored content of {path} is damaged: push the file again")
        req.start_answer(status, headers, end - start + 1, "application/octet-stream")
        if req.command == "GET" and end >= start:
            req.connection.sendfile(f, start, end - start + 1)  # streamed by the kernel, never in memory
    return None
