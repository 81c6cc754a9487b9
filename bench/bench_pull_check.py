"""7. Pull integrity check: its cost against a bare sha256 of the same bytes and a plain read, and the rerun.

`release.hub.blob_check.verify_snapshot` hashes each blob of a snapshot (sha256 for LFS files) and compares it
with the blob's name. It is timed against the least any sha256 check must do (a bare hashlib loop over the
same files) and against reading the bytes once without hashing. All three run on the same HF-cache layout
(blobs named by sha256, snapshot links to them), warm in the page cache, alternated over several rounds
(median kept). The rerun with a `verified.json` marker must hash nothing.

Fair because: every side uses the same 4 MiB chunks and opens the same files; none skips bytes; the page
cache is warmed before anything is timed, so all measure CPU work on the same memory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from release.hub.blob_check import verify_snapshot

BLOBS, BLOB_MB, ROUNDS = 4, 64, 5


def _snapshot(root: Path) -> Path:
    blobs, snap = root / "blobs", root / "snapshots" / ("0" * 40)
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for i in range(BLOBS):
        data = os.urandom(BLOB_MB << 20)
        sha = hashlib.sha256(data).hexdigest()
        (blobs / sha).write_bytes(data)
        (snap / f"model-{i:05d}.safetensors").symlink_to(f"../../blobs/{sha}")
    return snap


def _read_all(snap: Path, hashing: bool = False) -> int:
    n = 0
    for link in snap.iterdir():
        h = hashlib.sha256()
        with link.resolve().open("rb") as f:
            while chunk := f.read(1 << 22):
                n += len(chunk)
                if hashing:
                    h.update(chunk)
    return n


def run() -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-pull-check-"))
    try:
        snap = _snapshot(root)
        _read_all(snap)  # warm the page cache
        reads, bare, checks = [], [], []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            total = _read_all(snap)
            reads.append(time.perf_counter() - t)
            t = time.perf_counter()
            _read_all(snap, hashing=True)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            hashed = verify_snapshot(snap, "bench", rehash=True)
            checks.append(time.perf_counter() - t)
            assert hashed == total == BLOBS * (BLOB_MB << 20)
        marker = root / "verified.json"
        verify_snapshot(snap, "bench", marker)
        t = time.perf_counter()
        rerun_hashed = verify_snapshot(snap, "bench", marker)
        rerun_s = time.perf_counter() - t
    finally:
        shutil.rmtree(root, ignore_errors=True)
    read_s, bare_s, check_s = (statistics.median(x) for x in (reads, bare, checks))
    mb = total / 1e6
    print(f"   {mb:.0f} MB: check {check_s * 1e3:.0f} ms ({mb / check_s:.0f} MB/s) = {check_s / bare_s:.2f}x a bare "
          f"sha256 ({bare_s * 1e3:.0f} ms), {check_s / read_s:.1f}x a plain read ({read_s * 1e3:.0f} ms); rerun "
          f"with the marker hashed {rerun_hashed} bytes in {rerun_s * 1e3:.1f} ms")
    return {
        "pull_check_vs_bare_sha256": {"value": round(check_s / bare_s, 3), "unit": "x", "target": "<= 1.1",
                                      "MB_s": round(mb / check_s), "vs_plain_read": round(check_s / read_s, 2)},
        "pull_check_rerun_bytes": {"value": rerun_hashed, "unit": "bytes", "target": "0",
                                   "rerun_ms": round(rerun_s * 1e3, 2)},
    }
