"""Xet CAS request bodies built by hand (xorbs, shards, LZ4 blocks), for tests of what a hostile client sends."""

import hashlib
import json
import struct

from tests.localhub_fixtures import http

MB = 1 << 20


def xet_hash(hex64: str) -> bytes:
    """The 32 raw bytes the Xet API writes as `hex64` (8-byte words, little-endian)."""
    return b"".join(int(hex64[i:i + 16], 16).to_bytes(8, "little") for i in range(0, 64, 16))


def chunk(data: bytes, scheme: int, declared: int) -> bytes:
    return bytes([0]) + len(data).to_bytes(3, "little") + bytes([scheme]) + declared.to_bytes(3, "little") + data


def bomb(run: int) -> bytes:
    """An LZ4 block: one literal, then a match repeating it 15 + 255 * run + 4 times."""
    return b"\x1fa\x01\x00" + b"\xff" * run + b"\x00"


def shard(files: list[tuple[str, list[tuple[str, int, int, int]]]]) -> bytes:
    """An MDB shard (version 2) listing files: (sha256, [(xorb name, first chunk, end chunk, bytes)])."""
    out = b"\0" * 32 + struct.pack("<QQ", 2, 0)
    for sha256, segments in files:
        out += b"\0" * 32 + struct.pack("<II", 1 << 30, len(segments)) + b"\0" * 8
        for name, start, end, size in segments:
            out += xet_hash(name) + struct.pack("<IIII", 0, size, start, end)
        out += xet_hash(sha256) + b"\0" * 16
    return out + b"\xff" * 32 + b"\0" * 16


def name(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


class Cas:
    """A client of one hub's Xet CAS, with a write token for `repo`."""

    def __init__(self, url: str, token: str, repo: str):
        status, _, body = http("GET", f"{url}/api/models/{repo}/xet-write-token/main",
                               headers={"Authorization": f"Bearer {token}"})
        assert status == 200, body
        self.url, self.auth = url, {"Authorization": f"Bearer {json.loads(body)['accessToken']}"}

    def xorb(self, xorb_name: str, body: bytes) -> tuple[int, bytes]:
        status, _, answer = http("POST", f"{self.url}/xet-cas/v1/xorbs/default/{xorb_name}", body, self.auth)
        return status, answer

    def shard(self, body: bytes) -> tuple[int, bytes]:
        status, _, answer = http("POST", f"{self.url}/xet-cas/v1/shards", body, self.auth)
        return status, answer
