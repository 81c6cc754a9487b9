"""The Xet upload protocol, enough for huggingface_hub with hf_xet installed to push here.

huggingface_hub >= 1.0 uploads every LFS file through hf_xet whenever it is installed (only
HF_HUB_DISABLE_XET=1 turns that off; no server answer does), so the local hub speaks it too:

    GET  /api/{type}s/{repo}/xet-{read|write}-token/{rev}  -> {accessToken, exp, casUrl} (+ X-Xet-* headers)
    POST {casUrl}/v1/xorbs/default/{hash}                   a xorb: chunks, each with an 8-byte header
    POST {casUrl}/v1/shards                                 files as xorb chunk ranges, with their sha256
    GET  {casUrl}/v1/chunks/default-merkledb/{hash}         global dedup: always 404 (nothing shared)

When a shard arrives, each file it lists is rebuilt from the stored xorbs and kept as an ordinary
content-addressed blob, verified against its sha256; the client's commit then names it as an LFS file.
Downloads stay plain HTTP (no X-Xet-Hash on resolve). Spec: https://huggingface.co/docs/xet

Everything a client sends is bounded before it is decoded: a chunk declares at most CHUNK_MAX bytes and
its compressed form may not be longer than LZ4 needs for that; it decodes to exactly what it declares or
is refused (lz4.py stops at the declared size); xorbs and shards are checked from disk, a header at a
time; a shard's files may add up to at most `rebuild_max` bytes (and what the disk holds) per request.
So one request holds a few MB of memory, whatever it claims.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from release.localhub import lz4
from release.localhub.errors import HubError

XORB_MAX = 64 << 20  # the CAS limit on one serialized xorb
SHARD_MAX = 64 << 20
CHUNK_MAX = 1 << 20  # hf_xet's chunks are at most 128 KiB (64 KiB target, x2); 8x that is still small
XORB_CHUNKS_MAX = 1 << 16  # hf_xet puts at most 8192 chunks in a xorb
# One shard request's files: a 64 MB shard indexes at most 1.4 M chunks (48 bytes each) of <= 128 KiB,
# about 170 GiB of distinct data; dedup may repeat chunks, so leave room above that.
REBUILD_MAX = 256 << 30
DISK_MARGIN = 256 << 20  # rebuilt files must leave this much of the disk free
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_BOOKEND = b"\xff" * 32
_FLAG_VERIFICATION, _FLAG_METADATA = 1 << 31, 1 << 30
_ENTRY = 48
_HEADER = 8


def hash_name(raw: bytes) -> str:
    """A 32-byte Xet hash as the API writes it: each 8-byte word little-endian, in order."""
    return "".join(f"{int.from_bytes(raw[i:i + 8], 'little'):016x}" for i in range(0, 32, 8))


def chunk_header(header: bytes) -> tuple[int, int, int]:
    """(compressed size, scheme, declared size) of one chunk header, refused unless within the limits."""
    csize, scheme, usize = int.from_bytes(header[1:4], "little"), header[4], int.from_bytes(header[5:8], "little")
    if scheme > 2:
        raise HubError(400, f"Malformed xorb: a chunk names unknown compression scheme {scheme}")
    if not 0 < usize <= CHUNK_MAX:
        raise HubError(400, f"Malformed xorb: a chunk declares {usize} bytes (1 to {CHUNK_MAX})")
    if csize > lz4.bound(usize) or (scheme == 0 and csize != usize):
        raise HubError(400, f"Malformed xorb: a chunk of {usize} bytes is stored in {csize}, which its "
                            "compression cannot produce")
    return csize, scheme, usize


def chunk_index(f) -> array:
    """Where each chunk header of a xorb file starts; stops at the footer. 400 unless every header is sound."""
    size = os.fstat(f.fileno()).st_size
    offsets, at = array("Q"), 0
    while at + _HEADER <= size:
        f.seek(at)
        header = f.read(_HEADER)
        if header[0] != 0:  # version 0 headers; the footer starts otherwise
            break
        csize, _, _ = chunk_header(header)
        if at + _HEADER + csize > size:
            raise HubError(400, "Malformed xorb: a chunk header points past its end")
        if len(offsets) == XORB_CHUNKS_MAX:
            raise HubError(400, f"Malformed xorb: more than {XORB_CHUNKS_MAX} chunks")
        offsets.append(at)
        at += _HEADER + csize
    if not offsets:
        raise HubError(400, "Malformed xorb: no chunks")
    return offsets


def read_chunk(f, at: int) -> bytes:
    """The decoded bytes of the chunk whose header starts at `at` (headers checked by chunk_index)."""
    f.seek(at)
    csize, scheme, usize = chunk_header(f.read(_HEADER))
    return unpack_chunk(f.read(csize), scheme, usize)


def unpack_chunk(data: bytes, scheme: int, size: int) -> bytes:
    """A chunk's bytes: stored raw (0), LZ4 (1), or LZ4 of byte-grouped data (2); exactly `size` bytes."""
    if scheme == 0:
        raw = data
    else:
        try:
            raw = lz4.decompress(data, max_size=size)
        except lz4.LZ4Error as e:
            raise HubError(400, f"Malformed xorb: a chunk does not decompress ({e})") from None
        if scheme == 2 and len(raw) == size:  # byte grouping: bytes 1, 2, 3, 4 of every 4 were stored group after group
            q, r = divmod(len(raw), 4)
            out, at = bytearray(len(raw)), 0
            for g in range(4):
                s = q + (1 if g < r else 0)
                out[g::4] = raw[at:at + s]
                at += s
            raw = bytes(out)
    if len(raw) != size:
        raise HubError(400, "Malformed xorb: a chunk's size differs from its header")
    return raw


def shard_files(f) -> Iterator[tuple[str, int, int]]:
    """The files of a shard file: (sha256 hex, where its segment entries start, how many), read one entry
    at a time. 400 on anything malformed, including a file without its sha256."""
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    head = f.read(48)
    if len(head) < 48 or struct.unpack_from("<Q", head, 32)[0] != 2:
        raise HubError(400, "Malformed shard: not an MDB shard of version 2")
    at = 48
    while True:
        f.seek(at)
        entry = f.read(_ENTRY)
        if len(entry) < _ENTRY:
            raise HubError(400, "Malformed shard: the file section has no end")
        if entry[:32] == _BOOKEND:
            return
        flags, n = struct.unpack_from("<II", entry, 32)
        segments = at + _ENTRY
        at = segments + n * _ENTRY * (2 if flags & _FLAG_VERIFICATION else 1)
        if not flags & _FLAG_METADATA:
            raise HubError(400, "Malformed shard: a file lacks its sha256 metadata")
        f.seek(at)
        meta = f.read(_ENTRY)
        if len(meta) < _ENTRY or at + _ENTRY > size:
            raise HubError(400, "Malformed shard: truncated file entry")
        at += _ENTRY
        yield hash_name(meta[:32]), segments, n  # stored like every Xet hash: 8-byte words little-endian


def shard_segments(f, at: int, n: int) -> Iterator[tuple[str, int, int, int]]:
    """One file's segments from a shard file: (xorb name, first chunk, end chunk, bytes)."""
    for i in range(n):
        f.seek(at + i * _ENTRY)
        entry = f.read(_ENTRY)
        _, size, start, end = struct.unpack_from("<IIII", entry, 32)
        yield hash_name(entry[:32]), start, end, size


class XetCas:
    """Xorbs on disk under <root>/xet/xorbs, each with `<name>.idx` (where its chunks start, 8 bytes each,
    so a segment costs reads of its own chunks only); files rebuilt from them land in the store as blobs."""

    def __init__(self, store, rebuild_max: int = REBUILD_MAX):
        self.store = store
        self.rebuild_max = rebuild_max
        self.dir = Path(store.root) / "xet" / "xorbs"
        self.dir.mkdir(parents=True, exist_ok=True)

    def put_xorb(self, name: str, chunks: Iterable[bytes]) -> bool:
        if not HASH_RE.match(name):
            raise HubError(400, f"Invalid xorb hash: {name[:80]!r}")
        dest = self.dir / name
        if dest.exists():
            for _ in chunks:  # read to the end: the connection stays in step
                pass
            return False

        def check(path: Path) -> None:
            with open(path, "rb") as f:
                self.store.save_file([chunk_index(f).tobytes()], self.dir / f"{name}.idx")

        self.store.save_file(chunks, dest, check=check)
        return True

    def put_shard(self, body: Iterable[bytes], repo, usable: Callable[[str, int], bool],
                  deadline: float | None = None) -> int:
        """Rebuild and store every file the shard lists, recording each in `repo`; returns how many.
        A file already stored is taken as is only if `usable(sha256, size)` (the caller may read it);
        otherwise it is rebuilt and checked against its sha256 like a new one. Past `deadline`
        (time.monotonic()) the work stops with a 408."""
        tmp = self.store.write_temp(body)
        try:
            with open(tmp, "rb") as f, open(tmp, "rb") as seg:
                total = count = 0
                for _, at, n in shard_files(f):  # first pass: what it would cost, before decoding a byte
                    total += sum(s[3] for s in shard_segments(seg, at, n))
                    count += 1
                room = min(self.rebuild_max, shutil.disk_usage(self.store.root).free - DISK_MARGIN)
                if total > room:
                    raise HubError(413, f"The shard's files total {total} bytes, more than this hub takes in one "
                                        f"request ({max(room, 0)} bytes)")
                for sha256, at, n in shard_files(f):
                    size = sum(s[3] for s in shard_segments(seg, at, n))
                    if not (self.store.blob_ok(sha256, size) and usable(sha256, size)):
                        pieces = self._rebuild(shard_segments(seg, at, n), size, deadline)
                        self.store.put_stream(pieces, sha256, size)
                    repo.add_object(sha256)
        finally:
            tmp.unlink(missing_ok=True)
        return count

    def _offsets(self, name: str, start: int, end: int) -> array:
        """Where chunks [start, end) of a stored xorb start (its .idx, rebuilt if missing)."""
        path, idx = self.dir / name, self.dir / f"{name}.idx"
        if not HASH_RE.match(name) or not path.exists():
            raise HubError(400, f"Shard names xorb {name} that was not uploaded")
        if not idx.exists():  # stored before .idx files existed
            with open(path, "rb") as f:
                self.store.save_file([chunk_index(f).tobytes()], idx)
        count = idx.stat().st_size // 8
        if not 0 <= start < end <= count:
            raise HubError(400, f"Shard names chunks [{start}, {end}) of xorb {name}, which has {count}")
        offsets = array("Q")
        with open(idx, "rb") as f:
            f.seek(start * 8)
            offsets.frombytes(f.read((end - start) * 8))
        return offsets

    def _rebuild(self, segments: Iterator[tuple[str, int, int, int]], declared: int,
                 deadline: float | None) -> Iterator[bytes]:
        """A file's bytes from its segments, one chunk at a time, never past what the shard declares."""
        written = 0
        for name, start, end, size in segments:
            got, offsets = 0, self._offsets(name, start, end)
            with open(self.dir / name, "rb") as f:
                for at in offsets:
                    if deadline is not None and time.monotonic() > deadline:
                        raise HubError(408, "The shard took longer than a connection may: upload fewer files at once")
                    piece = read_chunk(f, at)
                    got += len(piece)
                    written += len(piece)
                    if got > size or written > declared:
                        raise HubError(400, f"Shard says {size} bytes for chunks [{start}, {end}) of xorb {name}, "
                                            "they hold more")
                    yield piece
            if got != size:
                raise HubError(400, f"Shard says {size} bytes for chunks [{start}, {end}) of xorb {name}, "
                                    f"they hold {got}")
