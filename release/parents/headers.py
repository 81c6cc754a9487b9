"""A safetensors header, checked entry by entry before anything trusts it (issue 22 items 7 and 8).

The format: 8 bytes (little-endian header length N), N bytes of JSON mapping each tensor name to
{dtype, shape, data_offsets: [begin, end]} (plus an optional "__metadata__" of strings), then the data,
which the tensors' offsets must cover exactly. The same checks serve a local shard and a Hub shard (its
header read by range request, its size from the Hub's file metadata), so `--plan` refuses what the
stages would later fail to read.
"""

from __future__ import annotations

import json
import struct

from release.errors import ReleaseError

# Bits per element of every dtype safetensors knows (safetensors 0.8).
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
              "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
              "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
MAX_HEADER = 100_000_000  # safetensors' own limit
PREFIX = 8


def header_length(first: bytes, name: str, file_size: int | None, fix: str) -> int:
    """N from a shard's first 8 bytes, checked against the limit and the file's size."""
    if len(first) < PREFIX:
        raise ReleaseError(f"{name}: not a readable safetensors file (too short): {fix}")
    (length,) = struct.unpack("<Q", first[:PREFIX])
    if length < 2 or length > MAX_HEADER or (file_size is not None and PREFIX + length > file_size):
        raise ReleaseError(f"{name}: not a readable safetensors file (header length {length}"
                           + (f", file size {file_size}" if file_size is not None else "") + f"): {fix}")
    return length


def parse_header(raw: bytes, name: str, data_size: int | None, fix: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor: (dtype, shape)} from a header's JSON bytes; `data_size`: the bytes after the header (None:
    unknown). Every entry is checked: a mapping of known dtype, whole shape and offsets that hold exactly
    that many bytes, the offsets covering the data with no gap, overlap or overrun."""
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ReleaseError(f"{name}: not a readable safetensors file (damaged header): {fix}") from None
    if not isinstance(header, dict):
        raise ReleaseError(f"{name}: the safetensors header is a JSON {type(header).__name__}, not a mapping of "
                           f"tensors: {fix}")
    tensors, spans = {}, []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        bad = _entry_problem(entry)
        if bad:
            raise ReleaseError(f"{name}: tensor {key}: {bad}: {fix}")
        dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
        numel = 1
        for d in shape:
            numel *= d
        bits = numel * DTYPE_BITS[dtype]
        if bits % 8 or end - begin != bits // 8:
            raise ReleaseError(f"{name}: tensor {key}: data_offsets [{begin}, {end}] hold {end - begin} bytes, "
                               f"its shape {list(shape)} of {dtype} needs {bits / 8:g}: {fix}")
        tensors[key] = (dtype, shape)
        spans.append((begin, end, key))
    at = 0
    for begin, end, key in sorted(spans):
        if begin != at:
            what = "overlaps another tensor" if begin < at else f"leaves bytes {at}-{begin} unaccounted for"
            raise ReleaseError(f"{name}: tensor {key}: data_offsets [{begin}, {end}] {what}: {fix}")
        at = end
    if data_size is not None and at != data_size:
        where = "past the end of the file" if at > data_size else f"short of the file's {data_size} data bytes"
        raise ReleaseError(f"{name}: the tensors' data_offsets reach byte {at}, {where}: {fix}")
    return tensors


def _entry_problem(entry) -> str | None:
    if not isinstance(entry, dict):
        return f"its header entry is a JSON {type(entry).__name__}, not a mapping"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        return f"dtype {dtype!r} is not one safetensors knows ({', '.join(DTYPE_BITS)})"
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        return f"shape {shape!r} is not a list of whole numbers >= 0"
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        return f"data_offsets {offsets!r} are not [begin, end] with 0 <= begin <= end"
    return None


def weight_map(raw: bytes | str, name: str, fix: str) -> dict[str, str]:
    """An index's weight_map (tensor -> shard file), checked for shape."""
    try:
        index = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        index = None
    if not isinstance(index, dict):
        raise ReleaseError(f"{name} is not valid JSON holding a mapping: {fix}")
    mapping = index.get("weight_map")
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v for v in mapping.values()):
        raise ReleaseError(f"{name} has no weight_map of tensor -> shard (a JSON mapping of names to file names, "
                           f"here {type(mapping).__name__}): {fix}")
    return mapping
