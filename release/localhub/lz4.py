"""LZ4 decompression (block and frame format) in pure Python, for chunks of Xet xorbs.

The local hub stays stdlib-only; xorb chunks are at most 128 KiB, so a plain decoder is fast enough.
"""

from __future__ import annotations

FRAME_MAGIC = b"\x04\x22\x4d\x18"


class LZ4Error(ValueError):
    pass


def _length(src: bytes, i: int, n: int) -> tuple[int, int]:
    """An LZ4 length that continues in 255-valued bytes; returns (extra length, next index)."""
    extra = 0
    while True:
        if i >= len(src):
            raise LZ4Error("truncated LZ4 length")
        b = src[i]
        i += 1
        extra += b
        if b != 255:
            return n + extra, i


def decompress_block(src: bytes, out: bytearray | None = None) -> bytearray:
    """Decode one LZ4 block, appending to `out` (earlier output may be referenced, as in linked frames)."""
    out = bytearray() if out is None else out
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        literals = token >> 4
        if literals == 15:
            literals, i = _length(src, i, 15)
        if i + literals > n:
            raise LZ4Error("truncated LZ4 literals")
        out += src[i:i + literals]
        i += literals
        if i >= n:
            break  # the last sequence holds literals only
        if i + 2 > n:
            raise LZ4Error("truncated LZ4 offset")
        offset = src[i] | src[i + 1] << 8
        i += 2
        match = token & 15
        if match == 15:
            match, i = _length(src, i, 15)
        match += 4
        start = len(out) - offset
        if offset == 0 or start < 0:
            raise LZ4Error("invalid LZ4 match offset")
        if offset >= match:
            out += out[start:start + match]
        else:  # overlapping copy: the last `offset` bytes repeat
            pattern = bytes(out[start:])
            out += (pattern * (match // offset + 1))[:match]
    return out


def decompress(data: bytes) -> bytes:
    """An LZ4 frame (magic 04 22 4D 18) or a bare LZ4 block."""
    if not data.startswith(FRAME_MAGIC):
        return bytes(decompress_block(data))
    flg = data[4]
    i = 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0) + 1  # FLG, BD, content size, dict id, HC
    block_checksum = bool(flg & 0x10)
    out = bytearray()
    while True:
        if i + 4 > len(data):
            raise LZ4Error("truncated LZ4 frame")
        size = int.from_bytes(data[i:i + 4], "little")
        i += 4
        if size == 0:
            return bytes(out)
        raw, size = bool(size & 0x80000000), size & 0x7FFFFFFF
        block = data[i:i + size]
        if len(block) != size:
            raise LZ4Error("truncated LZ4 block")
        if raw:
            out += block
        else:
            decompress_block(block, out)
        i += size + (4 if block_checksum else 0)
