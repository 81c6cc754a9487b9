"""One run of a run folder at a time: an exclusive lock on `runs/<name>/` for the whole run.

Two runs of one config at once would both search, both append to the search log and both push. The lock
is `flock` on a file in the run folder: the kernel releases it when its holder exits, however it exits,
so a killed run never leaves a stale lock behind. The file names the holder for the second run's error.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from release.errors import ReleaseError

LOCK_FILE = ".lock"


@contextmanager
def hold_run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock until the block ends; a ReleaseError naming the holder if it is taken."""
    path = Path(run_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReleaseError(f"{run_dir} is in use by {_holder(path)}: wait for that run to finish, or stop "
                               "it, before running this config again") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {_command()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _command() -> str:
    # argv holds paths and flags only (tokens come from the environment); one line, whatever it holds.
    return " ".join(["darwin-release", *sys.argv[1:]]).replace("\n", " ")


def _holder(path: Path) -> str:
    try:
        pid, _, command = path.read_text(errors="replace").strip().partition(" ")
    except OSError:
        pid = ""
    if not pid.isdigit():  # taken a moment ago, not yet signed
        return "another process"
    return f"process {pid} ({command})" if command else f"process {pid}"
