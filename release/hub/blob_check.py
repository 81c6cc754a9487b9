"""Check downloaded files against the ids the Hub gave them, so damaged bytes never reach a breed.

The HF cache keeps each file of a snapshot as a link to a blob named by the Hub's ETag: the sha256 of an
LFS file, the git blob sha1 of a regular one. Hashing the blob's bytes and comparing with its name catches
bit rot in the cache, a bad mirror and tampering, whether the file was just downloaded or already cached.
Each blob is hashed once: a small marker file remembers blobs already checked by path, size and mtime,
so a rerun does not read 25 GB again (pass `rehash=True` to check everything anyway).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from release.errors import ReleaseError
from release.run.files import write_json

log = logging.getLogger(__name__)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def blob_id(blob: Path, kind: str) -> str:
    """The id the Hub would give these bytes: sha256 (LFS) or git blob sha1 (regular file)."""
    size = blob.stat().st_size
    h = hashlib.sha256() if kind == "sha256" else hashlib.sha1(b"blob %d\0" % size)
    with blob.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def verify_snapshot(folder: Path, label: str, marker: Path | None = None, rehash: bool = False,
                    fix: str = "pull again, and if it fails again the copy on the Hub is damaged") -> int:
    """Check every cached file of a snapshot folder against its blob's name; returns bytes hashed.

    Blobs are hashed in parallel (hashlib releases the GIL), each once even when several files link to it.
    A mismatch removes the damaged blob from the cache (so the next pull downloads it again) and raises
    a one-line ReleaseError naming the file.
    """
    seen = {} if rehash or marker is None else _load(marker)
    checked, todo = {}, {}  # blob path -> [size, mtime_ns]; blob path -> (a file linking to it, kind)
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_symlink()):
        blob = path.resolve()
        kind = "sha256" if SHA256.match(blob.name) else "sha1" if GIT_SHA1.match(blob.name) else None
        if kind is None or not blob.is_file():
            continue
        st = blob.stat()
        if seen.get(str(blob)) == [st.st_size, st.st_mtime_ns]:
            checked[str(blob)] = seen[str(blob)]
        else:
            todo.setdefault(blob, (path, kind))
    stamps = {blob: [blob.stat().st_size, blob.stat().st_mtime_ns] for blob in todo}  # before reading
    with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1, 8))) as pool:
        actual = dict(zip(todo, pool.map(lambda blob: blob_id(blob, todo[blob][1]), todo)))
    damaged = [blob for blob in todo if actual[blob] != blob.name]
    checked.update({str(blob): stamps[blob] for blob in todo if blob not in damaged})
    if marker is not None and checked:
        write_json(marker, {**_load(marker), **checked})
    for blob in damaged:
        blob.unlink(missing_ok=True)
    if damaged:
        blob = damaged[0]
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise ReleaseError(
            f"{label}: {todo[blob][0].relative_to(folder)}{more} is damaged (its bytes hash to {actual[blob][:12]}, "
            f"the Hub names it {blob.name[:12]}); removed it from the cache: {fix}")
    hashed = sum(stamps[blob][0] for blob in todo)
    log.info("%s: %d cached files match their Hub ids (%.1f MB hashed)", label, len(checked), hashed / 1e6)
    return hashed


def _load(marker: Path) -> dict:
    try:
        value = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
