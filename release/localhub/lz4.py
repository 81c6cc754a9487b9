"""LZ4 decompression (block and frame format) in pure Python, for chunks of Xet xorbs.

The local hub stays stdlib-only; xorb chunks are at most 128 KiB, so a plain decoder is fast enough.
Every decode has a hard cap on its output (the size the chunk declares): input that would grow past it
is refused before the bytes are produced, so a small bomb cannot make the server allocate much. Any
malformed input raises LZ4Error, never another exception.
"""

from __future__ import annotations

FRAME_MAGIC = b"\x04\x22\x4d\x18"


class LZ4Error(ValueError):
    pass


def bound(size: int) -> int:
    """The most bytes LZ4 can take to store `size` bytes (LZ4_compressBound)."""
    return size + size // 255 + 16


def _length(src: bytes, i: int, n: int, cap: int) -> tuple[int, int]:
    """An LZ4 length that continues in 255-valued bytes; returns (length, next index). Stops reading as
    soon as the length passes `cap` (a run of 255s would otherwise be read to its end first)."""
    while True:
        if i >= len(src):
            raise LZ4Error("truncated LZ4 length")
        b = src[i]
        i += 1
        n += b
        if n > cap:
            raise LZ4Error("LZ4 data decodes to more than its declared size")
        if b != 255:
            return n, i


def decompress_block(src: bytes, max_size: int, out: bytearray | None = None) -> bytearray:
    """Decode one LZ4 block, appending to `out` (earlier output may be referenced, as in linked frames),
    never letting `out` grow past `max_size` bytes."""
    out = bytearray() if out is None else out
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        literals = token >> 4
        if literals == 15:
            literals, i = _length(src, i, 15, max_size)
        if i + literals > n:
            raise LZ4Error("truncated LZ4 literals")
        if len(out) + literals > max_size:
            raise LZ4Error("LZ4 data decodes to more than its declared size")
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
            match, i = _length(src, i, 15, max_size)
        match += 4
        if len(out) + match > max_size:  # checked before a byte of the match is produced
            raise LZ4Error("LZ4 data decodes to more than its declared size")
        start = len(out) - offset
        if offset == 0 or start < 0:
            raise LZ4Error("invalid LZ4 match offset")
        if offset >= match:
            out += out[start:start + match]
        else:  # overlapping copy: the last `offset` bytes repeat
            pattern = bytes(out[start:])
            out += (pattern * (match // offset + 1))[:match]
    return out


def decompress(data: bytes, max_size: int) -> bytes:
    """An LZ4 frame (magic 04 22 4D 18) or a bare LZ4 block, decoding to at most `max_size` bytes."""
    if not data.startswith(FRAME_MAGIC):
        return bytes(decompress_block(data, max_size))
    if len(data) < 7:  # magic, FLG, BD, header checksum
        raise LZ4Error("truncated LZ4 frame header")
    flg = data[4]
    if flg >> 6 != 1:
        raise LZ4Error("unknown LZ4 frame version")
    i = 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0) + 1  # FLG, BD, content size, dict id, HC
    if i > len(data):
        raise LZ4Error("truncated LZ4 frame header")
    if flg & 0x08 and int.from_bytes(data[6:14], "little") > max_size:
        raise LZ4Error("LZ4 frame declares more than its declared size")
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
            if len(out) + size > max_size:
                raise LZ4Error("LZ4 data decodes to more than its declared size")
            out += block
        else:
            decompress_block(block, max_size, out)
        i += size + (4 if block_checksum else 0)
