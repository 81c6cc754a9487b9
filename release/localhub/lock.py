"""One server per store root: an exclusive flock on `<root>/.lock`, released by the kernel when the holder dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from release.localhub.errors import StoreLocked


class RootLock:
    def __init__(self, root: Path):
        self.path = root / ".lock"
        self._file = open(self.path, "a+")  # noqa: SIM115  (held open for the server's lifetime)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise StoreLocked(f"the local hub store {root} is in use by process {holder}: stop that server "
                              "(or the run serving it) or use another root") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            self._file.close()  # closing the descriptor drops the flock
