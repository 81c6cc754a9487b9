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
import re
from pathlib import Path

from release.errors import ReleaseError
from release.files import write_json

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

    A mismatch removes the damaged blob from the cache (so the next pull downloads it again) and raises
    a one-line ReleaseError naming the file.
    """
    seen = {} if rehash or marker is None else _load(marker)
    checked, hashed = {}, 0
    try:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_symlink()):
            blob = path.resolve()
            name = blob.name
            kind = "sha256" if SHA256.match(name) else "sha1" if GIT_SHA1.match(name) else None
            if kind is None or not blob.is_file():
                continue
            st = blob.stat()
            stamp = [st.st_size, st.st_mtime_ns]
            key = str(blob)
            if seen.get(key) == stamp or checked.get(key) == stamp:
                checked[key] = stamp
                continue
            actual = blob_id(blob, kind)
            hashed += st.st_size
            if actual != name:
                blob.unlink(missing_ok=True)
                raise ReleaseError(
                    f"{label}: {path.relative_to(folder)} is damaged (its bytes hash to {actual[:12]}, the Hub "
                    f"names it {name[:12]}); removed it from the cache: {fix}")
            checked[key] = stamp
    finally:
        if marker is not None and checked:
            write_json(marker, {**_load(marker), **checked})
    log.info("%s: %d cached files match their Hub ids (%.1f MB hashed)", label, len(checked), hashed / 1e6)
    return hashed


def _load(marker: Path) -> dict:
    try:
        value = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
