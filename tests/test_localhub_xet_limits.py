"""Hostile Xet uploads: decompression bombs, truncated LZ4 frames, oversized and malformed xorbs and shards.
Each is a short 4xx, and the server's memory stays bounded (< 64 MB growth) whatever a request claims."""

from tests.localhub_fixtures import peak_rss_mb, standalone_hub  # first: sets HF_ENDPOINT

# isort: split
import hashlib
import random
import struct
import time
import tracemalloc

import pytest
from huggingface_hub import HfApi

from tests.xet_bodies import MB, Cas, bomb, chunk, name, shard

from release.localhub import HubError, lz4, serve, wire
from release.localhub.server import IDLE_TIMEOUT_S, CONNECTION_DEADLINE_S
from release.localhub.xet import CHUNK_MAX, REBUILD_MAX, SHARD_MAX, XORB_CHUNKS_MAX, XORB_MAX, XetCas


def test_bombs_and_oversized_bodies_are_4xx_and_the_server_grows_less_than_64mb(tmp_path):
    with standalone_hub(tmp_path / "hub", "hf_t", tmp_path / "server.log") as (server, url):
        HfApi(endpoint=url, token="hf_t").create_repo("me/bombs")
        cas = Cas(url, "hf_t", "me/bombs")
        assert cas.xorb(name(0), chunk(b"warm up", 0, 7))[0] == 200
        before = peak_rss_mb(server.pid)
        cases = [  # (xorb, shard file size): each is refused, at upload or when the shard names it
            (chunk(bomb(1 * MB), 1, 1000), 1000),  # 1 MB of LZ4 that declares 1,000 bytes (~255 MB decoded)
            (chunk(bomb(CHUNK_MAX), 1, CHUNK_MAX), CHUNK_MAX),  # within the size limits, decodes past its size
            (chunk(bomb(CHUNK_MAX), 2, CHUNK_MAX), CHUNK_MAX),  # the same, byte-grouped
            (chunk(bomb(4 * MB), 1, (1 << 24) - 1), (1 << 24) - 1),  # declares the most a header can
            (chunk(b"", 0, 0) * (2 * MB), 0),  # 2 M empty chunks: 16 MB of headers
        ]
        for i, (xorb, size) in enumerate(cases, start=1):
            status, answer = cas.xorb(name(i), xorb)
            assert status in (200, 400), (i, status, answer)
            status, answer = cas.shard(shard([(name(100 + i), [(name(i), 0, 1, size)])]))
            assert 400 <= status < 500 and len(answer) < 400, (i, status, answer)
        junk = b"\0" * 32 + struct.pack("<QQ", 2, 0) + b"\x01" * (SHARD_MAX - 100)  # no end to its files
        status, answer = cas.shard(junk)
        assert status == 400 and b"Malformed shard" in answer
        growth = peak_rss_mb(server.pid) - before
        print(f"server peak RSS growth under the malicious Xet requests: {growth:.1f} MB")
        assert growth < 64, f"server peak RSS grew by {growth:.0f} MB"
        assert server.poll() is None
    assert b"Traceback" not in (tmp_path / "server.log").read_bytes()


def test_an_lz4_bomb_is_refused_before_it_allocates():
    tracemalloc.start()
    try:
        with pytest.raises(lz4.LZ4Error, match="more than its declared size"):
            lz4.decompress(bomb(MB), max_size=1000)
        frame = lz4.FRAME_MAGIC + b"\x60\x40\x00" + (len(bomb(MB))).to_bytes(4, "little") + bomb(MB)
        with pytest.raises(lz4.LZ4Error, match="more than its declared size"):
            lz4.decompress(frame + b"\0" * 4, max_size=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB  # the input itself (1 MB, copied once for the frame's block), never its output
    assert lz4.decompress(bomb(3), max_size=1000) == b"a" * (1 + 15 + 255 * 3 + 4)  # honest data within the cap


def test_every_truncated_or_damaged_lz4_input_is_an_lz4_error():
    rng = random.Random(22)
    block = b"\x1fa\x01\x00\x05\x50aaaaa"  # 'a', a match of 24, 5 literals
    frame = lz4.FRAME_MAGIC + b"\x60\x40\x00" + len(block).to_bytes(4, "little") + block + b"\0" * 4
    assert lz4.decompress(frame, max_size=600) == b"a" * 30
    samples = [frame, bomb(2), lz4.FRAME_MAGIC, lz4.FRAME_MAGIC + b"\x68\x40" + b"\xff" * 8]
    for _ in range(2000):
        data = bytearray(rng.choice(samples))
        data = data[:rng.randrange(len(data) + 1)]  # truncated anywhere
        for _ in range(rng.randrange(3)):  # and damaged
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            out = lz4.decompress(bytes(data), max_size=600)
        except lz4.LZ4Error:
            continue
        assert len(out) <= 600


def test_a_truncated_lz4_frame_and_damaged_shards_are_400_not_500(tmp_path):
    with serve(tmp_path / "hub", tokens=["hf_t"]) as hub:
        HfApi(endpoint=hub.url, token="hf_t").create_repo("me/frames")
        cas = Cas(hub.url, "hf_t", "me/frames")
        assert cas.xorb(name(1), chunk(lz4.FRAME_MAGIC, 1, 10))[0] == 200  # well-formed header, damaged data
        status, answer = cas.shard(shard([(name(2), [(name(1), 0, 1, 10)])]))
        assert status == 400 and b"does not decompress" in answer, answer
        good = shard([(name(2), [(name(1), 0, 1, 10)])])
        rng = random.Random(3)
        for _ in range(200):  # truncated or damaged shards: never a 500
            body = bytearray(good[:rng.randrange(len(good) + 1)])
            for _ in range(rng.randrange(4)):
                if body:
                    body[rng.randrange(len(body))] = rng.randrange(256)
            status, answer = cas.shard(bytes(body))
            assert 400 <= status < 500, (bytes(body), status, answer)
        for body in (b"", b"\1" * 7, chunk(b"ab", 3, 2), chunk(b"abc", 0, 2), chunk(b"x", 1, 0)):
            status, answer = cas.xorb(name(9), body)
            assert status == 400 and b"Malformed xorb" in answer, (body, answer)


def test_a_shard_over_the_request_total_is_413_before_decoding(tmp_path):
    with serve(tmp_path / "hub", tokens=["hf_t"], xet_rebuild_max=100_000) as hub:
        HfApi(endpoint=hub.url, token="hf_t").create_repo("me/total")
        cas = Cas(hub.url, "hf_t", "me/total")
        data = bytes(range(256)) * 256  # 64 KiB, stored raw
        assert cas.xorb(name(1), chunk(data, 0, len(data)))[0] == 200
        one = [(name(1), 0, 1, len(data))]
        blobs = sorted((tmp_path / "hub" / "blobs").rglob("*"))
        status, answer = cas.shard(shard([(name(2), one * 2)]))  # 128 KiB: over the total
        assert status == 413 and b"more than this hub takes in one request" in answer
        assert not any((tmp_path / "hub" / "tmp").iterdir())
        assert sorted((tmp_path / "hub" / "blobs").rglob("*")) == blobs  # nothing decoded, nothing stored
        status, answer = cas.shard(shard([(hashlib.sha256(data).hexdigest(), one)]))  # within it: stored
        assert status == 200, answer
        assert hub.store.blob_ok(hashlib.sha256(data).hexdigest(), len(data))


def test_a_rebuild_past_the_connection_deadline_stops_with_408(tmp_path):
    with serve(tmp_path / "hub", tokens=["hf_t"]) as hub:
        HfApi(endpoint=hub.url, token="hf_t").create_repo("me/late")
        cas = Cas(hub.url, "hf_t", "me/late")
        data = b"x" * 1000
        assert cas.xorb(name(1), chunk(data, 0, len(data)))[0] == 200
        repo = hub.store.repo("model", "me/late")
        body = shard([(hashlib.sha256(data).hexdigest(), [(name(1), 0, 1, 1000)])])
        with pytest.raises(HubError) as e:
            hub.xet.put_shard([body], repo, usable=lambda sha, size: False, deadline=time.monotonic() - 1)
        assert e.value.status == 408


def test_the_real_limits_bound_one_request_to_a_few_mb():
    # One chunk at a time: its compressed bytes, the decoded output (grown in place, then copied once),
    # byte-grouping's copy; the offsets of one segment; the body's read buffer; what the disk takes.
    per_chunk = lz4.bound(CHUNK_MAX) + 2 * CHUNK_MAX + 2 * CHUNK_MAX
    per_request = per_chunk + XORB_CHUNKS_MAX * 8 + wire.CHUNK
    assert per_request < 8 * MB
    assert XORB_MAX == 64 * MB and CHUNK_MAX >= 128 * 1024  # hf_xet's own limits fit
    assert SHARD_MAX // 48 * 128 * 1024 <= REBUILD_MAX  # a full shard of hf_xet's largest chunks fits the total
    assert XetCas.__init__.__defaults__ == (REBUILD_MAX,)
    assert 50e9 / CONNECTION_DEADLINE_S < 15e6 and CONNECTION_DEADLINE_S > IDLE_TIMEOUT_S  # a 50 GB push at 15 MB/s
