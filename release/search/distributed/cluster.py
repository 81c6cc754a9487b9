"""Start a local Ray instance or join a cluster, as `search.ray_address` says."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading

from release.errors import ReleaseError

log = logging.getLogger(__name__)

INSTALL = "pip install darwin-release[ray]"
# The local instance only carries genomes and scores: a small object store fits a small /dev/shm.
OBJECT_STORE_BYTES = 128 * 1024**2


def import_ray():
    try:
        import ray
    except ImportError:
        raise ReleaseError(f"search.workers / search.ray_address need Ray, which is not installed: {INSTALL}") from None
    return ray


# Joins the cluster exactly as the run will, in a child process that can be killed when it hangs: Ray's own
# connection retries run in native code for minutes, deaf to signals, when a port answers TCP but is not Ray.
_PROBE = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False); ray.shutdown()"


def connect(address: str | None, num_cpus: int, timeout_s: float = 20.0) -> bool:
    """Make sure Ray is up; returns whether this call started it (and so must shut it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is None:
        # A short temp path: Ray's unix sockets live there and their paths have a length limit.
        # Workers at the driver's priority: Ray starts them at nice 15, which on a shared machine hands
        # their cores to anything else that runs there.
        ray.init(num_cpus=num_cpus, object_store_memory=OBJECT_STORE_BYTES, _system_config={"worker_niceness": 0},
                 _temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp" if os.path.isdir("/tmp") else None), **quiet)
        log.info("started a local Ray instance with %d CPUs", num_cpus)
        return True
    try:
        _reachable(address)
        _answers(address, timeout_s)
        with _our_sigterm():
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as e:  # Ray raises ConnectionError, TimeoutError or RuntimeError depending on the address form
        reason = next(iter(str(e).strip().splitlines()), type(e).__name__)
        raise ReleaseError(f"cannot reach the Ray cluster at search.ray_address={address!r} ({reason}); start it with "
                           "`ray start --head` (and `ray start --address=...` on the other nodes), or unset "
                           "search.ray_address to use this machine") from None
    log.info("joined the Ray cluster at %s: %s", address, ray.cluster_resources())
    return True


def _answers(address: str, timeout_s: float) -> None:
    """Fail within `timeout_s` (search.ray_connect_timeout_s) where Ray would retry for minutes."""
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                               timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"no Ray answer within {timeout_s:g} s (search.ray_connect_timeout_s): is it the "
                           "address of a Ray head (GCS, port 6379 by default), not its dashboard?") from None
    if probe.returncode != 0:
        lines = [line for line in probe.stderr.strip().splitlines() if line.strip()]
        raise ConnectionError(lines[-1] if lines else f"exit status {probe.returncode}")


class _our_sigterm:
    """ray.init replaces the SIGTERM handler with its own (sys.exit from wherever the driver is); the run's
    own handler (stop cleanly, like Ctrl-C) is put back once it has joined."""

    def __enter__(self):
        self.main = threading.current_thread() is threading.main_thread()
        self.handler = signal.getsignal(signal.SIGTERM) if self.main else None

    def __exit__(self, *exc):
        if self.main and self.handler is not None:
            signal.signal(signal.SIGTERM, self.handler)


def _reachable(address: str) -> None:
    """Fail in seconds where Ray would retry a dead address for minutes."""
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        address = canonicalize_bootstrap_address("auto")
        if address is None:
            raise ConnectionError("no running Ray instance found on this node")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return  # let Ray judge an address form we do not know
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise ConnectionError(f"{host}:{port} does not answer: {e.strerror or e}") from None
