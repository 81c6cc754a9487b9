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
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from release.localhub import lz4
from release.localhub.errors import HubError

XORB_MAX = 64 << 20  # the CAS limit on one serialized xorb
SHARD_MAX = 64 << 20
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_BOOKEND = b"\xff" * 32
_FLAG_VERIFICATION, _FLAG_METADATA = 1 << 31, 1 << 30
_ENTRY = 48


def hash_name(raw: bytes) -> str:
    """A 32-byte Xet hash as the API writes it: each 8-byte word little-endian, in order."""
    return "".join(f"{int.from_bytes(raw[i:i + 8], 'little'):016x}" for i in range(0, 32, 8))


def _chunks_of(xorb: bytes) -> list[tuple[int, int, int, int]]:
    """(data offset, compressed size, compression, uncompressed size) of every chunk; stops at the footer."""
    out, i = [], 0
    while i + 8 <= len(xorb) and xorb[i] == 0:  # version 0 headers; the footer starts otherwise
        csize = int.from_bytes(xorb[i + 1:i + 4], "little")
        scheme = xorb[i + 4]
        usize = int.from_bytes(xorb[i + 5:i + 8], "little")
        if i + 8 + csize > len(xorb) or scheme > 2:
            raise HubError(400, "Malformed xorb: a chunk header points past its end or names an unknown scheme")
        out.append((i + 8, csize, scheme, usize))
        i += 8 + csize
    if not out:
        raise HubError(400, "Malformed xorb: no chunks")
    return out


def _unpack(data: bytes, scheme: int, size: int) -> bytes:
    if scheme == 0:
        raw = data
    else:
        try:
            raw = lz4.decompress(data)
        except lz4.LZ4Error:
            raise HubError(400, "Malformed xorb: a chunk does not decompress") from None
        if scheme == 2:  # byte grouping: bytes 1, 2, 3, 4 of every 4 were stored group after group
            q, r = divmod(len(raw), 4)
            sizes = [q + (1 if g < r else 0) for g in range(4)]
            groups, at = [], 0
            for s in sizes:
                groups.append(raw[at:at + s])
                at += s
            out = bytearray(len(raw))
            for g in range(4):
                out[g::4] = groups[g]
            raw = bytes(out)
    if len(raw) != size:
        raise HubError(400, "Malformed xorb: a chunk's size differs from its header")
    return raw


def parse_shard(data: bytes) -> list[tuple[str | None, list[tuple[str, int, int, int]]]]:
    """The files of an uploaded shard: (sha256 hex or None, [(xorb name, first chunk, end chunk, bytes)])."""
    if len(data) < 48 or struct.unpack_from("<Q", data, 32)[0] != 2:
        raise HubError(400, "Malformed shard: not an MDB shard of version 2")
    files, i = [], 48
    while True:
        if i + _ENTRY > len(data):
            raise HubError(400, "Malformed shard: the file section has no end")
        if data[i:i + 32] == _BOOKEND:
            return files
        flags, n = struct.unpack_from("<II", data, i + 32)
        i += _ENTRY
        if i + n * _ENTRY > len(data):
            raise HubError(400, "Malformed shard: truncated file entry")
        segments = []
        for _ in range(n):
            _, size, start, end = struct.unpack_from("<IIII", data, i + 32)
            segments.append((hash_name(data[i:i + 32]), start, end, size))
            i += _ENTRY
        if flags & _FLAG_VERIFICATION:
            i += n * _ENTRY
        sha256 = None
        if flags & _FLAG_METADATA:
            sha256 = hash_name(data[i:i + 32])  # stored like every Xet hash: 8-byte words little-endian
            i += _ENTRY
        files.append((sha256, segments))


class XetCas:
    """Xorbs on disk under <root>/xet/xorbs; files rebuilt from them land in the store as blobs."""

    def __init__(self, store):
        self.store = store
        self.dir = Path(store.root) / "xet" / "xorbs"
        self.dir.mkdir(parents=True, exist_ok=True)

    def put_xorb(self, name: str, chunks) -> bool:
        if not HASH_RE.match(name):
            raise HubError(400, f"Invalid xorb hash: {name[:80]!r}")
        dest = self.dir / name
        if dest.exists():
            for _ in chunks:  # read to the end: the connection stays in step
                pass
            return False
        self.store.save_file(chunks, dest, check=lambda path: _chunks_of(path.read_bytes()))
        return True

    def put_shard(self, data: bytes) -> int:
        """Rebuild and store every file the shard lists; returns how many."""
        files = parse_shard(data)
        for sha256, segments in files:
            if sha256 is None:
                raise HubError(400, "Malformed shard: a file lacks its sha256 metadata")
            if self.store.blob_ok(sha256, sum(s[3] for s in segments)):
                continue
            self.store.put_stream(self._rebuild(segments), sha256, sum(s[3] for s in segments))
        return len(files)

    def _rebuild(self, segments):
        cache: dict[str, tuple[bytes, list]] = {}
        for name, start, end, size in segments:
            if name not in cache:
                path = self.dir / name
                if not HASH_RE.match(name) or not path.exists():
                    raise HubError(400, f"Shard names xorb {name} that was not uploaded")
                xorb = path.read_bytes()
                cache = {name: (xorb, _chunks_of(xorb))}  # one xorb in memory at a time (<= 64 MiB)
            xorb, chunks = cache[name]
            if not 0 <= start < end <= len(chunks):
                raise HubError(400, f"Shard names chunks [{start}, {end}) of xorb {name}, which has {len(chunks)}")
            written = 0
            for offset, csize, scheme, usize in chunks[start:end]:
                piece = _unpack(xorb[offset:offset + csize], scheme, usize)
                written += len(piece)
                yield piece
            if written != size:
                raise HubError(400, f"Shard says {size} bytes for chunks [{start}, {end}) of xorb {name}, "
                                    f"they hold {written}")
