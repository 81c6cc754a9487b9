"""Joining a Ray cluster that does not answer is a one-line error within a bound (issue 22 item 10).

A port that accepts TCP but is not a Ray head (the dashboard's, given by mistake) once made `ray.init`
retry in native code for minutes, deaf to SIGTERM.
"""

import socket
import threading
import time

import pytest

pytest.importorskip("ray")

from release.search.distributed.cluster import connect  # noqa: E402
from release.errors import ReleaseError  # noqa: E402


@pytest.fixture
def silent_port():
    """A port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in accepted:
        conn.close()


def test_a_port_that_is_not_ray_is_one_line_within_the_timeout(silent_port):
    import ray

    t0 = time.monotonic()
    with pytest.raises(ReleaseError) as e:
        connect(f"127.0.0.1:{silent_port}", num_cpus=1, timeout_s=4)
    assert time.monotonic() - t0 < 20
    message = str(e.value)
    assert "\n" not in message and "search.ray_connect_timeout_s" in message and "ray_address" in message
    assert not ray.is_initialized()


def test_the_timeout_is_a_config_key():
    from release.config import SearchSpec

    assert SearchSpec().ray_connect_timeout_s == 20
    with pytest.raises(ValueError):
        SearchSpec(ray_connect_timeout_s=0)
